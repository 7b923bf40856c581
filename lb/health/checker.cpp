#include "health/checker.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "fulcrum/log.hpp"

namespace fulcrum::health {

namespace {

// Pools with slow start run their pickers on weights scaled by this, so a ramp that starts
// at a tenth is meaningful even for the common weight of 1.
constexpr uint32_t kSlowStartScale = 10;
// How often effective weights are recomputed while any backend ramps.
constexpr uint64_t kRampTickMs = 100;

uint64_t ms(Millis d) {
  return static_cast<uint64_t>(std::max<int64_t>(0, d.count()));
}

pool::BackendState combine(AdminState admin, bool health_up) {
  switch (admin) {
    case AdminState::Draining:
      return pool::BackendState::Draining;
    case AdminState::Disabled:
      return pool::BackendState::Disabled;
    case AdminState::Enabled:
      break;
  }
  return health_up ? pool::BackendState::Up : pool::BackendState::Down;
}

}  // namespace

Checker::Checker(uv_loop_t* loop, std::vector<pool::Pool*> pools,
                 std::function<void()> close_sessions)
    : loop_(loop),
      pools_(std::move(pools)),
      close_sessions_(std::move(close_sessions)),
      rng_(static_cast<uint32_t>(uv_hrtime())) {
  uv_async_init(loop_, &async_, onAsync_cb);
  async_.data = this;
  uv_timer_init(loop_, &ramp_timer_);
  ramp_timer_.data = this;

  for (pool::Pool* pool : pools_) {
    for (uint32_t i = 0; i < pool->backends().size(); ++i) {
      entries_.push_back(makeEntry(pool, i));
    }
    pool->rebuild();
    pool_up_.push_back(pool->snapshot()->upCount());
  }
}

std::unique_ptr<Checker::Entry> Checker::makeEntry(pool::Pool* pool, uint32_t index) {
  const PoolConfig& config = pool->config();
  pool::Backend& backend = pool->backends()[index];
  auto entry = std::make_unique<Entry>();
  entry->owner = this;
  entry->pool = pool;
  entry->index = index;
  entry->config_copy = config.backends[index];
  entry->admin = entry->config->state;
  const HealthCheckConfig& health = entry->config->health;
  entry->tracker = Tracker(health.rise, health.fall);
  if (health.type == HealthCheckType::None) {
    entry->tracker.forceUp();
    entry->health_up = true;
  } else {
    entry->probe = std::make_unique<Probe>(loop_, health);
  }
  uv_timer_init(loop_, &entry->timer);
  entry->timer.data = entry.get();
  entry->timer_open = true;
  backend.state = combine(entry->admin, entry->health_up);
  if (config.slow_start.count() > 0) {
    backend.effective_weight = backend.weight * kSlowStartScale;
  }
  return entry;
}

void Checker::installPassive() {
  for (pool::Pool* pool : pools_) {
    const uint32_t threshold = pool->config().health.passive_failures;
    pool->setPassiveDetection(threshold, [this] { uv_async_send(&async_); });
  }
}

void Checker::retire(std::unique_ptr<Entry> entry) {
  if (entry->timer_open) {
    entry->timer_open = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&entry->timer), nullptr);
  }
  if (entry->probe) {
    entry->probe->close([] {});
  }
  retired_.push_back(std::move(entry));
}

Checker::~Checker() = default;

void Checker::start(std::function<void()> first_round) {
  started_ = true;
  first_round_ = std::move(first_round);

  installPassive();

  for (auto& entry : entries_) {
    if (entry->probe && entry->admin != AdminState::Disabled) {
      ++first_pending_;
      uv_timer_start(&entry->timer, onTimer_cb, 0, 0);
    }
  }
  if (first_pending_ == 0 && first_round_) {
    auto done = std::move(first_round_);
    first_round_ = nullptr;
    done();
  }
}

