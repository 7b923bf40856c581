#pragma once

// Backend pools as the data plane sees them. The control plane builds an immutable
// PoolSnapshot (backends, weights, prebuilt pickers) and publishes it through Pool; workers
// load the current snapshot once per new flow and never lock. Per-backend counters live in
// BackendStats objects that outlive snapshots, so a rebuilt snapshot keeps its counters.

#include <time.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fulcrum/balance.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/endpoint.hpp"
#include "pool/latency_histogram.hpp"

namespace fulcrum::pool {

// CLOCK_MONOTONIC in nanoseconds: the clock of every failover timestamp, chosen because it is
// what clients on the same host read too (Python's time.monotonic_ns(), clock_gettime), so a
// bench can lay Fulcrum's record over its own timeline without converting. Served from the
// vDSO, so cheap enough to read once per new flow.
inline uint64_t monotonicNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// Counters one backend accumulates across all workers; relaxed atomics, read by the control
// plane for logs and (later) metrics.
struct BackendStats {
  std::atomic<uint32_t> active{0};                  // Sessions open now.
  std::atomic<uint64_t> sessions_total{0};          // Sessions that reached the backend.
  std::atomic<uint64_t> connect_fail_total{0};      // Refused, timed out or failed connects.
  // connect_fail_total split by reason (ConnectFail), and the time successful connects took.
  std::atomic<uint64_t> connect_fail_by_reason_total[kConnectFailReasons] = {};
  LatencyHistogram connect_latency;
  std::atomic<uint64_t> bytes_to_backend_total{0};
  std::atomic<uint64_t> bytes_from_backend_total{0};
  // Set by the first failed connect after a success, cleared by the next success, so
  // connect failures are logged once per transition rather than per connection.
  std::atomic<bool> failing{false};

  // Passive detection: failures in a row seen by the data plane (connect refused or timed
  // out, ICMP unreachable on UDP); reset by any success. See Pool::reportFailure.
  std::atomic<uint32_t> consecutive_failures{0};
  // Set by the data plane when consecutive_failures reaches the pool's threshold; taken by
  // the control plane, which marks the backend down.
  std::atomic<bool> passive_down_pending{false};
  // Failover record stamps (monotonicNs(), 0 = never), written by workers with relaxed
  // stores: when a flow was last picked for this backend, and when the current run of
  // consecutive_failures began (cleared with it on success).
  std::atomic<uint64_t> last_pick_ns{0};
  std::atomic<uint64_t> first_failure_ns{0};
  // Bumped by the control plane when the backend goes down under on_down = "close". A session
  // remembers the value at its pick; a worker told to close sessions of downed backends closes
  // each session whose backend's generation moved past the remembered one.
  std::atomic<uint32_t> close_generation{0};

  // Health, written by the control plane only.
  std::atomic<uint64_t> probes_total{0};
  std::atomic<uint64_t> probe_failures_total{0};
  std::atomic<uint64_t> went_down_total{0};
  std::atomic<uint64_t> went_up_total{0};
  std::atomic<uint64_t> passive_downs_total{0};
};

// Where a backend stands for new flows, as the control plane decided it: health (up or
// down) combined with the operator's state (draining or disabled win over health).
enum class BackendState : uint8_t { Up, Down, Draining, Disabled };
const char* toString(BackendState state);

struct Backend {
  Endpoint address;
  std::string key;  // address.toString(): identity for hashing and for logs.
  uint32_t weight = 1;            // Configured.
  uint32_t effective_weight = 1;  // What pickers use: weight, lowered during slow start.
  bool backup = false;
  BackendState state = BackendState::Up;
  std::shared_ptr<BackendStats> stats;
};

// What a pick returns: an index into PoolSnapshot::backends(), or none.
inline constexpr uint32_t kNoBackend = UINT32_MAX;

class PoolSnapshot {
 public:
  PoolSnapshot(const PoolConfig& config, std::vector<Backend> backends);

  // Builds pickers over the backends whose state is Up, primaries and backups apart. With
  // no backend Up and all_down = "all", every Up or Down backend (operator-enabled) is used
  // instead, and fallback() says so.
  //
  // Chooses a backend for a flow. tried has one entry per backend (or is empty); nonzero
  // entries are skipped. Primaries are preferred; backups are used only when no primary
  // can take the flow. Thread-safe, no allocation. Stamps the chosen backend's last_pick_ns
  // and this snapshot's first pick (one clock read and relaxed stores).
  uint32_t pick(uint64_t flow_hash, std::span<const uint8_t> tried) const;

  const std::vector<Backend>& backends() const { return backends_; }
  const std::string& name() const { return name_; }
  HashKey hashKey() const { return hash_key_; }
  Algorithm algorithm() const { return algorithm_; }
  uint32_t retries() const { return retries_; }
  ProxyProtocol proxyProtocol() const { return proxy_protocol_; }
  uint32_t upCount() const { return up_count_; }

