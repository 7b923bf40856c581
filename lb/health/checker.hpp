#pragma once

// The health checker: runs on the control plane's loop, probes every backend under an active
// check, takes passive-detection reports from the data plane, and turns both into backend
// states that it publishes as rebuilt pool snapshots. Every transition is logged once with
// its reason and counted in the backend's stats.
//
// Scheduling: one timer per backend. After each result the next probe waits interval, or
// fast_interval while a change is in progress (results disagree with the current state),
// plus a random 0..jitter. The first probe of every backend runs at start().

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fulcrum/log.hpp"
#include "health/failover.hpp"
#include "health/probe.hpp"
#include "health/tracker.hpp"
#include "pool/pool.hpp"

namespace fulcrum::health {

// One probe result kept for the status API.
struct ProbeRecord {
  int64_t unix_ms = 0;
  bool ok = false;
  uint32_t latency_ms = 0;
  std::string detail;
};

struct BackendStatus {
  std::string key;  // ip:port, as in logs.
  bool backup = false;
  pool::BackendState state = pool::BackendState::Up;
  AdminState admin = AdminState::Enabled;
  bool health_up = true;
  bool checked = false;  // Has a probe result (always false without an active check).
  uint32_t weight = 1;
  uint32_t effective_weight = 1;  // What pickers use now, in the weight's own units.
  bool slow_starting = false;
  std::vector<ProbeRecord> recent;  // Oldest first, at most kRecentProbes.
  std::vector<FailoverRecord> failovers;  // Oldest first, at most kFailoverRecords.
  std::shared_ptr<pool::BackendStats> stats;
};

struct PoolStatus {
  std::string name;
  Algorithm algorithm = Algorithm::RoundRobin;
  HealthCheckType check = HealthCheckType::None;
  uint32_t up = 0;
  bool fallback = false;  // all_down = "all" is in effect.
  std::vector<BackendStatus> backends;
  FailoverHistograms failover;
};

inline constexpr size_t kRecentProbes = 10;
// Failover records kept per backend; older ones are dropped.
inline constexpr size_t kFailoverRecords = 8;

class Checker {
 public:
  // close_sessions runs on the loop thread after a backend went down in a pool with
  // on_down = "close" and its close generation was bumped; it asks the workers to close
  // the affected sessions.
  Checker(uv_loop_t* loop, std::vector<pool::Pool*> pools, std::function<void()> close_sessions);
  ~Checker();

  Checker(const Checker&) = delete;
  Checker& operator=(const Checker&) = delete;

  // Installs passive detection on every pool and starts the first probe of each backend.
  // first_round runs once every actively checked backend has its first result (at once when
  // there are none), so the caller can hold back accepting until health is known.
  void start(std::function<void()> first_round);

  // Stops every timer and probe and closes their handles; the loop must turn afterwards.
  void close();

  // Operator actions (admin API), on the loop thread. Idempotent. Each returns an empty
  // string on success, or a message for the operator naming what was not found or not
  // allowed. A disabled backend is not probed; enabling it probes it at once.
  std::string setAdminState(std::string_view pool, std::string_view backend, AdminState state);
  std::string setWeight(std::string_view pool, std::string_view backend, uint32_t weight);

  // A copy of every pool's and backend's state, for status pages and metrics. Settles the
  // failover records first (see settleFailover), which is why their storage is mutable.
  std::vector<PoolStatus> status() const;

  // After a config reload updated the pools in place (Pool::update): matches backends by
  // pool name and address, so a backend that stays keeps its health state, probe history,
  // operator state and slow-start ramp; its probe is replaced only if its check changed.
  // New backends are probed at once; removed ones stop being probed.
  void reload(std::vector<pool::Pool*> pools);

 private:
  struct Entry {
    Checker* owner = nullptr;
    pool::Pool* pool = nullptr;
    uint32_t index = 0;  // In pool->backends().
    BackendConfig config_copy;  // Owned: a reload replaces the pool's config.
    const BackendConfig* config = &config_copy;
    Tracker tracker{1, 1};
    AdminState admin = AdminState::Enabled;
    std::vector<ProbeRecord> recent;  // Ring of the last kRecentProbes results.
    size_t recent_next = 0;
    std::unique_ptr<Probe> probe;
    uv_timer_t timer;
    bool timer_open = false;
    bool health_up = false;
    bool cooling_down = false;  // Passively downed without an active check.
    uint64_t up_since_ms = 0;   // Start of the slow-start ramp; 0 = no ramp.
    uint64_t probe_started_ms = 0;
    ProbeResult last;
    // When the first failed probe of the current run arrived while up (monotonicNs(); 0 =
    // the last probe passed): the probe side of a failover's first signal.
    uint64_t probe_fail_ns = 0;
    mutable std::vector<FailoverRecord> failovers;  // Oldest first.
  };

  static void onTimer_cb(uv_timer_t* handle);
  static void onAsync_cb(uv_async_t* handle);
  static void onRamp_cb(uv_timer_t* handle);

  void runProbe(Entry& entry);
  void onResult(Entry& entry, const ProbeResult& result);
  void scheduleNext(Entry& entry);
  void onPassiveReports();
  void onCooldownOver(Entry& entry);
  // Applies a health change to the pool's backend list, logs the pool-level transitions and
  // publishes the rebuilt snapshot; went_down triggers on_down = "close", ramp starts slow
  // start for a backend coming back.
  void applyHealth(Entry& entry, bool up, bool went_down, bool ramp);
  // Failover records: opened right after a down (health, or an operator's drain or disable of
  // a serving backend) was published, closed just before the up is; at most one is open.
  void openFailover(Entry& entry, const char* reason, uint64_t first_signal_ns,
                    const char* signal, std::string detail, uint32_t sessions);
  void closeFailover(Entry& entry, const char* reason);
  void settleFailovers(const Entry& entry) const;
  FailoverHistograms& histogramsFor(const std::string& pool) const;
  void publish(pool::Pool& pool);
  bool updateRamps();
  void firstResultSeen(Entry& entry);
  std::unique_ptr<Entry> makeEntry(pool::Pool* pool, uint32_t index);
  void retire(std::unique_ptr<Entry> entry);
  void installPassive();
  void flushLogs();
  Entry* find(std::string_view pool, std::string_view backend, std::string& error);
  uint32_t fullWeight(const Entry& entry) const;

  uv_loop_t* loop_;
  std::vector<pool::Pool*> pools_;
  std::function<void()> close_sessions_;
  std::function<void()> first_round_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<std::unique_ptr<Entry>> retired_;  // Closing; freed with the checker.
  std::vector<std::unique_ptr<Probe>> retired_probes_;
  std::vector<uint32_t> pool_up_;  // Up count per pool at the last publish, for logging.
  // Pool-level lines waiting for the backend line that caused them; see flushLogs().
  std::vector<std::pair<spdlog::level::level_enum, std::string>> pending_logs_;
  uv_async_t async_;
  uv_timer_t ramp_timer_;
  bool started_ = false;
  bool closed_ = false;
  size_t first_pending_ = 0;
  std::minstd_rand rng_;
  uint64_t next_failover_id_ = 1;
  // Per pool name, kept across reloads; mutable for the same reason as Entry::failovers.
  mutable std::vector<std::pair<std::string, FailoverHistograms>> failover_histograms_;
};

}  // namespace fulcrum::health
