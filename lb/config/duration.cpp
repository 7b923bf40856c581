// parseDuration: the one spelling of a time span in config files.

#include "fulcrum/config.hpp"

#include <cstdint>
#include <limits>
#include <string>

#include <fmt/format.h>

namespace fulcrum {

namespace {

constexpr std::string_view kHowTo =
    "write an integer followed by ms, s, m or h, such as \"150ms\", \"2s\" or \"5m\"";

struct Unit {
  std::string_view name;
  int64_t millis;
};

// Whole units only: a fraction would need rounding rules, and a smaller unit always says the
// same thing exactly.
constexpr Unit kUnits[] = {
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
};

std::optional<Millis> refuse(std::string* error, std::string message) {
  if (error != nullptr) {
    *error = std::move(message);
  }
  return std::nullopt;
}

}  // namespace

std::optional<Millis> parseDuration(std::string_view text, std::string* error) {
  if (text.empty()) {
    return refuse(error, fmt::format("\"\" is empty; {}", kHowTo));
  }
  if (text.front() == '-') {
    return refuse(error, fmt::format("\"{}\" is negative; durations are 0 or more, such as "
                                     "\"0s\" or \"2s\"",
                                     text));
  }
  if (text.find(' ') != std::string_view::npos) {
    return refuse(error, fmt::format("\"{}\" contains a space; write the number and the unit "
                                     "together, such as \"2s\"",
                                     text));
  }
  if (text.front() < '0' || text.front() > '9') {
    return refuse(error, fmt::format("\"{}\" does not start with a number; {}", text, kHowTo));
  }

  // Accumulate with an explicit bound so "99999999999999999999s" is refused rather than
  // wrapped into a short timeout.
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  size_t pos = 0;
  int64_t count = 0;
  bool too_large = false;
  for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos) {
    const int64_t digit = text[pos] - '0';
    if (count > (kMax - digit) / 10) {
      too_large = true;
    } else {
      count = count * 10 + digit;
    }
  }

  const std::string_view unit_text = text.substr(pos);
  if (unit_text.empty()) {
    return refuse(error, fmt::format("\"{}\" has no unit; {}", text, kHowTo));
  }
  if (unit_text.front() == '.' || unit_text.front() == ',') {
    return refuse(error, fmt::format("\"{}\" has a fraction, which is not supported; use a "
                                     "smaller unit, such as \"1500ms\" for 1.5 seconds",
                                     text));
  }

  for (const Unit& unit : kUnits) {
    if (unit.name != unit_text) {
      continue;
    }
    const int64_t max_count = kMax / unit.millis;
    if (too_large || count > max_count) {
      return refuse(error, fmt::format("\"{}\" is too large; the largest duration in {} is "
                                       "{}{}",
                                       text, unit.name, max_count, unit.name));
    }
    return Millis(count * unit.millis);
  }
  return refuse(error, fmt::format("\"{}\" has unknown unit \"{}\"; allowed units are ms, s, m "
                                   "and h, such as \"150ms\", \"2s\" or \"5m\"",
                                   text, unit_text));
}

}  // namespace fulcrum
