#include "runtime/server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>

#include "fulcrum/log.hpp"
#include "health/checker.hpp"
#include "udp/udp_socket.hpp"

namespace fulcrum::runtime {

namespace {

// Interval at which a drain checks whether every session has finished.
constexpr uint64_t kDrainTickMs = 50;

// Opens one SO_REUSEPORT listening socket. Returns the fd or throws StartupError.
int openListenSocket(const ListenerConfig& config, const Endpoint& address) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw StartupError(fmt::format("cannot create socket for listener {}: {}", config.name,
                                   std::strerror(errno)));
  }

  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (address.isV6()) {
    // [::]:port means IPv6 only, so an IPv4 listener on the same port can coexist.
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }

  if (::bind(fd, address.sa(), address.len()) != 0) {
    const int error = errno;
    ::close(fd);
    std::string hint;
    if (error == EADDRINUSE) {
      hint = "; another process holds this port: stop it or change bind";
    } else if (error == EADDRNOTAVAIL) {
      hint = "; the address is not configured on any interface of this host";
    } else if (error == EACCES) {
      hint = "; ports below 1024 need root or CAP_NET_BIND_SERVICE";
    }
    throw StartupError(fmt::format("cannot bind listener {} to {}: {}{}", config.name,
                                   address.toString(), std::strerror(error), hint));
  }

  if (::listen(fd, static_cast<int>(config.backlog)) != 0) {
    const int error = errno;
    ::close(fd);
    throw StartupError(fmt::format("cannot listen on {} for listener {}: {}",
                                   address.toString(), config.name, std::strerror(error)));
  }
  return fd;
}

// Every worker's socket sets SO_REUSEPORT, which would also let this process silently join
// another process (a second Fulcrum, a stale instance) already listening on the address and
// split its traffic. A plain bind first proves nobody holds the address.
void ensureAddressFree(const ListenerConfig& config, const Endpoint& address) {
  if (address.port() == 0) {
    return;
  }

  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return;  // The real bind reports the problem.
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (address.isV6()) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }

  const int rc = ::bind(fd, address.sa(), address.len());
  const int error = errno;
  ::close(fd);
  if (rc != 0 && error == EADDRINUSE) {
    throw StartupError(fmt::format(
        "cannot bind listener {} to {}: {}; another process (perhaps another fulcrum) holds "
        "this address: stop it or change bind",
        config.name, address.toString(), std::strerror(error)));
  }
}

}  // namespace

Server::Server(Config config)
    : config_(std::move(config)), worker_count_(effectiveWorkers(config_.global)) {
  uv_loop_init(&loop_);
}

Server::~Server() {
  if (!stopped_) {
    for (auto& worker : workers_) {
      worker->shutdown();
    }
    if (handles_open_) {
      closeHandles();
    }
  }
  workers_.clear();
  // Closing handles may close others in their callbacks (health probes do); a few turns
  // settle them without waiting on anything still active.
  for (int turn = 0; turn < 8 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++turn) {
  }
  uv_loop_close(&loop_);
  checker_.reset();
}

void Server::bindListeners(std::vector<std::vector<ListenSocket>>& per_worker) {
  for (const PoolConfig& pool_config : config_.pools) {
    pools_.push_back(std::make_unique<pool::Pool>(pool_config));
  }

  for (const ListenerConfig& listener_config : config_.listeners) {
    auto state = std::make_unique<ListenerState>();
    state->config = listener_config;
    state->address = listener_config.bind;
    for (auto& pool : pools_) {
      if (pool->name() == listener_config.pool) {
        state->pool = pool.get();
      }
    }

    // Worker 0 binds first; a configured port 0 becomes the kernel's choice, which the
    // other workers then share through SO_REUSEPORT.
    for (unsigned w = 0; w < worker_count_; ++w) {
      int fd;
      try {
        if (listener_config.protocol == Protocol::Udp) {
          fd = udp::openListenSocket(listener_config, state->address, w == 0);
        } else {
          if (w == 0) {
            ensureAddressFree(listener_config, state->address);
          }
          fd = openListenSocket(listener_config, state->address);
        }
      } catch (...) {
        for (auto& sockets : per_worker) {
          for (ListenSocket& s : sockets) {
            ::close(s.fd);
          }
          sockets.clear();
        }
        throw;
      }
      if (w == 0 && state->address.port() == 0) {
        sockaddr_storage bound{};
        socklen_t len = sizeof(bound);
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
        state->address = Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&bound));
      }
      per_worker[w].push_back(ListenSocket{state.get(), fd});
    }
    listeners_.push_back(std::move(state));
  }
}

