// summarize(): what `fulcrum check` prints for a valid config.

#include "fulcrum/config.hpp"

#include <algorithm>
#include <string>

#include <fmt/format.h>

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
  return text;
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
                        toString(listener.protocol), listener.bind.toString(), listener.pool,
                        pool != nullptr ? describePool(*pool) : "undefined");
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
  }
  return text;
}

}  // namespace fulcrum
