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
// XDP listeners: the kernel's maps have room for this many VIPs and Maglev entries per VIP
// (ebpf/fulcrum_xdp.h holds the same numbers; lb/xdp/ checks they agree).
inline constexpr uint32_t kMaxXdpListeners = 16;
inline constexpr uint32_t kMaxXdpTableSize = 65537;
inline constexpr size_t kMaxInterfaceName = 16;  // IFNAMSIZ, terminating zero included.
inline constexpr uint32_t kDefaultRingHashVnodes = 160;  // Ring points per unit of weight.

struct GlobalConfig {
  unsigned workers = 0;  // 0 = one per CPU.
  LogLevel log_level = LogLevel::Info;
  Millis drain_timeout{30000};
};

// An inclusive range of HTTP status codes a check accepts, such as 200-299.
struct StatusRange {
  uint16_t low = 200;
  uint16_t high = 399;

  bool operator==(const StatusRange&) const = default;
};

// Active and passive health checking of one backend. A pool's [pool.NAME.health] table gives
// the defaults; a backend's own `health = { ... }` overrides the timing keys and the target.
// Each BackendConfig carries the resolved result, so the checker reads one struct per backend.
struct HealthCheckConfig {
  HealthCheckType type = HealthCheckType::None;
  Millis interval{2000};       // Between probes while the state is settled.
  Millis fast_interval{2000};  // Between probes while a change is in progress (defaults to
                               // interval).
  Millis timeout{1000};        // Per probe; must not exceed interval.
  Millis jitter{0};            // Each wait is lengthened by a random 0..jitter.
  uint32_t rise = 2;           // Consecutive passes that bring a down backend up.
  uint32_t fall = 3;           // Consecutive failures that take an up backend down.

  // Where probes go: the backend's address, or the override (as with Patroni's REST port).
  Endpoint target;

  // tcp_expect / udp_expect: bytes sent, and bytes the answer must match.
  std::string send;
  std::string expect;
  ExpectMatch match = ExpectMatch::Contains;

  // http.
  std::string http_method = "GET";
  std::string http_path = "/";
  std::string http_host;  // Empty: the target address.
  std::vector<StatusRange> http_status = std::vector<StatusRange>(1, StatusRange{200, 399});
  std::string http_body;  // Substring the body must contain; empty: any body.

  // Passive detection: this many consecutive connect failures, timeouts or ICMP errors seen
  // by the data plane take the backend down at once (0 = off). Without an active check, a
  // passively downed backend returns after passive_cooldown.
  uint32_t passive_failures = 3;
  Millis passive_cooldown{10000};

  bool operator==(const HealthCheckConfig&) const = default;
};

struct BackendConfig {
  Endpoint address;
  uint32_t weight = 1;  // 0..kMaxWeight; 0 = takes no new flows.
  bool backup = false;  // Takes flows only while no primary backend can.
  AdminState state = AdminState::Enabled;  // Initial operator state.
  HealthCheckConfig health;  // Pool defaults with this backend's overrides applied.
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
  Millis slow_start{0};  // A recovered backend's weight ramps from 1/10 to full over this.
  OnDown on_down = OnDown::Continue;
  AllDownPolicy all_down = AllDownPolicy::Refuse;
  HealthCheckConfig health;  // Pool defaults (target unset); see BackendConfig::health.
  std::vector<BackendConfig> backends;
};

struct ListenerConfig {
  std::string name;
  Endpoint bind;
  Protocol protocol = Protocol::Tcp;
  std::string pool;
  Millis connect_timeout{2000};
  Millis idle_timeout{300000};  // UDP listeners default to kDefaultUdpIdleTimeout.
  uint32_t max_connections = 10000;  // TCP: open sessions across all workers.
  uint32_t backlog = 1024;           // TCP only.

  // UDP only.
  uint32_t max_sessions = 10000;  // Session table size across all workers.
  uint32_t replies = 0;           // Replies expected per client datagram; 0 = unlimited.
                                  // Once every datagram got its replies, the session ends.
  TableFullPolicy table_full = TableFullPolicy::DropNew;

  // mode = "xdp": the VIP (bind) is served in the kernel on `interface` by the XDP program,
  // which encapsulates to backends that answer clients directly (DSR, see README).
  ListenerMode mode = ListenerMode::Splicer;
  std::string interface;  // XDP only: the interface the VIP's packets arrive on.
  XdpAttach xdp_attach = XdpAttach::Auto;
  XdpFallback xdp_fallback = XdpFallback::None;

  bool operator==(const ListenerConfig&) const = default;
};

inline constexpr Millis kDefaultUdpIdleTimeout{30000};
inline constexpr uint32_t kMaxUdpSessions = 1000000;

// The admin endpoint (status API, operator actions, metrics, status page). Off unless listen
// or socket is set. Over TCP every request must carry the token; over the unix socket the
// socket file's mode (0600, owner only) is the access control and the token is not asked for.
struct AdminConfig {
  std::optional<Endpoint> listen;  // TCP address; port 0 = the kernel picks (logged).
  std::string socket;              // Unix socket path; empty = none.
  std::string token;               // From token, or token_file's contents trimmed.
  uint32_t max_body = 65536;       // Largest request body, bytes; more gets 413.
  uint32_t max_connections = 32;   // Admin connections open at once; more get 503.
  Millis request_timeout{10000};   // From accept to a complete request; then 408.

  bool enabled() const { return listen.has_value() || !socket.empty(); }
};

inline constexpr uint32_t kMaxAdminBody = 16u << 20;
inline constexpr uint32_t kMaxAdminConnections = 1024;

// One line per finished session. Off unless the [access_log] table is present.
struct AccessLogConfig {
  bool enabled = false;
  std::string path = "stderr";  // "stderr", "stdout" or an absolute file path (appended to).
  AccessLogFormat format = AccessLogFormat::Logfmt;
};

struct Config {
  std::string source;  // File name the config came from.
  GlobalConfig global;
  AdminConfig admin;
  AccessLogConfig access_log;
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