void Server::start() {
  // Signal handlers go in before any listener exists: a SIGTERM that arrives as soon as the
  // first client could connect must drain, not kill the process with the default action.
  // libuv records the signal and delivers it once run() turns the loop.
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  sigterm_.data = this;
  sigint_.data = this;
  uv_signal_start(&sigterm_, onSignal_cb, SIGTERM);
  uv_signal_start(&sigint_, onSignal_cb, SIGINT);
  // SIGHUP's default action would kill the process; operators send it expecting a reload.
  uv_signal_init(&loop_, &sighup_);
  sighup_.data = this;
  uv_signal_start(&sighup_, onSighup_cb, SIGHUP);

  uv_timer_init(&loop_, &drain_tick_);
  uv_timer_init(&loop_, &drain_deadline_);
  drain_tick_.data = this;
  drain_deadline_.data = this;
  handles_open_ = true;

  std::vector<std::vector<ListenSocket>> per_worker(worker_count_);
  bindListeners(per_worker);
  startHealth();

  for (unsigned w = 0; w < worker_count_; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, std::move(per_worker[w])));
  }
  for (auto& worker : workers_) {
    worker->start();
  }
  if (draining_) {
    // A signal arrived while the first probes ran; the drain has begun without workers.
    for (auto& worker : workers_) {
      worker->stopAccepting();
    }
  }

  for (const auto& state : listeners_) {
    const pool::PoolSnapshot& pool = *state->pool->snapshot();
    spdlog::info("listener started listener={} address={} workers={} pool={} algorithm={} "
                 "backends={}",
                 state->config.name, state->address.toString(), worker_count_, pool.name(),
                 toString(pool.algorithm()), pool.backends().size());
  }
}

// The listeners are bound (the kernel queues connections) but nobody accepts yet: the first
// probe of every actively checked backend runs now, so the first client already meets the
// real health of the pool instead of a guess. Each probe ends within its timeout.
void Server::startHealth() {
  std::vector<pool::Pool*> pools;
  for (auto& pool : pools_) {
    pools.push_back(pool.get());
  }
  checker_ = std::make_unique<health::Checker>(&loop_, std::move(pools), [this] {
    for (auto& worker : workers_) {
      worker->closeDownedSessions();
    }
  });

  bool ready = false;
  checker_->start([&ready] { ready = true; });
  while (!ready && uv_run(&loop_, UV_RUN_ONCE) != 0) {
  }
  for (const auto& pool : pools_) {
    const auto snapshot = pool->snapshot();
    if (pool->config().health.type == HealthCheckType::None) {
      continue;
    }
    const auto level = snapshot->upCount() == 0 ? spdlog::level::warn : spdlog::level::info;
    spdlog::log(level, "health checks started pool={} check={} backends={} up={}{}",
                pool->name(), toString(pool->config().health.type),
                snapshot->backends().size(), snapshot->upCount(),
                snapshot->upCount() == 0
                    ? fmt::format(" policy={}", toString(pool->config().all_down))
                    : std::string());
  }
}

int Server::run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  spdlog::info("fulcrum stopped");
  return 0;
}

void Server::onSignal_cb(uv_signal_t* handle, int signum) {
  static_cast<Server*>(handle->data)->onSignal(signum);
}

void Server::onSighup_cb(uv_signal_t* /*handle*/, int /*signum*/) {
  spdlog::warn("signal ignored signal=SIGHUP reason=reload_not_supported_in_this_version "
               "action=keep_running");
}

void Server::onDrainTick_cb(uv_timer_t* handle) {
  static_cast<Server*>(handle->data)->onDrainTick();
}

void Server::onDrainDeadline_cb(uv_timer_t* handle) {
  auto* server = static_cast<Server*>(handle->data);
  spdlog::warn("drain timeout reached sessions={} action=close_sessions",
               server->activeSessions());
  server->stopWorkers("drain_timeout");
}

void Server::onSignal(int signum) {
  const char* name = signum == SIGTERM ? "SIGTERM" : "SIGINT";

  if (draining_) {
    spdlog::warn("second signal during drain signal={} sessions={} action=close_sessions", name,
                 activeSessions());
    stopWorkers("second_signal");
    return;
  }

  draining_ = true;
  spdlog::info("shutdown requested signal={} sessions={} drain_timeout_ms={}", name,
               activeSessions(), config_.global.drain_timeout.count());
  for (auto& worker : workers_) {
    worker->stopAccepting();
  }
  uv_timer_start(&drain_tick_, onDrainTick_cb, kDrainTickMs, kDrainTickMs);
  uv_timer_start(&drain_deadline_, onDrainDeadline_cb,
                 static_cast<uint64_t>(config_.global.drain_timeout.count()), 0);
}

void Server::onDrainTick() {
  if (activeSessions() == 0) {
    spdlog::info("drain complete");
    stopWorkers("drained");
  }
}

void Server::stopWorkers(const char* why) {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  spdlog::debug("stopping workers reason={}", why);

  for (auto& worker : workers_) {
    worker->shutdown();
  }
  for (auto& worker : workers_) {
    worker->join();
  }
  for (const auto& state : listeners_) {
    if (state->config.protocol == Protocol::Udp) {
      udp::logTotals(*state);
    }
  }

  closeHandles();
}

void Server::closeHandles() {
  handles_open_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sighup_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_tick_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_deadline_), nullptr);
  if (checker_) {
    checker_->close();
  }
}

uint32_t Server::activeSessions() const {
  uint32_t total = 0;
  for (const auto& worker : workers_) {
    total += worker->activeSessions();
  }
  return total;
}

}  // namespace fulcrum::runtime
