#pragma once

// Failover records: for every time a backend goes down, when the first sign of trouble came,
// when the checker marked it down, the last new flow sent to it, the sessions it had then,
// the first flow that went elsewhere, and when it came back. Kept by the health checker on
// the control plane's loop; the worker-side stamps it reads are relaxed atomics in
// BackendStats and PoolSnapshot. Every time is monotonicNs() (CLOCK_MONOTONIC), so a client
// on the same host can compare it with its own clock directly.

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "pool/pool.hpp"

namespace fulcrum::health {

// Upper bounds of the failover histogram buckets, in microseconds: 1 ms to 60 s, which
// covers a passive detection (one refused connect) up to a slow probe schedule.
inline constexpr std::array<uint64_t, 15> kFailoverBucketsUs = {
    1000,    2500,    5000,    10000,   25000,    50000,    100000,  250000,
    500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000};

// Control-plane-only histogram (no atomics): counts[i] holds samples <= bound i and above
// the previous one; the last entry holds samples above every bound.
struct FailoverHistogram {
  std::array<uint64_t, kFailoverBucketsUs.size() + 1> counts{};
  uint64_t sum_us = 0;

  void record(uint64_t us);
};

// Detection (first failed signal to marked down) and reroute (marked down to the first new
// flow picked without the backend), one pair per pool.
struct FailoverHistograms {
  FailoverHistogram detection;
  FailoverHistogram reroute;
};

struct FailoverRecord {
  uint64_t id = 0;          // Increases across all backends of the process.
  std::string pool;
  std::string backend;      // ip:port, as in logs.
  std::string reason;       // What took it out: "probe", "passive" or "admin".
  std::string signal;       // Where the first signal came from: "probe", "passive", "admin".
  std::string detail;       // The failing probe's detail, the failure count, or the state.
  uint64_t first_signal_ns = 0;  // monotonicNs(); never 0 once recorded.
  uint64_t down_ns = 0;
  uint64_t last_flow_ns = 0;     // Last new flow picked for the backend; 0 = none ever.
  uint64_t first_moved_ns = 0;   // 0 = no new flow in the pool since the down.
  uint64_t up_ns = 0;            // 0 = still down.
  std::string up_reason;         // "probe", "passive_cooldown", "admin"; empty while down.
  uint32_t sessions_at_down = 0;
  std::string sessions_action;   // "closed" (on_down = "close") or "left".
  // While first_moved_ns is unknown: the snapshot published at the down, whose first pick
  // is the first flow moved. Dropped once settled so no old snapshot stays alive.
  std::shared_ptr<const pool::PoolSnapshot> down_snapshot;
};

// Fills first_moved_ns from down_snapshot and, while the backend is still down, last_flow_ns
// from the live stats. Returns the reroute time in microseconds the first time it becomes
// known, else -1. Control plane only.
int64_t settleFailover(FailoverRecord& record, const pool::BackendStats& stats);

// The offset to add to a monotonicNs() value to get Unix time in milliseconds, now.
int64_t monotonicToUnixMsOffset();

}  // namespace fulcrum::health
