// The pre-scan run before toml11: string and comment aware, counting bracket depth and the
// dots of the key being read. See prescan.hpp for why.

#include "config/prescan.hpp"

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

#include "fulcrum/config.hpp"

namespace fulcrum::config_detail {

namespace {

enum class State { Code, Comment, Basic, Literal, MultiBasic, MultiLiteral };

// Length of the run of quote characters starting at pos.
size_t quoteRun(std::string_view text, size_t pos, char quote) {
  size_t end = pos;
  while (end < text.size() && text[end] == quote) {
    ++end;
  }
  return end - pos;
}

}  // namespace

void prescanToml(std::string_view text, const std::string& file) {
  State state = State::Code;
  uint64_t line = 1;
  size_t line_start = 0;
  size_t depth = 0;
  size_t dots = 0;  // Dots since the last character that ends a key.

  const auto fail = [&](size_t pos, std::string_view message) {
    throw ConfigError(fmt::format("{}:{}:{}: {}", file, line, pos - line_start + 1, message));
  };

  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      line_start = i + 1;
      dots = 0;
      // Single-line strings cannot span lines; ending them here keeps an unterminated one
      // from hiding the rest of the file. toml11 reports it afterwards.
      if (state == State::Comment || state == State::Basic || state == State::Literal) {
        state = State::Code;
      }
      continue;
    }

    switch (state) {
      case State::Code:
        switch (c) {
          case '#':
            state = State::Comment;
            break;
          case '"':
            if (text.compare(i, 3, R"(""")") == 0) {
              state = State::MultiBasic;
              i += 2;
            } else {
              state = State::Basic;
            }
            break;
          case '\'':
            if (text.compare(i, 3, "'''") == 0) {
              state = State::MultiLiteral;
              i += 2;
            } else {
              state = State::Literal;
            }
            break;
          case '[':
          case '{':
            ++depth;
            if (depth > kMaxNesting) {
              fail(i, fmt::format("arrays and inline tables nested deeper than {} levels; "
                                  "flatten the structure",
                                  kMaxNesting));
            }
            dots = 0;
            break;
          case ']':
          case '}':
            // Unbalanced closers are toml11's to report; never let them wrap the count.
            depth = depth > 0 ? depth - 1 : 0;
            dots = 0;
            break;
          case '=':
          case ',':
            dots = 0;
            break;
          case '.':
            // Values are counted too, but a value holds at most one dot (a float or a
            // date-time fraction), and anything with more is not valid TOML anyway.
            ++dots;
            if (dots >= kMaxKeyParts) {
              fail(i, fmt::format("keys with more than {} dotted parts are not supported; "
                                  "use at most {}, such as pool.web.algorithm",
                                  kMaxKeyParts, kMaxKeyParts));
            }
            break;
          default:
            break;
        }
        break;

      case State::Comment:
        break;

      case State::Basic:
      case State::MultiBasic:
        if (c == '\\') {
          // Skip the escaped character, but never a newline: the line count must see it.
          if (i + 1 < text.size() && text[i + 1] != '\n') {
            ++i;
          }
        } else if (c == '"') {
          if (state == State::Basic) {
            state = State::Code;
          } else {
            // Up to two quotes may sit just inside the closing delimiter: """a""""" is a"".
            const size_t run = quoteRun(text, i, '"');
            if (run >= 3) {
              state = State::Code;
            }
            i += std::min<size_t>(run, 5) - 1;
          }
        }
        break;

      case State::Literal:
        if (c == '\'') {
          state = State::Code;
        }
        break;

      case State::MultiLiteral:
        if (c == '\'') {
          const size_t run = quoteRun(text, i, '\'');
          if (run >= 3) {
            state = State::Code;
          }
          i += std::min<size_t>(run, 5) - 1;
        }
        break;
    }
  }
}

}  // namespace fulcrum::config_detail