void Checker::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  for (auto& entry : entries_) {
    if (entry->timer_open) {
      entry->timer_open = false;
      uv_close(reinterpret_cast<uv_handle_t*>(&entry->timer), nullptr);
    }
    if (entry->probe) {
      entry->probe->close([] {});
    }
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ramp_timer_), nullptr);
}

void Checker::onTimer_cb(uv_timer_t* handle) {
  auto* entry = static_cast<Entry*>(handle->data);
  if (entry->cooling_down) {
    entry->owner->onCooldownOver(*entry);
    return;
  }
  entry->owner->runProbe(*entry);
}

void Checker::runProbe(Entry& entry) {
  if (closed_ || !entry.probe || entry.probe->running()) {
    return;
  }
  entry.probe_started_ms = uv_now(loop_);
  entry.probe->start([this, e = &entry](const ProbeResult& result) { onResult(*e, result); });
}

void Checker::onResult(Entry& entry, const ProbeResult& result) {
  if (closed_) {
    return;
  }
  pool::Backend& backend = entry.pool->backends()[entry.index];
  backend.stats->probes_total.fetch_add(1, std::memory_order_relaxed);
  if (!result.ok) {
    backend.stats->probe_failures_total.fetch_add(1, std::memory_order_relaxed);
  }
  const bool first = !entry.tracker.checked();
  entry.last = result;
  ProbeRecord record{std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count(),
                     result.ok, static_cast<uint32_t>(result.latency.count()), result.detail};
  if (entry.recent.size() < kRecentProbes) {
    entry.recent.push_back(std::move(record));
  } else {
    entry.recent[entry.recent_next] = std::move(record);
  }
  entry.recent_next = (entry.recent_next + 1) % kRecentProbes;

  if (result.ok) {
    entry.probe_fail_ns = 0;
  } else if (entry.health_up && entry.probe_fail_ns == 0) {
    entry.probe_fail_ns = pool::monotonicNs();
  }
  const uint32_t sessions = backend.stats->active.load(std::memory_order_relaxed);

  const Tracker::Verdict verdict = entry.tracker.record(result.ok);
  const char* check = toString(entry.config->health.type);
  spdlog::debug("health probe pool={} backend={} check={} ok={} detail={} latency_ms={}",
                entry.pool->name(), backend.key, check, result.ok, result.detail,
                result.latency.count());

  // Each transition is published before it is logged: once the line is out, no new flow
  // picks the backend (flows picked just before may still be connecting).
  if (verdict == Tracker::Verdict::WentUp) {
    closeFailover(entry, "probe");
    applyHealth(entry, true, false, /*ramp=*/!first);
    spdlog::info("backend up pool={} backend={} reason={} check={} detail={} latency_ms={} "
                 "passes={}",
                 entry.pool->name(), backend.key, first ? "first_probe" : "probe", check,
                 result.detail, result.latency.count(), entry.tracker.passes());
  } else if (verdict == Tracker::Verdict::WentDown) {
    applyHealth(entry, false, true, false);
    openFailover(entry, "probe", entry.probe_fail_ns, "probe", result.detail, sessions);
    spdlog::warn("backend down pool={} backend={} reason=probe check={} detail={} latency_ms={} "
                 "failures={}",
                 entry.pool->name(), backend.key, check, result.detail, result.latency.count(),
                 entry.tracker.fails());
  } else if (first) {
    // Started down and the first probe agreed: say so once, so an operator starting
    // Fulcrum sees why a backend takes no traffic.
    spdlog::warn("backend down pool={} backend={} reason=first_probe check={} detail={} "
                 "latency_ms={} failures=1",
                 entry.pool->name(), backend.key, check, result.detail, result.latency.count());
    applyHealth(entry, false, false, false);
  }

  flushLogs();
  if (first) {
    firstResultSeen(entry);
  }
  scheduleNext(entry);
}

void Checker::firstResultSeen(Entry& /*entry*/) {
  if (first_pending_ == 0) {
    return;
  }
  --first_pending_;
  if (first_pending_ == 0 && first_round_) {
    auto done = std::move(first_round_);
    first_round_ = nullptr;
    done();
  }
}

