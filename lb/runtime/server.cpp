#include "runtime/server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>

#include "admin/admin_server.hpp"
#include "fulcrum/log.hpp"
#include "health/checker.hpp"
#include "runtime/access_log.hpp"
#include "runtime/listen_socket.hpp"
#include "runtime/systemd.hpp"
#include "udp/udp_socket.hpp"

namespace fulcrum::runtime {

namespace {

// Interval at which a drain checks whether every session has finished.
constexpr uint64_t kDrainTickMs = 50;

// A health change reaches the XDP maps at once through the pools' publish hook; this timer
// only retries a map update that failed then.
constexpr uint64_t kXdpSyncMs = 1000;

// " mode=xdp attach=native interface=eth0" for log lines about a listener, or "".
std::string modeFields(const ListenerState& state) {
  if (state.config.mode != ListenerMode::Xdp) {
    return {};
  }
  if (state.xdp_attach.empty()) {
    return " mode=splicer_fallback";
  }
  return fmt::format(" mode=xdp attach={} interface={}", state.xdp_attach,
                     state.config.interface);
}

// Text for a "..." log field: quotes and backslashes escaped, so the line stays key=value.
std::string quoteEscaped(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

}  // namespace

Server::Server(Config config)
    : config_(std::move(config)), worker_count_(effectiveWorkers(config_.global)) {
  uv_loop_init(&loop_);
}

Server::~Server() {
  if (xdp_) {
    // The links close with the manager: the kernel stops steering the VIPs.
    for (const auto& state : listeners_) {
      if (!state->xdp_attach.empty()) {
        spdlog::info("xdp detached listener={} interface={}", state->config.name,
                     state->config.interface);
      }
    }
  }
  if (!stopped_) {
    for (auto& worker : workers_) {
      worker->shutdown();
    }
    if (handles_open_) {
      closeHandles();
    }
  }
  workers_.clear();
  AccessLog::setCurrent(nullptr);
  // Closing handles may close others in their callbacks (health probes do); a few turns
  // settle them without waiting on anything still active.
  for (int turn = 0; turn < 8 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++turn) {
  }
  uv_loop_close(&loop_);
  checker_.reset();
}

// Binds one listener on every worker (worker 0 first: a configured port 0 becomes the
// kernel's choice, which the others then share through SO_REUSEPORT) and appends the fds to
// per_worker. On failure closes the fds it opened and throws StartupError.
std::unique_ptr<ListenerState> Server::bindListener(
    const ListenerConfig& config, pool::Pool* pool,
    std::vector<std::vector<ListenSocket>>& per_worker) {
  auto state = std::make_unique<ListenerState>();
  state->config = config;
  state->address = config.bind;
  state->pool = pool;
  if (config.mode == ListenerMode::Xdp && attachXdp(*state)) {
    return state;  // Served in the kernel: no socket.
  }

  std::vector<int> opened;
  try {
    for (unsigned w = 0; w < worker_count_; ++w) {
      int fd;
      fd = config.protocol == Protocol::Udp
               ? udp::openListenSocket(config, state->address, w == 0)
               : openTcpListenSocket(config, state->address, w == 0);
      opened.push_back(fd);
      if (w == 0 && state->address.port() == 0) {
        sockaddr_storage bound{};
        socklen_t len = sizeof(bound);
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
        state->address = Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&bound));
      }
    }
  } catch (...) {
    for (int fd : opened) {
      ::close(fd);
    }
    throw;
  }
  for (unsigned w = 0; w < worker_count_; ++w) {
    per_worker[w].push_back(ListenSocket{state.get(), opened[w]});
  }
  return state;
}

bool Server::attachXdp(ListenerState& state) {
  const ListenerConfig& config = state.config;
  try {
    if (!xdp_) {
      xdp_ = std::make_unique<xdp::XdpManager>();
    }
    const int family = config.bind.family();
    state.xdp_interface = xdp::resolveInterface(config.interface, family);
    xdp::checkForwarding(config.interface, family);
    state.xdp_attach = xdp_->attach(state.xdp_interface, config);
    state.xdp = xdp_.get();
    return true;
  } catch (const xdp::XdpError& e) {
    if (config.xdp_fallback == XdpFallback::None) {
      throw StartupError(fmt::format("listener {}: XDP is unavailable: {}; or set xdp_fallback "
                                     "= \"splicer\" to serve the VIP without XDP",
                                     config.name, e.what()));
    }
    state.xdp_fallback_reason = e.what();
    spdlog::warn("xdp unavailable listener={} interface={} action=splicer_fallback "
                 "reason=\"{}\"",
                 config.name, config.interface, quoteEscaped(e.what()));
    return false;
  }
}

