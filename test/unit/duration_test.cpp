#include <catch2/catch.hpp>

#include <string>

#include "fulcrum/config.hpp"

using fulcrum::Millis;
using fulcrum::parseDuration;

namespace {

// The refusal message for text, or "(accepted)" so a wrongly accepted input fails visibly.
std::string refusalOf(std::string_view text) {
  std::string error;
  if (parseDuration(text, &error)) {
    return "(accepted)";
  }
  return error;
}

}  // namespace

// Every unit scales to milliseconds exactly.
TEST_CASE("durations accept ms, s, m and h", "[duration]") {
  CHECK(parseDuration("150ms") == Millis(150));
  CHECK(parseDuration("2s") == Millis(2000));
  CHECK(parseDuration("5m") == Millis(300000));
  CHECK(parseDuration("1h") == Millis(3600000));
  CHECK(parseDuration("0s") == Millis(0));
  CHECK(parseDuration("0ms") == Millis(0));
  CHECK(parseDuration("007s") == Millis(7000));
  CHECK(parseDuration("90m") == Millis(5400000));
}

// The largest count that fits in int64 milliseconds is accepted and one more is refused, for
// the smallest and the largest unit.
TEST_CASE("durations are refused exactly at the int64 limit", "[duration]") {
  CHECK(parseDuration("9223372036854775807ms") == Millis(INT64_MAX));
  CHECK(parseDuration("2562047788015h") == Millis(2562047788015LL * 3600000));

  CHECK(refusalOf("9223372036854775808ms") ==
        "\"9223372036854775808ms\" is too large; the largest duration in ms is "
        "9223372036854775807ms");
  CHECK(refusalOf("2562047788016h") ==
        "\"2562047788016h\" is too large; the largest duration in h is 2562047788015h");
  CHECK(refusalOf("99999999999999999999999s") ==
        "\"99999999999999999999999s\" is too large; the largest duration in s is "
        "9223372036854775s");
}

// Each malformed spelling gets a sentence that names the input and the allowed form.
TEST_CASE("durations refuse malformed text with a reason", "[duration]") {
  const std::string how_to =
      "write an integer followed by ms, s, m or h, such as \"150ms\", \"2s\" or \"5m\"";

  CHECK(refusalOf("") == "\"\" is empty; " + how_to);
  CHECK(refusalOf("30") == "\"30\" has no unit; " + how_to);
  CHECK(refusalOf("s") == "\"s\" does not start with a number; " + how_to);
  CHECK(refusalOf("+2s") == "\"+2s\" does not start with a number; " + how_to);
  CHECK(refusalOf("-2s") ==
        "\"-2s\" is negative; durations are 0 or more, such as \"0s\" or \"2s\"");
  CHECK(refusalOf("1.5s") ==
        "\"1.5s\" has a fraction, which is not supported; use a smaller unit, such as "
        "\"1500ms\" for 1.5 seconds");
  CHECK(refusalOf("2 s") ==
        "\"2 s\" contains a space; write the number and the unit together, such as \"2s\"");
  CHECK(refusalOf("2sec") ==
        "\"2sec\" has unknown unit \"sec\"; allowed units are ms, s, m and h, such as "
        "\"150ms\", \"2s\" or \"5m\"");
  CHECK(refusalOf("2S") ==
        "\"2S\" has unknown unit \"S\"; allowed units are ms, s, m and h, such as "
        "\"150ms\", \"2s\" or \"5m\"");
  CHECK(refusalOf("1m30s") ==
        "\"1m30s\" has unknown unit \"m30s\"; allowed units are ms, s, m and h, such as "
        "\"150ms\", \"2s\" or \"5m\"");
  CHECK(refusalOf("2us") ==
        "\"2us\" has unknown unit \"us\"; allowed units are ms, s, m and h, such as "
        "\"150ms\", \"2s\" or \"5m\"");
}

// Callers that only want a yes or no may omit the error string.
TEST_CASE("durations can be checked without asking for a reason", "[duration]") {
  CHECK_FALSE(parseDuration("nope").has_value());
  CHECK(parseDuration("3s").has_value());
}
