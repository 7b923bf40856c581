// Checks that need more than one value: uniqueness and references. Each value was already
// checked on its own by buildConfig.

#include <fmt/format.h>

#include "config/build.hpp"
#include "config/toml_reader.hpp"

namespace fulcrum::config_detail {

namespace {

// "LINE:COLUMN" of an earlier value, for "first at ..." hints; the file is the same.
std::string lineColumn(const toml::value& value) {
  const toml::source_location loc = value.location();
  return fmt::format("{}:{}", loc.line(), loc.column());
}

bool isWildcard(const Endpoint& endpoint) {
  return endpoint.ipString() == "0.0.0.0" || endpoint.ipString() == "::";
}

void checkListenerNames(const Config& config, const ConfigSources& sources) {
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (config.listeners[i].name != config.listeners[j].name) {
        continue;
      }
      failAt(config.source, *sources.listeners[i].name,
             fmt::format("listener \"{}\" is defined twice, first at {}; listener names must "
                         "be unique",
                         config.listeners[i].name, lineColumn(*sources.listeners[j].name)));
    }
  }
}

// Two listeners on one address would both bind it with SO_REUSEPORT and silently split its
// connections, so an overlap is refused here rather than discovered in production. A bind
// port of 0 asks the kernel for a fresh port and never collides. A wildcard of the same
// family takes the port on every address, so it overlaps any specific address.
void checkListenerBinds(const Config& config, const ConfigSources& sources) {
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const ListenerConfig& listener = config.listeners[i];
    if (listener.bind.port() == 0) {
      continue;
    }

    for (size_t j = 0; j < i; ++j) {
      const ListenerConfig& earlier = config.listeners[j];
      // A TCP and a UDP listener on one address are separate sockets and never collide.
      if (earlier.protocol != listener.protocol ||
          earlier.bind.family() != listener.bind.family() ||
          earlier.bind.port() != listener.bind.port()) {
        continue;
      }
      const std::string& text = sources.listeners[i].bind->as_string().str;
      const std::string& earlier_text = sources.listeners[j].bind->as_string().str;
      const std::string earlier_at = lineColumn(*sources.listeners[j].bind);

      if (earlier.bind == listener.bind) {
        failAt(config.source, *sources.listeners[i].bind,
               fmt::format("listener \"{}\": bind \"{}\" is already used by listener \"{}\" at "
                           "{}; give each listener its own address or port",
                           listener.name, text, earlier.name, earlier_at));
      }
      if (isWildcard(earlier.bind) || isWildcard(listener.bind)) {
        failAt(config.source, *sources.listeners[i].bind,
               fmt::format("listener \"{}\": bind \"{}\" overlaps listener \"{}\" on \"{}\" at "
                           "{}; a wildcard address takes the port on every address, so use "
                           "another port",
                           listener.name, text, earlier.name, earlier_text, earlier_at));
      }
    }
  }
}

void checkPoolReferences(const Config& config, const ConfigSources& sources) {
  std::vector<std::string_view> names;
  for (const PoolConfig& pool : config.pools) {
    names.push_back(pool.name);
  }

  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const ListenerConfig& listener = config.listeners[i];
    if (config.findPool(listener.pool) != nullptr) {
      continue;
    }
    if (names.empty()) {
      failAt(config.source, *sources.listeners[i].pool,
             fmt::format("listener \"{}\": pool \"{}\" is not defined; no pools are defined, "
                         "add a [pool.{}] table with backends",
                         listener.name, listener.pool, listener.pool));
    }
    const std::string_view near = nearest(listener.pool, names);
    failAt(config.source, *sources.listeners[i].pool,
           fmt::format("listener \"{}\": pool \"{}\" is not defined; {}defined pools: {}",
                       listener.name, listener.pool,
                       near.empty() ? "" : fmt::format("did you mean \"{}\"? ", near),
                       joinNames(names)));
  }
}

