#pragma once

// Backend pools as the data plane sees them. The control plane builds an immutable
// PoolSnapshot (backends, weights, prebuilt pickers) and publishes it through Pool; workers
// load the current snapshot once per new flow and never lock. Per-backend counters live in
// BackendStats objects that outlive snapshots, so a rebuilt snapshot keeps its counters.

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fulcrum/balance.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/endpoint.hpp"

namespace fulcrum::pool {

// Counters one backend accumulates across all workers; relaxed atomics, read by the control
// plane for logs and (later) metrics.
struct BackendStats {
  std::atomic<uint32_t> active{0};                  // Sessions open now.
  std::atomic<uint64_t> sessions_total{0};          // Sessions that reached the backend.
  std::atomic<uint64_t> connect_fail_total{0};      // Refused, timed out or failed connects.
  std::atomic<uint64_t> bytes_to_backend_total{0};
  std::atomic<uint64_t> bytes_from_backend_total{0};
  // Set by the first failed connect after a success, cleared by the next success, so
  // connect failures are logged once per transition rather than per connection.
  std::atomic<bool> failing{false};
};

struct Backend {
  Endpoint address;
  std::string key;  // address.toString(): identity for hashing and for logs.
  uint32_t weight = 1;
  bool backup = false;
  std::shared_ptr<BackendStats> stats;
};

// What a pick returns: an index into PoolSnapshot::backends(), or none.
inline constexpr uint32_t kNoBackend = UINT32_MAX;

class PoolSnapshot {
 public:
  PoolSnapshot(const PoolConfig& config, std::vector<Backend> backends);

  // Chooses a backend for a flow. tried has one entry per backend (or is empty); nonzero
  // entries are skipped. Primaries are preferred; backups are used only when no primary
  // can take the flow. Thread-safe, no allocation.
  uint32_t pick(uint64_t flow_hash, std::span<const uint8_t> tried) const;

  const std::vector<Backend>& backends() const { return backends_; }
  const std::string& name() const { return name_; }
  HashKey hashKey() const { return hash_key_; }
  Algorithm algorithm() const { return algorithm_; }
  uint32_t retries() const { return retries_; }
  ProxyProtocol proxyProtocol() const { return proxy_protocol_; }

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
};

// A named pool: the currently published snapshot plus the once-per-transition state used to
// log "no backend available" once rather than per connection.
class Pool {
 public:
  explicit Pool(const PoolConfig& config);

  std::shared_ptr<const PoolSnapshot> snapshot() const {
    return snapshot_.load(std::memory_order_acquire);
  }
  const std::string& name() const { return name_; }

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
  std::atomic<std::shared_ptr<const PoolSnapshot>> snapshot_;
  std::atomic<bool> unavailable_{false};
};

}  // namespace fulcrum::pool