void Checker::scheduleNext(Entry& entry) {
  if (closed_ || !entry.timer_open || entry.admin == AdminState::Disabled) {
    return;
  }
  // Probes keep a fixed cadence from start to start, so a slow or timed-out probe does not
  // stretch the period, except that a probe never starts before the previous one ended:
  // detection takes at most interval + (fall - 1) x max(fast_interval, timeout) + timeout
  // (+ jitter per wait).
  const HealthCheckConfig& health = entry.config->health;
  const uint64_t period = ms(entry.tracker.changing() ? health.fast_interval : health.interval);
  const uint64_t spent = uv_now(loop_) - entry.probe_started_ms;
  uint64_t delay = period > spent ? period - spent : 0;
  const uint64_t jitter = ms(health.jitter);
  if (jitter > 0) {
    delay += std::uniform_int_distribution<uint64_t>(0, jitter)(rng_);
  }
  uv_timer_start(&entry.timer, onTimer_cb, delay, 0);
}

void Checker::onAsync_cb(uv_async_t* handle) {
  auto* checker = static_cast<Checker*>(handle->data);
  checker->onPassiveReports();
  checker->flushLogs();
}

void Checker::onPassiveReports() {
  if (closed_) {
    return;
  }
  for (auto& entry_ptr : entries_) {
    Entry& entry = *entry_ptr;
    pool::Backend& backend = entry.pool->backends()[entry.index];
    pool::BackendStats& stats = *backend.stats;
    if (!stats.passive_down_pending.exchange(false, std::memory_order_acq_rel)) {
      continue;
    }
    const uint32_t failures = stats.consecutive_failures.exchange(0, std::memory_order_relaxed);
    if (!entry.health_up) {
      continue;  // Already down; probes (or the cooldown) decide when it returns.
    }

    entry.tracker.forceDown();
    stats.passive_downs_total.fetch_add(1, std::memory_order_relaxed);
    const HealthCheckConfig& health = entry.config->health;
    // The earlier of the two signals: a probe may have failed before connects started to.
    uint64_t signal_ns = stats.first_failure_ns.load(std::memory_order_relaxed);
    const char* signal = "passive";
    if (signal_ns == 0 || (entry.probe_fail_ns != 0 && entry.probe_fail_ns < signal_ns)) {
      signal_ns = entry.probe_fail_ns;
      signal = "probe";
    }
    const uint32_t sessions = stats.active.load(std::memory_order_relaxed);
    applyHealth(entry, false, true, false);
    openFailover(entry, "passive", signal_ns, signal, fmt::format("failures={}", failures),
                 sessions);
    if (entry.probe) {
      spdlog::warn("backend down pool={} backend={} reason=passive failures={} "
                   "recovery=probe rise={}",
                   entry.pool->name(), backend.key, failures, health.rise);
    } else {
      spdlog::warn("backend down pool={} backend={} reason=passive failures={} "
                   "recovery=cooldown cooldown_ms={}",
                   entry.pool->name(), backend.key, failures, health.passive_cooldown.count());
    }

    if (entry.probe) {
      // Probe again soon: recovery needs rise passes in a row from here.
      if (!entry.probe->running()) {
        uv_timer_start(&entry.timer, onTimer_cb, ms(health.fast_interval), 0);
      }
    } else {
      entry.cooling_down = true;
      uv_timer_start(&entry.timer, onTimer_cb, ms(health.passive_cooldown), 0);
    }
  }
}

void Checker::onCooldownOver(Entry& entry) {
  entry.cooling_down = false;
  entry.tracker.forceUp();
  pool::Backend& backend = entry.pool->backends()[entry.index];
  closeFailover(entry, "passive_cooldown");
  applyHealth(entry, true, false, true);
  spdlog::info("backend up pool={} backend={} reason=passive_cooldown cooldown_ms={}",
               entry.pool->name(), backend.key, entry.config->health.passive_cooldown.count());
  flushLogs();
}

