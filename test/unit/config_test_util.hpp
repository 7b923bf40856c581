#pragma once

// Helpers for the config tests: inline TOML and the error a config is refused with.

#include <string>
#include <string_view>

#include "fulcrum/config.hpp"

namespace fulcrum::config_testing {

// Inline configs start on the line after R"( so their line numbers read naturally in the
// source; drop that first newline.
inline std::string toml(std::string_view text) {
  if (!text.empty() && text.front() == '\n') {
    text.remove_prefix(1);
  }
  return std::string(text);
}

// The ConfigError message for text, or "(accepted)" so a wrongly accepted config fails with
// a readable diff.
inline std::string errorOf(std::string_view text) {
  try {
    parseConfig(toml(text), "x.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace fulcrum::config_testing