  // The Maglev table of the tier new flows use (primaries, else backups) with entries as
  // indices into backends(), kNoBackend where the tier has no candidate; empty when the
  // pool's algorithm is not Maglev or no backend is eligible. The XDP control plane programs
  // the kernel with exactly this table, so the kernel and pick() agree on every flow.
  std::vector<uint32_t> maglevTable() const;
  bool fallback() const { return fallback_; }
  // When the first flow was picked from this snapshot (monotonicNs(), 0 = none yet). For
  // the snapshot published when a backend went down, that is the first flow that went
  // elsewhere instead: the failover record's "first flow moved".
  uint64_t firstPickNs() const { return first_pick_ns_.load(std::memory_order_relaxed); }

 private:
  // One picker over a subset (primaries or backups); indices_ maps its candidate index to
  // the backend index.
  struct Tier {
    std::unique_ptr<balance::Picker> picker;
    std::vector<uint32_t> indices;
  };

  uint32_t pickFromTier(const Tier& tier, uint64_t flow_hash,
                        std::span<const uint8_t> tried) const;

  std::string name_;
  HashKey hash_key_;
  Algorithm algorithm_;
  uint32_t retries_;
  ProxyProtocol proxy_protocol_;
  std::vector<Backend> backends_;
  Tier primary_;
  Tier backup_;
  uint32_t up_count_ = 0;
  bool fallback_ = false;
  // Written once by whichever worker picks first; see firstPickNs().
  mutable std::atomic<uint64_t> first_pick_ns_{0};
};

// A named pool: the currently published snapshot plus the once-per-transition state used to
// log "no backend available" once rather than per connection.
class Pool {
 public:
  explicit Pool(const PoolConfig& config);

  const PoolConfig& config() const { return config_; }

  // Control plane only (one thread): the backend list snapshots are built from. Change
  // states and effective weights here, then rebuild() to publish them.
  std::vector<Backend>& backends() { return backends_; }
  void rebuild();

  std::shared_ptr<const PoolSnapshot> snapshot() const {
    return snapshot_.load(std::memory_order_acquire);
  }
  const std::string& name() const { return name_; }

  // Called by workers after a flow failed to reach a backend (connect refused or timed out,
  // ICMP unreachable) or reached it. When passive detection is on and the failures in a row
  // reach the threshold, the control plane is woken through the notifier to mark the backend
  // down. Thread-safe, lock-free, no allocation.
  void reportFailure(BackendStats& stats) const;
  void reportSuccess(BackendStats& stats) const {
    if (stats.consecutive_failures.load(std::memory_order_relaxed) != 0) {
      stats.consecutive_failures.store(0, std::memory_order_relaxed);
      stats.first_failure_ns.store(0, std::memory_order_relaxed);
    }
  }

  // Control plane, before workers start: the wake-up for passive detection (must be
  // thread-safe, such as uv_async_send) and the threshold (0 = passive detection off).
  // The notifier is installed once (workers may be calling it); later calls, after a
  // reload, change only the threshold.
  void setPassiveDetection(uint32_t threshold, std::function<void()> notify) {
    passive_threshold_.store(threshold, std::memory_order_relaxed);
    if (!notify_) {
      notify_ = std::move(notify);
    }
  }

  // Control plane, on reload: takes next as the pool's config. Backends are matched by
  // address: one that stays keeps its counters, state and slow-start weight, and an
  // operator's runtime weight unless the file changed that backend's weight. Call
  // rebuild() (the health checker does) to publish.
  void update(const PoolConfig& next);

  // Control plane: publishes a rebuilt snapshot; flows picked from here on see it. Then runs
  // the publish hook, so state kept outside the workers (the XDP tables) follows at once.
  void publish(std::shared_ptr<const PoolSnapshot> snapshot) {
    snapshot_.store(std::move(snapshot), std::memory_order_release);
    if (on_publish_) {
      on_publish_();
    }
  }

  // Control plane: the hook publish() runs after each new snapshot; replaces any earlier one.
  void setOnPublish(std::function<void()> hook) { on_publish_ = std::move(hook); }

  // Called by workers: a flow found no backend / a flow reached one. Each returns true only
  // for the call that flips the state, so exactly one line is logged per transition.
  bool markUnavailable() { return !unavailable_.exchange(true, std::memory_order_acq_rel); }
  bool markAvailable() {
    if (!unavailable_.load(std::memory_order_relaxed)) {
      return false;
    }
    return unavailable_.exchange(false, std::memory_order_acq_rel);
  }

 private:
  std::string name_;
  PoolConfig config_;
  std::vector<Backend> backends_;
  std::atomic<std::shared_ptr<const PoolSnapshot>> snapshot_;
  std::atomic<bool> unavailable_{false};
  std::atomic<uint32_t> passive_threshold_{0};
  std::function<void()> notify_;
  std::function<void()> on_publish_;
};

}  // namespace fulcrum::pool
