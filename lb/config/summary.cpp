// summarize(): what `fulcrum check` prints for a valid config.

#include "fulcrum/config.hpp"

#include <algorithm>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "balance/ring_hash.hpp"

namespace fulcrum {

namespace {

std::string counted(size_t n, std::string_view singular, std::string_view plural) {
  return fmt::format("{} {}", n, n == 1 ? singular : plural);
}

bool usesHash(Algorithm algorithm) {
  return algorithm == Algorithm::RingHash || algorithm == Algorithm::Maglev;
}

// "maglev, hash source_ip, 3 backends of which 1 backup".
std::string describePool(const PoolConfig& pool) {
  std::string text = toString(pool.algorithm);
  if (usesHash(pool.algorithm)) {
    text += fmt::format(", hash {}", toString(pool.hash_key));
  }
  text += ", " + counted(pool.backends.size(), "backend", "backends");

  const auto backups = std::count_if(pool.backends.begin(), pool.backends.end(),
                                     [](const BackendConfig& b) { return b.backup; });
  if (backups > 0) {
    text += fmt::format(" of which {} backup", backups);
  }
  if (pool.proxy_protocol != ProxyProtocol::Off) {
    text += fmt::format(", proxy_protocol {}", toString(pool.proxy_protocol));
  }
  const HealthCheckConfig& health = pool.health;
  if (health.type != HealthCheckType::None) {
    text += fmt::format(", check {} every {}ms (timeout {}ms, rise {}, fall {})",
                        toString(health.type), health.interval.count(), health.timeout.count(),
                        health.rise, health.fall);
  }
  if (pool.on_down == OnDown::Close) {
    text += ", on_down close";
  }
  if (pool.slow_start.count() > 0) {
    text += fmt::format(", slow_start {}ms", pool.slow_start.count());
  }
  return text;
}

// "udp, replies 1, idle 30000ms": what a UDP listener adds to its line.
std::string describeListener(const ListenerConfig& listener) {
  // " xdp on eth0 (attach auto, fallback splicer)": how an XDP listener is served.
  const std::string xdp =
      listener.mode != ListenerMode::Xdp
          ? std::string()
          : fmt::format(" xdp on {} (attach {}, fallback {})", listener.interface,
                        toString(listener.xdp_attach), toString(listener.xdp_fallback));
  if (listener.protocol != Protocol::Udp) {
    return toString(listener.protocol) + xdp;
  }
  return fmt::format("udp (replies {}, idle_timeout {}ms, max_sessions {}, table_full {}){}",
                     listener.replies == 0 ? std::string("unlimited")
                                           : std::to_string(listener.replies),
                     listener.idle_timeout.count(), listener.max_sessions,
                     toString(listener.table_full), xdp);
}

// ring_hash builds one ring for the primaries and one for the backups, each of total weight
// times vnodes points up to the picker's cap; above it the picker scales every backend's
// points down without saying so. An empty string when the ring fits.
std::string ringHashCapNote(const PoolConfig& pool, bool backup) {
  uint64_t weight = 0;
  for (const BackendConfig& b : pool.backends) {
    if (b.backup == backup) {
      weight += b.weight;
    }
  }
  const uint64_t points = weight * pool.ring_hash_vnodes;
  if (points <= balance::RingHashPicker::kMaxPoints) {
    return {};
  }
  return fmt::format("note: pool {}: the {} ring would have {} points (weight {} x "
                     "ring_hash_vnodes {}), over the limit of {}; each backend's points are "
                     "scaled down to fit, so shares are less even\n",
                     pool.name, backup ? "backup" : "primary", points, weight,
                     pool.ring_hash_vnodes, balance::RingHashPicker::kMaxPoints);
}

}  // namespace

std::string summarize(const Config& config) {
  size_t backends = 0;
  for (const PoolConfig& pool : config.pools) {
    backends += pool.backends.size();
  }

  const unsigned workers = effectiveWorkers(config.global);
  std::string text = fmt::format(
      "config ok: {}, {}, {}, {}{}\n", counted(config.listeners.size(), "listener", "listeners"),
      counted(config.pools.size(), "pool", "pools"), counted(backends, "backend", "backends"),
      counted(workers, "worker", "workers"), config.global.workers == 0 ? " (one per CPU)" : "");

  for (const ListenerConfig& listener : config.listeners) {
    const PoolConfig* pool = config.findPool(listener.pool);
    text += fmt::format("listener {} {} {} -> pool {} ({})\n", listener.name,
                        describeListener(listener), listener.bind.toString(), listener.pool,
                        pool != nullptr ? describePool(*pool) : "undefined");
  }

  if (config.admin.enabled()) {
    std::string where;
    if (config.admin.listen) {
      where = fmt::format("listen {} (token required)", config.admin.listen->toString());
    }
    if (!config.admin.socket.empty()) {
      where += fmt::format("{}socket {}", where.empty() ? "" : ", ", config.admin.socket);
    }
    text += fmt::format("admin {}\n", where);
  }
  if (config.access_log.enabled) {
    text += fmt::format("access_log {} ({})\n", config.access_log.path,
                        toString(config.access_log.format));
  }

  // Legal but probably not what the operator meant: say so here, where they are looking.
  for (const PoolConfig& pool : config.pools) {
    const bool used = std::any_of(config.listeners.begin(), config.listeners.end(),
                                  [&](const ListenerConfig& l) { return l.pool == pool.name; });
    if (!used) {
      text += fmt::format("note: pool {} is not used by any listener\n", pool.name);
    }

    const bool all_zero = std::all_of(pool.backends.begin(), pool.backends.end(),
                                      [](const BackendConfig& b) { return b.weight == 0; });
    if (all_zero) {
      text += fmt::format("note: pool {}: every backend has weight 0, so it takes no new "
                          "connections\n",
                          pool.name);
    }

    if (pool.hash_key_set && !usesHash(pool.algorithm)) {
      text += fmt::format("note: pool {}: hash_key has no effect with algorithm {}; only "
                          "ring_hash and maglev use it\n",
                          pool.name, toString(pool.algorithm));
    }
    const bool draining_or_disabled =
        std::all_of(pool.backends.begin(), pool.backends.end(),
                    [](const BackendConfig& b) { return b.state != AdminState::Enabled; });
    if (draining_or_disabled) {
      text += fmt::format("note: pool {}: every backend is draining or disabled, so it takes no "
                          "new connections\n",
                          pool.name);
    }
    if (pool.algorithm == Algorithm::RingHash) {
      text += ringHashCapNote(pool, /*backup=*/false);
      text += ringHashCapNote(pool, /*backup=*/true);
    }
  }
  return text;
}

}  // namespace fulcrum
