#include "demo_http.hpp"

#include <string>

namespace fulcrum::demo {

namespace {

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  const auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

// Chunked bodies are refused: this server never needs them, and skipping one safely would need
// a chunk parser.
HttpRequest parseHttpHead(std::string_view head) {
  HttpRequest req;
  size_t eol = head.find('\n');
  const std::string_view request_line = trim(head.substr(0, eol));

  const size_t sp1 = request_line.find(' ');
  const size_t sp2 = request_line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) {
    return req;
  }
  const std::string_view method = request_line.substr(0, sp1);
  const std::string_view version = request_line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return req;
  }
  req.head_only = method == "HEAD";
  req.keep_alive = version == "HTTP/1.1";

  while (eol != std::string_view::npos) {
    const size_t start = eol + 1;
    eol = head.find('\n', start);
    const std::string_view line = head.substr(start, eol == head.npos ? head.npos : eol - start);
    const size_t colon = line.find(':');
    if (trim(line).empty()) {
      continue;
    }
    if (colon == std::string_view::npos || colon == 0) {
      return req;
    }

    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (equalsIgnoreCase(name, "Transfer-Encoding")) {
      return req;
    }
    if (equalsIgnoreCase(name, "Content-Length")) {
      if (value.empty() || value.size() > 12 ||
          value.find_first_not_of("0123456789") != std::string_view::npos) {
        return req;
      }
      req.body_bytes = std::stoull(std::string(value));
      if (req.body_bytes > kMaxBodyBytes) {
        return req;
      }
    }
    if (equalsIgnoreCase(name, "Connection")) {
      // A comma-separated token list; only the two persistence tokens matter here.
      size_t pos = 0;
      while (pos <= value.size()) {
        size_t comma = value.find(',', pos);
        const std::string_view token = trim(value.substr(pos, comma - pos));
        if (equalsIgnoreCase(token, "close")) {
          req.keep_alive = false;
        } else if (equalsIgnoreCase(token, "keep-alive")) {
          req.keep_alive = true;
        }
        if (comma == std::string_view::npos) {
          break;
        }
        pos = comma + 1;
      }
    }
  }

  req.valid = true;
  return req;
}

std::optional<std::pair<size_t, size_t>> findHeadEnd(std::string_view buf, size_t pos) {
  size_t line_start = pos;
  while (true) {
    const size_t eol = buf.find('\n', line_start);
    if (eol == std::string_view::npos) {
      return std::nullopt;
    }
    const std::string_view line = buf.substr(line_start, eol - line_start);
    if (line.empty() || line == "\r") {
      return std::make_pair(line_start, eol + 1);
    }
    line_start = eol + 1;
  }
}

}  // namespace fulcrum::demo
