#pragma once

// Private helpers for turning a parsed TOML document into the config model. Everything here
// runs on the control plane and reports problems by throwing ConfigError with a message of the
// shape "FILE:LINE:COLUMN: <what was found>; <what is allowed>". Locations are the ones
// toml11 keeps for every value: the first character of the value (not of its key), or the
// table header for a table.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <toml.hpp>

#include "fulcrum/config.hpp"

namespace fulcrum::config_detail {

// "FILE:LINE:COLUMN" of a value.
std::string locationOf(const std::string& file, const toml::value& value);

// Throws ConfigError("FILE:LINE:COLUMN: message").
[[noreturn]] void failAt(const std::string& file, const toml::value& at,
                         const std::string& message);

// "a string", "an integer", "a table", ... for messages that say what was found.
std::string_view typeName(const toml::value& value);

// A scalar exactly as written in the file. toml11 clamps an out-of-range integer literal to
// INT64_MAX, so messages quote the text to show the operator what they typed.
std::string literalText(const toml::value& value);

// The candidate an operator most likely meant by word: the same word in another case, a
// small edit distance (transpositions count as one edit), or a prefix of at least three
// characters. Empty when nothing is close.
std::string_view nearest(std::string_view word, std::span<const std::string_view> candidates);

// "a, b, c".
std::string joinNames(std::span<const std::string_view> names);

// Entries of a table ordered by where they appear in the file. toml11 3.7 stores tables in
// hash maps, and the first error reported must not depend on hash order.
std::vector<std::pair<std::string, const toml::value*>> inSourceOrder(const toml::value& table);

// Listener and pool names: [A-Za-z0-9_.-]{1,64}, so they are safe in log fields and metric
// labels without quoting.
bool isValidName(std::string_view name);
inline constexpr std::string_view kNameRule = "1 to 64 characters from A-Z a-z 0-9 _ . -";

template <typename E>
struct Choice {
  std::string_view name;
  E value;
};

// Reads the keys of one table. context names the table in messages: "[global]",
// `listener "redis"`, `pool "redis" backend #2`. Getters check type and range and throw
// "FILE:LINE:COLUMN: <context>: <problem>; <what is allowed>" at the offending value. The
// table must outlive the reader.
class TableReader {
 public:
  TableReader(const std::string& file, const toml::value& table, std::string context);

  const std::string& context() const { return context_; }
  void setContext(std::string context) { context_ = std::move(context); }
  const toml::value& table() const { return table_; }

  // Refuses the first key, in file order, that is not in allowed, suggesting the nearest one.
  void rejectUnknownKeys(std::initializer_list<std::string_view> allowed) const;

  // Null when the key is absent.
  const toml::value* find(std::string_view key) const;

  // A string value that must be present; a missing key is reported at the table's location,
  // with example showing how to write it.
  const toml::value& requireString(std::string_view key, std::string_view example) const;

  // Integer in [min, max], or fallback when absent. note follows the range in messages, such
  // as "(0 = one per CPU)".
  uint32_t integer(std::string_view key, int64_t min, int64_t max, uint32_t fallback,
                   std::string_view note = {}) const;

  bool boolean(std::string_view key, bool fallback) const;

  // A string value, or null when the key is absent; any other type is refused.
  const std::string* optionalString(std::string_view key, std::string_view example) const;

  // A duration string, or fallback when absent. With positive, "0s" is refused.
  Millis duration(std::string_view key, Millis fallback, bool positive) const;

  // One of a fixed set of names, or fallback when absent.
  template <typename E>
  E choice(std::string_view key, std::initializer_list<Choice<E>> choices, E fallback) const {
    const toml::value* value = find(key);
    if (value == nullptr) {
      return fallback;
    }
    std::vector<std::string_view> names;
    for (const auto& choice : choices) {
      names.push_back(choice.name);
    }
    const std::string& text = stringOrFail(key, *value, "a string, one of " + joinNames(names));
    for (const auto& choice : choices) {
      if (choice.name == text) {
        return choice.value;
      }
    }
    failUnknownChoice(key, *value, text, names);
  }

  // Throws "FILE:LINE:COLUMN: <context>: message" at the given value.
  [[noreturn]] void fail(const toml::value& at, const std::string& message) const;

 private:
  const std::string& stringOrFail(std::string_view key, const toml::value& value,
                                  std::string_view expected) const;
  [[noreturn]] void failType(std::string_view key, const toml::value& value,
                             std::string_view expected) const;
  [[noreturn]] void failUnknownChoice(std::string_view key, const toml::value& value,
                                      const std::string& text,
                                      std::span<const std::string_view> names) const;

  const std::string& file_;
  const toml::value& table_;
  std::string context_;
};

}  // namespace fulcrum::config_detail