void checkBackendAddresses(const Config& config, const ConfigSources& sources) {
  for (size_t p = 0; p < config.pools.size(); ++p) {
    const PoolConfig& pool = config.pools[p];
    const PoolSource& source = sources.pools[p];

    // Quadratic, but bounded by kMaxBackendsPerPool and run once per config load; it keeps
    // "first at" pointing at the earliest duplicate without a second index.
    for (size_t i = 0; i < pool.backends.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (!(pool.backends[i].address == pool.backends[j].address)) {
          continue;
        }
        failAt(config.source, *source.addresses[i],
               fmt::format("pool \"{}\" backend #{}: address \"{}\" is already used by backend "
                           "#{} at {}; list each backend once",
                           pool.name, i + 1, source.addresses[i]->as_string().str, j + 1,
                           lineColumn(*source.addresses[j])));
      }
    }
  }
}

// PROXY v1 is a text line for stream connections; a datagram can carry only v2.
void checkUdpPools(const Config& config, const ConfigSources& sources) {
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const ListenerConfig& listener = config.listeners[i];
    const PoolConfig* pool = config.findPool(listener.pool);
    if (listener.protocol != Protocol::Udp || pool == nullptr ||
        pool->proxy_protocol != ProxyProtocol::V1) {
      continue;
    }
    failAt(config.source, *sources.listeners[i].pool,
           fmt::format("listener \"{}\" is UDP but pool \"{}\" has proxy_protocol = \"v1\", which "
                       "only works on TCP; use proxy_protocol = \"v2\" or \"off\" in that pool",
                       listener.name, pool->name));
  }
}

// The XDP program steers by Maglev only, cannot add a PROXY header to a packet it does not
// terminate, encapsulates in the VIP's own family, and has fixed-size maps.
void checkXdpListeners(const Config& config, const ConfigSources& sources) {
  uint32_t xdp_count = 0;
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const ListenerConfig& listener = config.listeners[i];
    const PoolConfig* pool = config.findPool(listener.pool);
    if (listener.mode != ListenerMode::Xdp || pool == nullptr) {
      continue;
    }
    const toml::value& at = *sources.listeners[i].mode;
    if (++xdp_count > kMaxXdpListeners) {
      failAt(config.source, at,
             fmt::format("listener \"{}\" is XDP listener #{}; at most {} are supported, serve "
                         "the others with mode = \"splicer\"",
                         listener.name, xdp_count, kMaxXdpListeners));
    }
    if (pool->algorithm != Algorithm::Maglev) {
      failAt(config.source, at,
             fmt::format("listener \"{}\" has mode = \"xdp\" but pool \"{}\" uses algorithm "
                         "\"{}\"; XDP steers by Maglev only, set algorithm = \"maglev\"",
                         listener.name, pool->name, toString(pool->algorithm)));
    }
    if (pool->maglev_table_size > kMaxXdpTableSize) {
      failAt(config.source, at,
             fmt::format("listener \"{}\" has mode = \"xdp\" but pool \"{}\" has "
                         "maglev_table_size = {}; XDP tables hold at most {}",
                         listener.name, pool->name, pool->maglev_table_size, kMaxXdpTableSize));
    }
    if (pool->proxy_protocol != ProxyProtocol::Off) {
      failAt(config.source, at,
             fmt::format("listener \"{}\" has mode = \"xdp\" but pool \"{}\" sends PROXY "
                         "headers, which packets steered in the kernel cannot carry; set "
                         "proxy_protocol = \"off\"",
                         listener.name, pool->name));
    }
    for (const BackendConfig& backend : pool->backends) {
      if (backend.address.family() == listener.bind.family()) {
        continue;
      }
      failAt(config.source, at,
             fmt::format("listener \"{}\" has mode = \"xdp\" on {} but pool \"{}\" has "
                         "backend {} of the other family; XDP encapsulates in the VIP's family, "
                         "so use backends of the same family",
                         listener.name, listener.bind.toString(), pool->name,
                         backend.address.toString()));
    }
  }
}

}  // namespace

void validateConfig(const Config& config, const ConfigSources& sources) {
  checkListenerNames(config, sources);
  checkListenerBinds(config, sources);
  checkPoolReferences(config, sources);
  checkBackendAddresses(config, sources);
  checkUdpPools(config, sources);
  checkXdpListeners(config, sources);
}

}  // namespace fulcrum::config_detail