void Server::addXdpVips() {
  for (auto& state : listeners_) {
    if (state->xdp_attach.empty() || state->xdp_vip_added) {
      continue;
    }
    try {
      state->xdp_vip_id = xdp_->addVip(state->config, state->pool, state->xdp_interface);
    } catch (const xdp::XdpError& e) {
      throw StartupError(fmt::format("listener {}: {}", state->config.name, e.what()));
    }
    state->xdp_vip_added = true;
  }
}

void Server::detachUnusedXdp() {
  if (!xdp_) {
    return;
  }
  std::vector<int> used;
  for (const auto& state : listeners_) {
    if (!state->xdp_attach.empty()) {
      used.push_back(state->xdp_interface.ifindex);
    }
  }
  xdp_->program().detachExcept(used);
}

pool::Pool* Server::findPool(std::string_view name) const {
  for (const auto& pool : pools_) {
    if (pool->name() == name) {
      return pool.get();
    }
  }
  return nullptr;
}

void Server::bindListeners(std::vector<std::vector<ListenSocket>>& per_worker) {
  for (const PoolConfig& pool_config : config_.pools) {
    pools_.push_back(std::make_unique<pool::Pool>(pool_config));
  }
  try {
    for (const ListenerConfig& listener_config : config_.listeners) {
      listeners_.push_back(
          bindListener(listener_config, findPool(listener_config.pool), per_worker));
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
  // SIGUSR1 reopens the access log after logrotate moved it.
  uv_signal_init(&loop_, &sigusr1_);
  sigusr1_.data = this;
  uv_signal_start(&sigusr1_, onSigusr1_cb, SIGUSR1);


  uv_timer_init(&loop_, &drain_tick_);
  uv_timer_init(&loop_, &drain_deadline_);
  drain_tick_.data = this;
  drain_deadline_.data = this;
  handles_open_ = true;

  // After handles_open_: a failure here must still close the handles above.
  if (config_.access_log.enabled) {
    try {
      access_log_ = std::make_unique<AccessLog>(config_.access_log);
    } catch (const std::runtime_error& e) {
      throw StartupError(e.what());
    }
    AccessLog::setCurrent(access_log_.get());
  }

  std::vector<std::vector<ListenSocket>> per_worker(worker_count_);
  bindListeners(per_worker);
  startHealth();
  if (xdp_) {
    // After the first probes: the kernel's first table already reflects real health.
    addXdpVips();
    xdp_->startSync(&loop_, kXdpSyncMs);
  }

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
                 "backends={}{}",
                 state->config.name, state->address.toString(), worker_count_, pool.name(),
                 toString(pool.algorithm()), pool.backends().size(), modeFields(*state));
  }
  systemd::ready(fmt::format("serving {} listener(s) with {} worker(s)", listeners_.size(),
                              worker_count_));
  startWatchdog();
  startAdmin();
}