void Checker::applyHealth(Entry& entry, bool up, bool went_down, bool ramp) {
  pool::Backend& backend = entry.pool->backends()[entry.index];
  const bool was_up = entry.health_up;
  entry.health_up = up;
  if (up && !was_up) {
    backend.stats->went_up_total.fetch_add(1, std::memory_order_relaxed);
  } else if (!up && was_up) {
    backend.stats->went_down_total.fetch_add(1, std::memory_order_relaxed);
  }
  backend.state = combine(entry.admin, up);

  const PoolConfig& config = entry.pool->config();
  if (config.slow_start.count() > 0) {
    // A backend coming back (not one found up by its first probe) ramps from a tenth.
    entry.up_since_ms = ramp && up && !was_up ? uv_now(loop_) : 0;
    updateRamps();
  }

  if (went_down && config.on_down == OnDown::Close) {
    backend.stats->close_generation.fetch_add(1, std::memory_order_acq_rel);
  }
  publish(*entry.pool);
  if (went_down && config.on_down == OnDown::Close && close_sessions_) {
    // After the publish, so no new flow picks the backend once its sessions are being cut.
    close_sessions_();
  }
}

void Checker::publish(pool::Pool& pool) {
  pool.rebuild();
  const auto snapshot = pool.snapshot();
  // A failover whose down snapshot served no flow before being replaced would never learn
  // its first moved flow; the replacement takes over while the backend stays out of it.
  for (const auto& entry : entries_) {
    if (entry->pool != &pool) {
      continue;
    }
    for (FailoverRecord& record : entry->failovers) {
      if (record.down_snapshot && record.down_snapshot->firstPickNs() == 0 &&
          snapshot->backends()[entry->index].state != pool::BackendState::Up) {
        record.down_snapshot = snapshot;
      }
    }
  }
  for (size_t p = 0; p < pools_.size(); ++p) {
    if (pools_[p] != &pool) {
      continue;
    }
    const uint32_t up = snapshot->upCount();
    if (first_pending_ != 0) {
      // The first round is still running: "health checks started" reports the outcome.
    } else if (up == 0 && pool_up_[p] != 0) {
      pending_logs_.emplace_back(
          spdlog::level::warn,
          fmt::format("pool has no backend up pool={} policy={} action={}", pool.name(),
                      toString(pool.config().all_down),
                      snapshot->fallback() ? "use_every_enabled_backend" : "refuse_new_flows"));
    } else if (up != 0 && pool_up_[p] == 0) {
      pending_logs_.emplace_back(
          spdlog::level::info,
          fmt::format("pool has backends up again pool={} up={}", pool.name(), up));
    }
    pool_up_[p] = up;
  }
}

void Checker::openFailover(Entry& entry, const char* reason, uint64_t first_signal_ns,
                           const char* signal, std::string detail, uint32_t sessions) {
  if (!entry.failovers.empty() && entry.failovers.back().up_ns == 0) {
    // Already out (an operator drained it, then its checks failed too): one record covers
    // the whole absence.
    return;
  }
  const uint64_t now = pool::monotonicNs();
  const pool::Backend& backend = entry.pool->backends()[entry.index];
  FailoverRecord record;
  record.id = next_failover_id_++;
  record.pool = entry.pool->name();
  record.backend = backend.key;
  record.reason = reason;
  // No stamp means the down came without an earlier failure we saw (fall = 1 and the
  // failing probe is the down itself): the signal and the down are one moment.
  record.first_signal_ns = first_signal_ns != 0 && first_signal_ns <= now ? first_signal_ns : now;
  record.signal = signal;
  record.detail = std::move(detail);
  record.down_ns = now;
  record.last_flow_ns = backend.stats->last_pick_ns.load(std::memory_order_relaxed);
  record.sessions_at_down = sessions;
  record.sessions_action = entry.pool->config().on_down == OnDown::Close ? "closed" : "left";
  record.down_snapshot = entry.pool->snapshot();

  if (record.reason != "admin") {
    histogramsFor(record.pool).detection.record((record.down_ns - record.first_signal_ns) / 1000);
  }
  if (entry.failovers.size() >= kFailoverRecords) {
    entry.failovers.erase(entry.failovers.begin());
  }
  entry.failovers.push_back(std::move(record));
  entry.probe_fail_ns = 0;
}

