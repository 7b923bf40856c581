#pragma once

// The configuration model. A Config is built once by the control plane from a TOML file,
// validated as a whole, and then only read. Every validation failure throws ConfigError
// whose message names file:line:column, what was found and what is allowed.

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/endpoint.hpp"
#include "fulcrum/types.hpp"

namespace fulcrum {

using Millis = std::chrono::milliseconds;

// Limits enforced by validation; documented in README's config reference.
inline constexpr uint32_t kMaxWeight = 1000;
inline constexpr uint32_t kMaxRetries = 16;
inline constexpr uint32_t kMaxBackendsPerPool = 4096;
inline constexpr uint32_t kDefaultMaglevTableSize = 65537;
inline constexpr uint32_t kMaxMaglevTableSize = 1000003;
inline constexpr uint32_t kDefaultRingHashVnodes = 160;  // Ring points per unit of weight.

struct GlobalConfig {
  unsigned workers = 0;  // 0 = one per CPU.
  LogLevel log_level = LogLevel::Info;
  Millis drain_timeout{30000};
};

struct BackendConfig {
  Endpoint address;
  uint32_t weight = 1;  // 0..kMaxWeight; 0 = takes no new flows.
  bool backup = false;  // Takes flows only while no primary backend can.
};

struct PoolConfig {
  std::string name;
  Algorithm algorithm = Algorithm::RoundRobin;
  HashKey hash_key = HashKey::SourceIp;
  bool hash_key_set = false;  // hash_key was written in the file, not defaulted.
  uint32_t retries = 2;  // Extra backends tried after the first connect fails.
  ProxyProtocol proxy_protocol = ProxyProtocol::Off;
  uint32_t maglev_table_size = kDefaultMaglevTableSize;  // Must be prime.
  uint32_t ring_hash_vnodes = kDefaultRingHashVnodes;
  std::vector<BackendConfig> backends;
};

struct ListenerConfig {
  std::string name;
  Endpoint bind;
  Protocol protocol = Protocol::Tcp;
  std::string pool;
  Millis connect_timeout{2000};
  Millis idle_timeout{300000};
  uint32_t max_connections = 10000;  // Across all workers.
  uint32_t backlog = 1024;
};

struct Config {
  std::string source;  // File name the config came from.
  GlobalConfig global;
  std::vector<ListenerConfig> listeners;
  std::vector<PoolConfig> pools;

  const PoolConfig* findPool(std::string_view name) const;
};

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads and validates a config file. Throws ConfigError (also for an unreadable file).
Config loadConfigFile(const std::string& path);

// Same for text already in memory; source_name is used in messages.
Config parseConfig(std::string_view text, const std::string& source_name);

// A few lines for `fulcrum check`: listeners, pools, backends, algorithms.
std::string summarize(const Config& config);

// "150ms", "2s", "5m", "1h", "0s". Rejects missing units, negatives and overflow.
std::optional<Millis> parseDuration(std::string_view text, std::string* error = nullptr);

// Number of worker threads to run: workers, or the CPU count when workers == 0.
unsigned effectiveWorkers(const GlobalConfig& global);

}  // namespace fulcrum