// Last in start(): the admin endpoint reports on listeners and pools, so it opens once they
// exist. Its handles close in closeHandles() with the others.
void Server::startAdmin() {
  if (!config_.admin.enabled()) {
    return;
  }
  admin::AdminSources sources;
  sources.listeners = [this] {
    std::vector<const ListenerState*> out;
    for (const auto& state : listeners_) {
      out.push_back(state.get());
    }
    return out;
  };
  sources.checker = [this] { return checker_.get(); };
  sources.draining = [this] { return draining_; };
  sources.reload = [this] { return reload("admin"); };
  admin_ = std::make_unique<admin::AdminServer>(&loop_, config_.admin, std::move(sources));
  try {
    admin_->start();
  } catch (const admin::HttpListenError& e) {
    throw StartupError(e.what());
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

void Server::onSighup_cb(uv_signal_t* handle, int /*signum*/) {
  static_cast<Server*>(handle->data)->reload("SIGHUP");
}

std::string Server::reload(std::string_view trigger) {
  if (draining_ || stopped_) {
    spdlog::warn("reload refused trigger={} reason=draining", trigger);
    return "Fulcrum is draining; a reload would not take effect";
  }

  Config next;
  try {
    next = loadConfigFile(config_.source);
  } catch (const ConfigError& e) {
    spdlog::error("reload failed trigger={} reason=invalid_config action=keep_running_config "
                  "error=\"{}\"",
                  trigger, quoteEscaped(e.what()));
    return e.what();
  }
  systemd::reloading(fmt::format("reloading {}", config_.source));

  // What happens to each listener, decided by name. Sockets for new addresses are bound
  // before anything changes, so a bind failure leaves the running config untouched.
  enum class Fate { Keep, Change, Replace, Add };
  std::vector<Fate> fates;
  std::vector<ListenerState*> olds;
  std::vector<std::vector<ListenSocket>> per_worker(worker_count_);
  std::vector<std::unique_ptr<ListenerState>> bound;  // Parallel to next.listeners; may be null.
  try {
    for (const ListenerConfig& lc : next.listeners) {
      auto old = std::find_if(listeners_.begin(), listeners_.end(),
                              [&](const auto& s) { return s->config.name == lc.name; });
      ListenerState* old_state = old == listeners_.end() ? nullptr : old->get();
      Fate fate = Fate::Add;
      if (old_state != nullptr) {
        const bool same_socket = old_state->config.bind == lc.bind &&
                                 old_state->config.protocol == lc.protocol &&
                                 old_state->config.backlog == lc.backlog &&
                                 old_state->config.mode == lc.mode &&
                                 old_state->config.interface == lc.interface &&
                                 old_state->config.xdp_attach == lc.xdp_attach &&
                                 old_state->config.xdp_fallback == lc.xdp_fallback;
        fate = !same_socket ? Fate::Replace
               : old_state->config == lc ? Fate::Keep
                                         : Fate::Change;
      }
      fates.push_back(fate);
      olds.push_back(old_state);
      bound.push_back(fate == Fate::Add || fate == Fate::Replace
                          ? bindListener(lc, nullptr, per_worker)
                          : nullptr);
    }
  } catch (const StartupError& e) {
    for (auto& sockets : per_worker) {
      for (ListenSocket& s : sockets) {
        ::close(s.fd);
      }
    }
    spdlog::error("reload failed trigger={} reason=bind action=keep_running_config error=\"{}\"",
                  trigger, quoteEscaped(e.what()));
    systemd::ready("reload failed; running the previous config");
    return e.what();
  }

  // Pools: updated in place by name, so listeners' pointers and backends' counters stay.
  std::vector<std::unique_ptr<pool::Pool>> pools;
  for (const PoolConfig& pc : next.pools) {
    auto old = std::find_if(pools_.begin(), pools_.end(),
                            [&](const auto& p) { return p && p->name() == pc.name; });
    if (old != pools_.end()) {
      (*old)->update(pc);
      pools.push_back(std::move(*old));
    } else {
      pools.push_back(std::make_unique<pool::Pool>(pc));
    }
  }
  for (auto& pool : pools_) {
    if (pool) {
      retired_pools_.push_back(std::move(pool));  // Open sessions may still use it.
    }
  }
  pools_ = std::move(pools);
  std::vector<pool::Pool*> pool_ptrs;
  for (auto& pool : pools_) {
    pool_ptrs.push_back(pool.get());
  }
  checker_->reload(std::move(pool_ptrs));

  // Listeners.
  size_t kept = 0, changed = 0, added = 0, removed = 0;
  std::vector<std::unique_ptr<ListenerState>> listeners;
  for (size_t i = 0; i < next.listeners.size(); ++i) {
    const ListenerConfig& lc = next.listeners[i];
    ListenerState* old = olds[i];
    auto take_old = [&] {
      auto it = std::find_if(listeners_.begin(), listeners_.end(),
                             [&](const auto& s) { return s.get() == old; });
      std::unique_ptr<ListenerState> owned = std::move(*it);
      listeners_.erase(it);
      return owned;
    };
    switch (fates[i]) {
      case Fate::Keep: {
        // Same config, so the same pool object (pools are updated in place by name).
        listeners.push_back(take_old());
        ++kept;
        break;
      }
      case Fate::Change: {
        // Same socket, new settings: new sessions take the new state.
        auto state = std::make_unique<ListenerState>();
        state->config = lc;
        state->address = old->address;
        state->pool = findPool(lc.pool);
        state->xdp_attach = old->xdp_attach;
        state->xdp_fallback_reason = old->xdp_fallback_reason;
        state->xdp = old->xdp;
        state->xdp_interface = old->xdp_interface;
        state->xdp_vip_id = old->xdp_vip_id;
        state->xdp_vip_added = old->xdp_vip_added;
        if (state->xdp_vip_added) {
          // Same VIP entry, reprogrammed with a flip: no window without a table.
          xdp_->updateVip(state->xdp_vip_id, lc, state->pool);
        }
        for (auto& worker : workers_) {
          worker->replaceState(old, state.get());
        }
        retired_listeners_.push_back(take_old());
        listeners.push_back(std::move(state));
        ++changed;
        break;
      }
      case Fate::Replace:
        for (auto& worker : workers_) {
          worker->retireListener(old);
        }
        if (old->xdp_vip_added) {
          xdp_->removeVip(old->xdp_vip_id);
        }
        retired_listeners_.push_back(take_old());
        ++removed;
        [[fallthrough]];
      case Fate::Add:
        bound[i]->pool = findPool(lc.pool);
        listeners.push_back(std::move(bound[i]));
        ++added;
        break;
    }
  }
  for (auto& old : listeners_) {
    for (auto& worker : workers_) {
      worker->retireListener(old.get());
    }
    if (old->xdp_vip_added) {
      xdp_->removeVip(old->xdp_vip_id);
    }
    spdlog::info("listener stopped listener={} address={} reason=removed_by_reload "
                 "sessions_left={}",
                 old->config.name, old->address.toString(),
                 old->active.load(std::memory_order_relaxed));
    retired_listeners_.push_back(std::move(old));
    ++removed;
  }
  listeners_ = std::move(listeners);
  if (xdp_) {
    try {
      addXdpVips();
    } catch (const StartupError& e) {
      spdlog::error("reload could not program an XDP VIP trigger={} error=\"{}\"", trigger,
                    quoteEscaped(e.what()));
    }
    detachUnusedXdp();
    xdp_->sync();
    if (!xdp_->syncing()) {
      xdp_->startSync(&loop_, kXdpSyncMs);
    }
  }
  for (unsigned w = 0; w < worker_count_; ++w) {
    if (!per_worker[w].empty()) {
      workers_[w]->addSockets(std::move(per_worker[w]));
    }
  }
  for (size_t i = 0; i < next.listeners.size(); ++i) {
    if (fates[i] == Fate::Add || fates[i] == Fate::Replace) {
      const ListenerState& state = *listeners_[i];
      spdlog::info("listener started listener={} address={} workers={} pool={} algorithm={} "
                   "backends={}{}",
                   state.config.name, state.address.toString(), worker_count_,
                   state.pool->name(), toString(state.pool->config().algorithm),
                   state.pool->config().backends.size(), modeFields(state));
    }
  }

  // Global settings; the worker count is fixed for the life of the process.
  if (next.global.workers != config_.global.workers) {
    spdlog::warn("reload kept workers={} reason=needs_restart configured={}",
                 config_.global.workers, next.global.workers);
    next.global.workers = config_.global.workers;
  }
  if (next.global.log_level != config_.global.log_level) {
    setLogLevel(next.global.log_level);
  }
  if (next.access_log.enabled != config_.access_log.enabled ||
      next.access_log.path != config_.access_log.path ||
      next.access_log.format != config_.access_log.format) {
    spdlog::warn("reload kept the access log as it was reason=needs_restart");
    next.access_log = config_.access_log;
  }
  const AdminConfig& admin = next.admin;
  const AdminConfig& running = config_.admin;
  if (admin.listen != running.listen || admin.socket != running.socket ||
      admin.token != running.token || admin.max_body != running.max_body ||
      admin.max_connections != running.max_connections ||
      admin.request_timeout != running.request_timeout) {
    spdlog::warn("reload kept [admin] as it was reason=needs_restart");
  }
  next.admin = config_.admin;
  config_ = std::move(next);

  size_t backends = 0;
  for (const auto& pool : pools_) {
    backends += pool->backends().size();
  }
  spdlog::info("config reloaded trigger={} listeners={} kept={} changed={} added={} removed={} "
               "pools={} backends={}",
               trigger, listeners_.size(), kept, changed, added, removed, pools_.size(),
               backends);
  systemd::ready(fmt::format("serving {} listener(s) with {} worker(s)", listeners_.size(),
                             worker_count_));
  return {};
}

// With WatchdogSec= in the unit, the control loop pings at half the period: a stuck control
// plane gets the service restarted.
void Server::startWatchdog() {
  const uint64_t interval = systemd::watchdogIntervalMs();
  if (interval == 0) {
    return;
  }
  uv_timer_init(&loop_, &watchdog_);
  watchdog_.data = this;
  watchdog_open_ = true;
  const uint64_t period = std::max<uint64_t>(1, interval / 2);
  uv_timer_start(&watchdog_, [](uv_timer_t*) { systemd::watchdogPing(); }, 0, period);
  spdlog::info("systemd watchdog enabled interval_ms={}", interval);
}

void Server::onSigusr1_cb(uv_signal_t* handle, int /*signum*/) {
  auto* server = static_cast<Server*>(handle->data);
  if (!server->access_log_) {
    spdlog::info("signal ignored signal=SIGUSR1 reason=no_access_log");
    return;
  }
  const std::string error = server->access_log_->reopen();
  if (error.empty()) {
    spdlog::info("access log reopened path={}", server->access_log_->config().path);
  } else {
    spdlog::error("access log reopen failed path={} reason=\"{}\" action=keep_old_file",
                  server->access_log_->config().path, error);
  }
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
  systemd::stopping(fmt::format("draining {} session(s), {} ms at most", activeSessions(),
                                config_.global.drain_timeout.count()));
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
  uv_close(reinterpret_cast<uv_handle_t*>(&sigusr1_), nullptr);
  if (watchdog_open_) {
    watchdog_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_tick_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_deadline_), nullptr);
  if (checker_) {
    checker_->close();
  }
  if (admin_) {
    admin_->close();
  }
  if (xdp_) {
    xdp_->close();
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
