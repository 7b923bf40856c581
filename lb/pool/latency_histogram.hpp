#pragma once

// A fixed-bucket latency histogram that data-plane threads record into with relaxed atomics
// and the control plane reads for metrics. Including this header pulls in nothing but
// <array>, <atomic> and <cstdint>.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace fulcrum::pool {

// Upper bounds of the buckets, microseconds: 0.5 ms to 2.5 s, roughly 1-2-5 steps, which
// covers a loopback connect (tens of microseconds, all in the first bucket) up to a connect
// that only completes after SYN retransmits. Slower connects land in the overflow bucket.
inline constexpr std::array<uint64_t, 12> kConnectBucketsUs = {
    500, 1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

struct LatencyHistogram {
  // buckets[i] counts samples <= kConnectBucketsUs[i] and above the previous bound (not
  // cumulative); the last entry counts samples above every bound.
  std::array<std::atomic<uint64_t>, kConnectBucketsUs.size() + 1> buckets{};
  std::atomic<uint64_t> sum_us{0};

  // Any thread; lock-free, no allocation.
  void record(uint64_t us) {
    size_t i = 0;
    while (i < kConnectBucketsUs.size() && us > kConnectBucketsUs[i]) {
      ++i;
    }
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    sum_us.fetch_add(us, std::memory_order_relaxed);
  }
};

// Why a backend connect failed, for per-reason counters.
enum class ConnectFail : uint8_t {
  Refused,      // ECONNREFUSED: nothing listens.
  Timeout,      // No answer within the listener's connect_timeout.
  Unreachable,  // ENETUNREACH / EHOSTUNREACH.
  Other,        // Any other error.
};

inline constexpr size_t kConnectFailReasons = 4;

inline const char* toString(ConnectFail reason) {
  switch (reason) {
    case ConnectFail::Refused:
      return "refused";
    case ConnectFail::Timeout:
      return "timeout";
    case ConnectFail::Unreachable:
      return "unreachable";
    case ConnectFail::Other:
      return "other";
  }
  return "other";
}

}  // namespace fulcrum::pool
