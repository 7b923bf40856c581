// Walks a parsed TOML document into the config model, one table at a time.

#include "config/build.hpp"

#include <array>

#include <fmt/format.h>

#include "config/toml_reader.hpp"

namespace fulcrum::config_detail {

namespace {

constexpr uint32_t kMaxWorkers = 256;
constexpr uint32_t kMaxConnections = 1000000;
constexpr uint32_t kMaxBacklog = 65535;
constexpr uint32_t kMinMaglevTableSize = 7;
constexpr uint32_t kMaxRingHashVnodes = 1000;
constexpr uint32_t kMaxUdpReplies = 1000000;

constexpr std::string_view kBackendExample = "{ address = \"127.0.0.1:7001\" }";

bool isPrime(uint32_t n) {
  if (n < 2) {
    return false;
  }
  for (uint32_t d = 2; d <= n / d; ++d) {
    if (n % d == 0) {
      return false;
    }
  }
  return true;
}

// The smallest prime >= n, to turn "not prime" into a concrete fix. Terminates below
// kMaxMaglevTableSize + 1 because that limit is itself prime.
uint32_t nextPrime(uint32_t n) {
  while (!isPrime(n)) {
    ++n;
  }
  return n;
}

// A value that must be a table, such as [global] or one [[listener]] entry.
void requireTable(const TableReader& parent, std::string_view key, const toml::value& value,
                  std::string_view example) {
  if (!value.is_table()) {
    parent.fail(value, fmt::format("{} is {}; expected a table, written {}", key,
                                   typeName(value), example));
  }
}

GlobalConfig buildGlobal(const std::string& file, const toml::value& table) {
  TableReader reader(file, table, "[global]");
  reader.rejectUnknownKeys({"workers", "log_level", "drain_timeout"});

  GlobalConfig global;
  global.workers = reader.integer("workers", 0, kMaxWorkers, 0, "(0 = one per CPU)");
  global.log_level = reader.choice<LogLevel>("log_level",
                                             {{"trace", LogLevel::Trace},
                                              {"debug", LogLevel::Debug},
                                              {"info", LogLevel::Info},
                                              {"warn", LogLevel::Warn},
                                              {"error", LogLevel::Error}},
                                             LogLevel::Info);
  global.drain_timeout = reader.duration("drain_timeout", global.drain_timeout, false);
  return global;
}

// A name for listeners and pools; see kNameRule.
void checkName(const TableReader& reader, const toml::value& at, std::string_view what,
               const std::string& name) {
  if (!isValidName(name)) {
    reader.fail(at, fmt::format("{} \"{}\" is not valid; use {}", what, name, kNameRule));
  }
}

// mode, interface, xdp_attach and xdp_fallback. The XDP keys are refused on a splicer
// listener, so a setting the operator believes in never silently does nothing; checks that
// involve the pool are in validate.cpp.
void buildXdpKeys(const TableReader& reader, ListenerConfig& listener, ListenerSource& source) {
  listener.mode = reader.choice<ListenerMode>(
      "mode", {{"splicer", ListenerMode::Splicer}, {"xdp", ListenerMode::Xdp}}, listener.mode);
  source.mode = reader.find("mode");

  if (listener.mode != ListenerMode::Xdp) {
    for (std::string_view key : {"interface", "xdp_attach", "xdp_fallback"}) {
      if (const toml::value* value = reader.find(key)) {
        reader.fail(*value, fmt::format("{} applies only to XDP listeners; remove it or set "
                                        "mode = \"xdp\"",
                                        key));
      }
    }
    return;
  }

  const toml::value& interface = reader.requireString("interface", "interface = \"eth0\"");
  listener.interface = interface.as_string().str;
  if (listener.interface.empty() || listener.interface.size() >= kMaxInterfaceName ||
      listener.interface.find_first_of("/ \t") != std::string::npos) {
    reader.fail(interface, fmt::format("interface \"{}\" is not a valid interface name; use the "
                                       "name `ip link` shows, such as \"eth0\"",
                                       listener.interface));
  }
  listener.xdp_attach = reader.choice<XdpAttach>("xdp_attach",
                                                 {{"auto", XdpAttach::Auto},
                                                  {"native", XdpAttach::Native},
                                                  {"generic", XdpAttach::Generic}},
                                                 listener.xdp_attach);
  listener.xdp_fallback = reader.choice<XdpFallback>(
      "xdp_fallback", {{"splicer", XdpFallback::Splicer}, {"none", XdpFallback::None}},
      listener.xdp_fallback);

  if (listener.bind.port() == 0 || listener.bind.ipString() == "0.0.0.0" ||
      listener.bind.ipString() == "::") {
    reader.fail(*source.bind, fmt::format("bind \"{}\": an XDP listener needs one VIP address "
                                          "and port, not a wildcard or port 0",
                                          source.bind->as_string().str));
  }
}

ListenerConfig buildListener(const std::string& file, const toml::value& table, size_t index,
                             ListenerSource& source) {
  // Messages name the entry by its name when it has a usable one, else by its position.
  // Unknown keys are checked before the name is required, so a misspelt "nmae" is reported
  // as a typo with a suggestion rather than as a missing name.
  TableReader reader(file, table, fmt::format("[[listener]] #{}", index + 1));
  const toml::value* name_value = reader.find("name");
  if (name_value != nullptr && name_value->is_string() &&
      isValidName(name_value->as_string().str)) {
    reader.setContext(fmt::format("listener \"{}\"", name_value->as_string().str));
  }
  reader.rejectUnknownKeys({"name", "bind", "protocol", "pool", "connect_timeout", "idle_timeout",
                            "max_connections", "backlog", "replies", "max_sessions",
                            "table_full", "mode", "interface", "xdp_attach", "xdp_fallback"});

  ListenerConfig listener;
  source.name = &reader.requireString("name", "name = \"web\"");
  listener.name = source.name->as_string().str;
  checkName(reader, *source.name, "name", listener.name);

  source.bind = &reader.requireString("bind", "bind = \"127.0.0.1:8080\"");
  const std::string& bind_text = source.bind->as_string().str;
  std::string error;
  const std::optional<Endpoint> bind = Endpoint::parse(bind_text, &error);
  if (!bind) {
    reader.fail(*source.bind, fmt::format("bind \"{}\": {}", bind_text, error));
  }
  listener.bind = *bind;

  listener.protocol = reader.choice<Protocol>("protocol", {{"tcp", Protocol::Tcp},
                                                           {"udp", Protocol::Udp}},
                                              Protocol::Tcp);
  source.protocol = reader.find("protocol");

  source.pool = &reader.requireString("pool", "pool = \"web\"");
  listener.pool = source.pool->as_string().str;

  // Keys that mean something for one protocol only are refused on the other, so a setting
  // the operator believes in never silently does nothing.
  const bool udp = listener.protocol == Protocol::Udp;
  const std::string_view kind = udp ? "UDP" : "TCP";
  static constexpr std::array<std::string_view, 3> kTcpOnly = {"connect_timeout",
                                                               "max_connections", "backlog"};
  static constexpr std::array<std::string_view, 3> kUdpOnly = {"replies", "max_sessions",
                                                               "table_full"};
  const std::array<std::string_view, 3>& other_keys = udp ? kTcpOnly : kUdpOnly;
  for (std::string_view key : other_keys) {
    if (const toml::value* value = reader.find(key)) {
      reader.fail(*value, fmt::format("{} does not apply to {} listeners; remove it{}", key, kind,
                                      udp ? " (UDP listeners use max_sessions, replies and "
                                            "table_full)"
                                          : " or set protocol = \"udp\""));
    }
  }

  listener.connect_timeout =
      reader.duration("connect_timeout", listener.connect_timeout, /*positive=*/true);
  listener.idle_timeout =
      reader.duration("idle_timeout", udp ? kDefaultUdpIdleTimeout : listener.idle_timeout, true);
  listener.max_connections =
      reader.integer("max_connections", 1, kMaxConnections, listener.max_connections);
  listener.backlog = reader.integer("backlog", 1, kMaxBacklog, listener.backlog);
  listener.max_sessions =
      reader.integer("max_sessions", 1, kMaxUdpSessions, listener.max_sessions);
  listener.replies = reader.integer("replies", 0, kMaxUdpReplies, listener.replies,
                                    "(0 = unlimited)");
  listener.table_full = reader.choice<TableFullPolicy>(
      "table_full",
      {{"drop_new", TableFullPolicy::DropNew}, {"evict_oldest", TableFullPolicy::EvictOldest}},
      listener.table_full);
  buildXdpKeys(reader, listener, source);
  return listener;
}

BackendConfig buildBackend(const std::string& file, const TableReader& pool_reader,
                           const toml::value& entry, size_t index, const HealthDefaults& health,
                           PoolSource& source) {
  const std::string context = fmt::format("{} backend #{}", pool_reader.context(), index + 1);
  if (!entry.is_table()) {
    pool_reader.fail(entry, fmt::format("backend #{} is {}; expected an inline table such as {}",
                                        index + 1, typeName(entry), kBackendExample));
  }

  TableReader reader(file, entry, context);
  reader.rejectUnknownKeys({"address", "weight", "backup", "state", "health"});
  BackendConfig backend;

  const toml::value& address = reader.requireString("address", "address = \"127.0.0.1:7001\"");
  source.addresses.push_back(&address);
  const std::string& text = address.as_string().str;
  std::string error;
  const std::optional<Endpoint> endpoint = Endpoint::parse(text, &error);
  if (!endpoint) {
    reader.fail(address, fmt::format("address \"{}\": {}", text, error));
  }

  // Port 0 and the "any" address are meaningful for bind, but a connect to them either fails
  // or, on Linux, quietly reaches the local host: neither is a backend anyone means.
  if (endpoint->port() == 0) {
    reader.fail(address, fmt::format("address \"{}\": port 0 cannot be connected to; use the "
                                     "port the backend listens on",
                                     text));
  }
  if (endpoint->ipString() == "0.0.0.0" || endpoint->ipString() == "::") {
    reader.fail(address, fmt::format("address \"{}\": {} means any address and cannot be "
                                     "connected to; use the backend's own address",
                                     text, endpoint->ipString()));
  }
  backend.address = *endpoint;

  backend.weight = reader.integer("weight", 0, kMaxWeight, backend.weight,
                                  "(0 = takes no new flows)");
  backend.backup = reader.boolean("backup", backend.backup);
  backend.state = reader.choice<AdminState>("state",
                                            {{"enabled", AdminState::Enabled},
                                             {"draining", AdminState::Draining},
                                             {"disabled", AdminState::Disabled}},
                                            backend.state);
  applyHealthOverrides(file, reader.find("health"), context + " health", backend.address, health,
                       backend.health);
  return backend;
}

void buildBackends(const std::string& file, const TableReader& reader,
                   const HealthDefaults& health, PoolConfig& pool, PoolSource& source) {
  const std::string example = fmt::format("backends = [{}]", kBackendExample);
  const toml::value* backends = reader.find("backends");
  if (backends == nullptr) {
    reader.fail(reader.table(),
                fmt::format("missing required key \"backends\"; add it, such as {}", example));
  }
  if (!backends->is_array()) {
    reader.fail(*backends, fmt::format("backends is {}; expected an array of inline tables, "
                                       "such as {}",
                                       typeName(*backends), example));
  }

  const auto& entries = backends->as_array();
  if (entries.empty()) {
    reader.fail(*backends, fmt::format("backends is empty; list at least one, such as {}",
                                       example));
  }
  if (entries.size() > kMaxBackendsPerPool) {
    reader.fail(*backends, fmt::format("backends has {} entries; at most {} are allowed in "
                                       "one pool",
                                       entries.size(), kMaxBackendsPerPool));
  }

  for (size_t i = 0; i < entries.size(); ++i) {
    pool.backends.push_back(buildBackend(file, reader, entries[i], i, health, source));
  }
}

PoolConfig buildPool(const std::string& file, const std::string& name, const toml::value& table,
                     PoolSource& source) {
  TableReader reader(file, table, fmt::format("pool \"{}\"", name));
  reader.rejectUnknownKeys({"algorithm", "hash_key", "retries", "proxy_protocol",
                            "maglev_table_size", "ring_hash_vnodes", "slow_start", "on_down",
                            "all_down", "health", "backends"});
  PoolConfig pool;
  pool.name = name;
  source.table = &table;

  pool.algorithm = reader.choice<Algorithm>("algorithm",
                                            {{"round_robin", Algorithm::RoundRobin},
                                             {"least_conn", Algorithm::LeastConn},
                                             {"random_two", Algorithm::RandomTwo},
                                             {"ring_hash", Algorithm::RingHash},
                                             {"maglev", Algorithm::Maglev}},
                                            pool.algorithm);
  pool.hash_key = reader.choice<HashKey>("hash_key",
                                         {{"source_ip", HashKey::SourceIp},
                                          {"source_ip_port", HashKey::SourceIpPort},
                                          {"five_tuple", HashKey::FiveTuple}},
                                         pool.hash_key);
  pool.hash_key_set = reader.find("hash_key") != nullptr;
  pool.retries = reader.integer("retries", 0, kMaxRetries, pool.retries);
  pool.proxy_protocol = reader.choice<ProxyProtocol>(
      "proxy_protocol",
      {{"off", ProxyProtocol::Off}, {"v1", ProxyProtocol::V1}, {"v2", ProxyProtocol::V2}},
      pool.proxy_protocol);

  // Maglev's permutation walk visits every slot only when the table size is prime
  // (Eisenbud et al., NSDI 2016, section 3.4).
  pool.maglev_table_size = reader.integer("maglev_table_size", kMinMaglevTableSize,
                                          kMaxMaglevTableSize, pool.maglev_table_size,
                                          "and prime");
  if (!isPrime(pool.maglev_table_size)) {
    const toml::value& at = *reader.find("maglev_table_size");
    reader.fail(at, fmt::format("maglev_table_size = {} is not prime; use a prime such as {}",
                                pool.maglev_table_size, nextPrime(pool.maglev_table_size)));
  }
  pool.ring_hash_vnodes =
      reader.integer("ring_hash_vnodes", 1, kMaxRingHashVnodes, pool.ring_hash_vnodes);

  pool.slow_start = reader.duration("slow_start", pool.slow_start, /*positive=*/false);
  pool.on_down = reader.choice<OnDown>("on_down",
                                       {{"continue", OnDown::Continue}, {"close", OnDown::Close}},
                                       pool.on_down);
  pool.all_down = reader.choice<AllDownPolicy>(
      "all_down", {{"refuse", AllDownPolicy::Refuse}, {"all", AllDownPolicy::All}},
      pool.all_down);

  HealthDefaults health;
  if (const toml::value* health_table = reader.find("health")) {
    requireTable(reader, "health", *health_table, fmt::format("[pool.{}.health]", name));
    health = buildHealth(file, *health_table, fmt::format("[pool.{}.health]", name));
  }
  pool.health = health.health;

  buildBackends(file, reader, health, pool, source);
  return pool;
}

void buildListeners(const std::string& file, const TableReader& root, Config& config,
                    ConfigSources& sources) {
  constexpr std::string_view kHowTo =
      "add at least one [[listener]] table with name, bind and pool";
  const toml::value* listeners = root.find("listener");
  if (listeners == nullptr) {
    failAt(file, root.table(), fmt::format("no listener is defined; {}", kHowTo));
  }
  if (!listeners->is_array()) {
    root.fail(*listeners, fmt::format("listener is {}; expected an array of tables, written "
                                      "[[listener]] with two brackets",
                                      typeName(*listeners)));
  }
  if (listeners->as_array().empty()) {
    failAt(file, *listeners, fmt::format("no listener is defined; {}", kHowTo));
  }

  const auto& entries = listeners->as_array();
  for (size_t i = 0; i < entries.size(); ++i) {
    requireTable(root, fmt::format("listener #{}", i + 1), entries[i], "[[listener]]");
    ListenerSource source;
    config.listeners.push_back(buildListener(file, entries[i], i, source));
    sources.listeners.push_back(source);
  }
}

void buildPools(const std::string& file, const TableReader& root, Config& config,
                ConfigSources& sources) {
  const toml::value* pools = root.find("pool");
  if (pools == nullptr) {
    return;
  }
  requireTable(root, "pool", *pools, "[pool.NAME]");

  TableReader pool_reader(file, *pools, "[pool]");
  for (const auto& [name, table] : inSourceOrder(*pools)) {
    if (!isValidName(name)) {
      failAt(file, *table, fmt::format("pool name \"{}\" is not valid; use {}", name, kNameRule));
    }
    requireTable(pool_reader, fmt::format("pool \"{}\"", name), *table,
                 fmt::format("[pool.{}]", name));

    PoolSource source;
    config.pools.push_back(buildPool(file, name, *table, source));
    sources.pools.push_back(std::move(source));
  }
}

}  // namespace

Config buildConfig(const toml::value& root, const std::string& file, ConfigSources& sources) {
  Config config;
  config.source = file;

  TableReader reader(file, root, "the top level");
  reader.rejectUnknownKeys({"global", "listener", "pool", "access_log", "admin"});

  if (const toml::value* global = reader.find("global")) {
    requireTable(reader, "global", *global, "[global]");
    config.global = buildGlobal(file, *global);
  }
  buildListeners(file, reader, config, sources);
  buildPools(file, reader, config, sources);
  if (const toml::value* access_log = reader.find("access_log")) {
    requireTable(reader, "access_log", *access_log, "[access_log]");
    config.access_log = buildAccessLog(file, *access_log);
  }
  if (const toml::value* admin = reader.find("admin")) {
    requireTable(reader, "admin", *admin, "[admin]");
    config.admin = buildAdmin(file, *admin);
  }
  return config;
}

}  // namespace fulcrum::config_detail
