#include "health/failover.hpp"

#include <chrono>

namespace fulcrum::health {

void FailoverHistogram::record(uint64_t us) {
  size_t i = 0;
  while (i < kFailoverBucketsUs.size() && us > kFailoverBucketsUs[i]) {
    ++i;
  }
  ++counts[i];
  sum_us += us;
}

int64_t settleFailover(FailoverRecord& record, const pool::BackendStats& stats) {
  if (record.up_ns == 0) {
    // Picks after the down come only from an all-down fallback or a flow that had picked
    // before the publish; either way they are flows the backend was still sent.
    record.last_flow_ns = stats.last_pick_ns.load(std::memory_order_relaxed);
  }
  if (!record.down_snapshot) {
    return -1;
  }
  const uint64_t moved = record.down_snapshot->firstPickNs();
  if (moved == 0) {
    return -1;
  }
  record.first_moved_ns = moved;
  record.down_snapshot.reset();
  return moved > record.down_ns ? static_cast<int64_t>((moved - record.down_ns) / 1000) : 0;
}

int64_t monotonicToUnixMsOffset() {
  const auto unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  return unix_ms - static_cast<int64_t>(pool::monotonicNs() / 1'000'000);
}

}  // namespace fulcrum::health
