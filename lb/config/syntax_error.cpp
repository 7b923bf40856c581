// Turns toml11's multi-line error excerpt into one "FILE:LINE:COLUMN: reason" line.
//
// toml11 3.7 formats a parse failure like this (format_underline in source_location.hpp):
//
//   [error] toml::parse_key_value_pair: missing value after key-value separator '='
//    --> conf/x.toml
//      |
//    2 | workers =
//      |           ^--- expected value, but got nothing
//
// The gutter line gives the line number, and the marker line ("^---" or "~~~") sits under
// the column. Some errors show two places (a key defined twice: first the original, then the
// duplicate); the last one is where the file went wrong. If the excerpt cannot be read, the
// exception's own location is used, which toml11 sometimes sets to the start of the line.

#include <cctype>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "config/build.hpp"

namespace fulcrum::config_detail {

namespace {

struct Marked {
  uint32_t line = 0;
  uint32_t column = 0;
  std::string comment;
};

// toml11 colours its output only when built with TOML11_COLORIZE_ERROR_MESSAGE, but a
// stray escape sequence in a one-line message would be worse than useless.
std::string stripAnsi(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '[') {
      size_t end = text.find('m', i);
      if (end == std::string::npos) {
        break;
      }
      i = end;
      continue;
    }
    out.push_back(text[i]);
  }
  return out;
}

std::string trim(std::string_view text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) {
    ++begin;
  }
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) {
    --end;
  }
  return std::string(text.substr(begin, end - begin));
}

// "[error] toml::parse_table: invalid line format" -> "invalid line format".
std::string headline(const std::string& first_line) {
  std::string text = trim(first_line);
  if (text.rfind("[error]", 0) == 0) {
    text = trim(std::string_view(text).substr(7));
  }
  if (text.rfind("toml::", 0) == 0) {
    const size_t colon = text.find(':', 6);
    text = colon == std::string::npos ? "" : trim(std::string_view(text).substr(colon + 1));
  }
  // The reason is followed by "; <detail>", so a full stop here would sit mid-sentence.
  if (!text.empty() && text.back() == '.') {
    text.pop_back();
  }
  return text;
}

// " 12 | text" -> 12.
std::optional<uint32_t> gutterLine(const std::string& line) {
  size_t i = 0;
  while (i < line.size() && line[i] == ' ') {
    ++i;
  }
  const size_t digits_begin = i;
  while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) {
    ++i;
  }
  if (i == digits_begin || line.compare(i, 3, " | ") != 0 || i - digits_begin > 9) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(std::stoul(line.substr(digits_begin, i - digits_begin)));
}

// "   |      ^--- comment" -> column 6 and "comment".
std::optional<Marked> markerLine(const std::string& line) {
  const size_t bar = line.find(" | ");
  if (bar == std::string::npos || trim(std::string_view(line).substr(0, bar)) != "") {
    return std::nullopt;
  }
  size_t i = bar + 3;
  const size_t pad_begin = i;
  while (i < line.size() && line[i] == ' ') {
    ++i;
  }
  if (i >= line.size() || (line[i] != '^' && line[i] != '~')) {
    return std::nullopt;
  }

  Marked marked;
  marked.column = static_cast<uint32_t>(i - pad_begin + 1);
  while (i < line.size() && (line[i] == '^' || line[i] == '~' || line[i] == '-')) {
    ++i;
  }
  marked.comment = trim(std::string_view(line).substr(i));
  return marked;
}

std::vector<Marked> markedPlaces(const std::vector<std::string>& lines) {
  std::vector<Marked> places;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    const std::optional<uint32_t> line = gutterLine(lines[i]);
    if (!line) {
      continue;
    }
    std::optional<Marked> marked = markerLine(lines[i + 1]);
    if (!marked) {
      continue;
    }
    marked->line = *line;
    places.push_back(std::move(*marked));
  }
  return places;
}

}  // namespace

std::string describeSyntaxError(const std::string& file, const toml::exception& error) {
  std::vector<std::string> lines;
  std::istringstream in(stripAnsi(error.what()));
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }

  const std::string reason = lines.empty() ? std::string() : headline(lines.front());
  const std::vector<Marked> places = markedPlaces(lines);
  if (places.empty()) {
    const toml::source_location& loc = error.location();
    return fmt::format("{}:{}:{}: invalid TOML: {}", file, loc.line(), loc.column(),
                       reason.empty() ? "cannot parse this line" : reason);
  }

  // toml11 marks some spots with a bare "here", which adds nothing on a single line.
  const Marked& at = places.back();
  std::string message = reason;
  if (!at.comment.empty() && at.comment != "here") {
    message += message.empty() ? at.comment : "; " + at.comment;
  }
  for (size_t i = 0; i + 1 < places.size(); ++i) {
    message += fmt::format(" (see {}:{}: {})", places[i].line, places[i].column,
                           places[i].comment);
  }
  return fmt::format("{}:{}:{}: invalid TOML: {}", file, at.line, at.column, message);
}

}  // namespace fulcrum::config_detail