void Checker::closeFailover(Entry& entry, const char* reason) {
  settleFailovers(entry);
  if (entry.failovers.empty() || entry.failovers.back().up_ns != 0) {
    return;
  }
  FailoverRecord& record = entry.failovers.back();
  record.up_ns = pool::monotonicNs();
  record.up_reason = reason;
  // Never moved (no new flow while it was down): nothing to wait for any more.
  record.down_snapshot.reset();
}

void Checker::settleFailovers(const Entry& entry) const {
  const pool::BackendStats& stats = *entry.pool->backends()[entry.index].stats;
  for (FailoverRecord& record : entry.failovers) {
    const int64_t reroute_us = settleFailover(record, stats);
    if (reroute_us >= 0) {
      histogramsFor(record.pool).reroute.record(static_cast<uint64_t>(reroute_us));
    }
  }
}

FailoverHistograms& Checker::histogramsFor(const std::string& pool) const {
  for (auto& [name, histograms] : failover_histograms_) {
    if (name == pool) {
      return histograms;
    }
  }
  return failover_histograms_.emplace_back(pool, FailoverHistograms{}).second;
}

// Pool-level lines follow the backend line that caused them.
void Checker::flushLogs() {
  for (const auto& [level, line] : pending_logs_) {
    spdlog::log(level, "{}", line);
  }
  pending_logs_.clear();
}

void Checker::onRamp_cb(uv_timer_t* handle) {
  auto* checker = static_cast<Checker*>(handle->data);
  if (!checker->updateRamps()) {
    uv_timer_stop(handle);
  }
  checker->flushLogs();
}

// Recomputes slow-start weights. Returns true while any backend is still ramping; publishes
// each pool whose weights changed.
bool Checker::updateRamps() {
  if (closed_) {
    return false;
  }
  const uint64_t now = uv_now(loop_);
  bool ramping = false;
  std::vector<pool::Pool*> changed;
  for (auto& entry_ptr : entries_) {
    Entry& entry = *entry_ptr;
    const Millis ramp = entry.pool->config().slow_start;
    if (ramp.count() <= 0) {
      continue;
    }
    pool::Backend& backend = entry.pool->backends()[entry.index];
    const uint32_t full = fullWeight(entry);
    uint32_t weight = full;
    if (entry.up_since_ms != 0) {
      const Millis elapsed{static_cast<int64_t>(now - entry.up_since_ms)};
      weight = slowStartWeight(full, elapsed, ramp);
      if (elapsed >= ramp) {
        entry.up_since_ms = 0;
        spdlog::info("slow start done pool={} backend={} weight={}", entry.pool->name(),
                     backend.key, backend.weight);
      } else {
        ramping = true;
      }
    }
    if (weight != backend.effective_weight) {
      backend.effective_weight = weight;
      if (std::find(changed.begin(), changed.end(), entry.pool) == changed.end()) {
        changed.push_back(entry.pool);
      }
    }
  }
  for (pool::Pool* pool : changed) {
    publish(*pool);
  }
  if (ramping && !uv_is_active(reinterpret_cast<uv_handle_t*>(&ramp_timer_))) {
    uv_timer_start(&ramp_timer_, onRamp_cb, kRampTickMs, kRampTickMs);
  }
  return ramping;
}

uint32_t Checker::fullWeight(const Entry& entry) const {
  const uint32_t weight = entry.pool->backends()[entry.index].weight;
  return entry.pool->config().slow_start.count() > 0 ? weight * kSlowStartScale : weight;
}

