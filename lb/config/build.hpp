#pragma once

// Private stages of parseConfig: translate a TOML syntax error, build the model from a parsed
// document, then check what only the whole model can tell. Each stage throws ConfigError
// with "FILE:LINE:COLUMN: ..." and stops at the first problem it finds.

#include <optional>
#include <string>
#include <vector>

#include <toml.hpp>

#include "fulcrum/config.hpp"

namespace fulcrum::config_detail {

// Where the values that refer to each other were written, so the whole-model checks can
// point at them. The pointers are into the parsed document, which must outlive this.
struct ListenerSource {
  const toml::value* name = nullptr;
  const toml::value* bind = nullptr;
  const toml::value* pool = nullptr;
  const toml::value* protocol = nullptr;  // Null when defaulted.
  const toml::value* mode = nullptr;      // Null when defaulted.
};

struct PoolSource {
  const toml::value* table = nullptr;
  std::vector<const toml::value*> addresses;  // One per backend, in order.
};

struct ConfigSources {
  std::vector<ListenerSource> listeners;  // Parallel to Config::listeners.
  std::vector<PoolSource> pools;          // Parallel to Config::pools.
};

// One line "FILE:LINE:COLUMN: invalid TOML: <reason>" for a toml11 parse failure. toml11
// 3.7 puts the precise position only in its multi-line excerpt (the exception's own
// location is often the start of the line), so the excerpt is read back for it.
std::string describeSyntaxError(const std::string& file, const toml::exception& error);

// A pool's [pool.NAME.health] table as read, before each backend's overrides resolve it.
struct HealthDefaults {
  HealthCheckConfig health;
  std::optional<std::string> address;  // Probe address override, as written.
  const toml::value* address_at = nullptr;
  uint32_t port = 0;  // Probe port override; 0 = the backend's.
  bool fast_interval_set = false;
};

// Reads a [pool.NAME.health] table; context names it in messages.
HealthDefaults buildHealth(const std::string& file, const toml::value& table,
                           const std::string& context);

// Resolves one backend's health: the pool defaults, its `health = {...}` overrides (null when
// absent) and the probe target. Throws ConfigError at the offending value.
void applyHealthOverrides(const std::string& file, const toml::value* overrides,
                          const std::string& context, const Endpoint& backend,
                          const HealthDefaults& defaults, HealthCheckConfig& health);

// Reads the [access_log] table.
AccessLogConfig buildAccessLog(const std::string& file, const toml::value& table);

// Reads the [admin] table; reads token_file, so a missing or empty token file is a config
// error rather than a surprise at start.
AdminConfig buildAdmin(const std::string& file, const toml::value& table);

// Builds the model, checking every value on its own: types, ranges, names, durations,
// addresses, unknown keys. Pools keep their order in the file.
Config buildConfig(const toml::value& root, const std::string& file, ConfigSources& sources);

// Checks across values: unique listener names and bind addresses, pools that exist, backend
// addresses unique within a pool.
void validateConfig(const Config& config, const ConfigSources& sources);

}  // namespace fulcrum::config_detail