Checker::Entry* Checker::find(std::string_view pool, std::string_view backend,
                              std::string& error) {
  bool pool_found = false;
  for (auto& entry : entries_) {
    if (entry->pool->name() != pool) {
      continue;
    }
    pool_found = true;
    if (entry->pool->backends()[entry->index].key == backend) {
      return entry.get();
    }
  }
  error = pool_found ? fmt::format("pool {} has no backend {}", pool, backend)
                     : fmt::format("no pool named {}", pool);
  return nullptr;
}

std::string Checker::setAdminState(std::string_view pool, std::string_view backend,
                                   AdminState state) {
  std::string error;
  Entry* entry = find(pool, backend, error);
  if (entry == nullptr) {
    return error;
  }
  if (entry->admin == state) {
    return {};
  }
  const AdminState before = entry->admin;
  entry->admin = state;
  pool::Backend& b = entry->pool->backends()[entry->index];
  spdlog::info("backend state set pool={} backend={} from={} to={} by=admin", pool, backend,
               toString(before), toString(state));

  if (entry->probe) {
    if (state == AdminState::Disabled) {
      uv_timer_stop(&entry->timer);
    } else if (before == AdminState::Disabled && !entry->probe->running()) {
      uv_timer_start(&entry->timer, onTimer_cb, 0, 0);
    }
  }
  const bool was_serving = b.state == pool::BackendState::Up;
  const uint32_t sessions = b.stats->active.load(std::memory_order_relaxed);
  b.state = combine(entry->admin, entry->health_up);
  // An operator taking a serving backend out is a failover too (planned, so it counts in
  // no detection histogram); putting it back closes the record.
  if (state == AdminState::Enabled && entry->health_up) {
    closeFailover(*entry, "admin");
  }
  publish(*entry->pool);
  if (was_serving && state != AdminState::Enabled) {
    openFailover(*entry, "admin", 0, "admin", toString(state), sessions);
  }
  flushLogs();
  return {};
}

std::string Checker::setWeight(std::string_view pool, std::string_view backend,
                               uint32_t weight) {
  if (weight > kMaxWeight) {
    return fmt::format("weight {} is out of range; use 0..{}", weight, kMaxWeight);
  }
  std::string error;
  Entry* entry = find(pool, backend, error);
  if (entry == nullptr) {
    return error;
  }
  pool::Backend& b = entry->pool->backends()[entry->index];
  if (b.weight == weight) {
    return {};
  }
  spdlog::info("backend weight set pool={} backend={} from={} to={} by=admin", pool, backend,
               b.weight, weight);
  b.weight = weight;
  if (entry->up_since_ms == 0) {
    b.effective_weight = fullWeight(*entry);
  }
  updateRamps();
  publish(*entry->pool);
  flushLogs();
  return {};
}

std::vector<PoolStatus> Checker::status() const {
  std::vector<PoolStatus> out;
  for (pool::Pool* pool : pools_) {
    PoolStatus ps;
    ps.name = pool->name();
    ps.algorithm = pool->config().algorithm;
    ps.check = pool->config().health.type;
    const auto snapshot = pool->snapshot();
    ps.up = snapshot->upCount();
    ps.fallback = snapshot->fallback();
    const bool scaled = pool->config().slow_start.count() > 0;
    for (const auto& entry : entries_) {
      if (entry->pool != pool) {
        continue;
      }
      const pool::Backend& b = pool->backends()[entry->index];
      BackendStatus bs;
      bs.key = b.key;
      bs.backup = b.backup;
      bs.state = b.state;
      bs.admin = entry->admin;
      bs.health_up = entry->health_up;
      bs.checked = entry->probe != nullptr && entry->tracker.checked();
      bs.weight = b.weight;
      bs.effective_weight = scaled ? (b.effective_weight + kSlowStartScale - 1) / kSlowStartScale
                                   : b.effective_weight;
      bs.slow_starting = entry->up_since_ms != 0;
      // Oldest first: the ring's next slot is its oldest once full.
      for (size_t i = 0; i < entry->recent.size(); ++i) {
        const size_t at = entry->recent.size() < kRecentProbes
                              ? i
                              : (entry->recent_next + i) % kRecentProbes;
        bs.recent.push_back(entry->recent[at]);
      }
      settleFailovers(*entry);
      for (const FailoverRecord& record : entry->failovers) {
        bs.failovers.push_back(record);
        bs.failovers.back().down_snapshot.reset();
      }
      bs.stats = b.stats;
      ps.backends.push_back(std::move(bs));
    }
    ps.failover = histogramsFor(ps.name);
    out.push_back(std::move(ps));
  }
  return out;
}

void Checker::reload(std::vector<pool::Pool*> pools) {
  std::vector<std::unique_ptr<Entry>> old = std::move(entries_);
  entries_.clear();
  pools_ = std::move(pools);
  pool_up_.clear();

  for (pool::Pool* pool : pools_) {
    const PoolConfig& config = pool->config();
    for (uint32_t i = 0; i < pool->backends().size(); ++i) {
      pool::Backend& backend = pool->backends()[i];
      auto match = std::find_if(old.begin(), old.end(), [&](const auto& e) {
        return e && e->pool->name() == pool->name() &&
               e->config_copy.address == config.backends[i].address;
      });
      if (match == old.end()) {
        auto entry = makeEntry(pool, i);
        if (entry->probe && entry->admin != AdminState::Disabled && !closed_) {
          uv_timer_start(&entry->timer, onTimer_cb, 0, 0);
        }
        spdlog::info("backend added pool={} backend={} state={}", pool->name(), backend.key,
                     pool::toString(backend.state));
        entries_.push_back(std::move(entry));
        continue;
      }

      std::unique_ptr<Entry> entry = std::move(*match);
      const BackendConfig& next = config.backends[i];
      const BackendConfig before = entry->config_copy;
      entry->pool = pool;
      entry->index = i;
      entry->config_copy = next;
      // The file wins only where it changed; otherwise an operator's runtime change stays.
      if (next.state != before.state) {
        entry->admin = next.state;
      }

      if (!(next.health == before.health)) {
        // A different check: keep the verdict so far, start probing the new way at once.
        const bool was_up = entry->health_up;
        const bool checked = entry->tracker.checked();
        if (entry->probe) {
          retired_probes_.push_back(std::move(entry->probe));
          retired_probes_.back()->close([] {});
        }
        entry->tracker = Tracker(next.health.rise, next.health.fall);
        if (next.health.type == HealthCheckType::None) {
          entry->tracker.forceUp();
          entry->health_up = true;
        } else {
          entry->probe = std::make_unique<Probe>(loop_, entry->config->health);
          if (checked) {
            was_up ? entry->tracker.forceUp() : entry->tracker.forceDown();
          }
          if (entry->timer_open && !closed_ && entry->admin != AdminState::Disabled) {
            uv_timer_start(&entry->timer, onTimer_cb, 0, 0);
          }
        }
        spdlog::info("backend check changed pool={} backend={} check={}", pool->name(),
                     backend.key, toString(next.health.type));
      }
      backend.state = combine(entry->admin, entry->health_up);
      entries_.push_back(std::move(entry));
    }
  }

  for (auto& entry : old) {
    if (entry) {
      spdlog::info("backend removed pool={} backend={}", entry->pool->name(),
                   entry->config_copy.address.toString());
      retire(std::move(entry));
    }
  }

  installPassive();
  for (pool::Pool* pool : pools_) {
    for (auto& entry : entries_) {
      if (entry->pool != pool) {
        continue;
      }
      pool::Backend& backend = pool->backends()[entry->index];
      const uint32_t full = fullWeight(*entry);
      backend.effective_weight =
          entry->up_since_ms != 0 ? std::min(backend.effective_weight, full) : full;
    }
    pool->rebuild();
    pool_up_.push_back(pool->snapshot()->upCount());
  }
  updateRamps();
  flushLogs();
}

}  // namespace fulcrum::health
