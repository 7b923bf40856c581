#pragma once

// A latency histogram with log-linear buckets: exact below 64 ns, then 32 buckets per power
// of two, so every recorded value lands in a bucket no wider than 1/32 (about 3 %) of it.
// Recording is one count increment, so the hot loops of the load generator can afford it
// for every operation; percentiles are read after the run. One histogram per thread, merged
// at the end; not thread-safe.

#include <array>
#include <bit>
#include <cstdint>

namespace fulcrum::bench {

class Histogram {
 public:
  // Values above about 18 minutes (2^40 ns) are counted in the last bucket.
  static constexpr int kSubBits = 5;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = 2 * kSub + 35 * kSub;

  void record(uint64_t ns) {
    ++counts_[indexOf(ns)];
    ++total_;
  }

  void merge(const Histogram& other) {
    for (int i = 0; i < kBuckets; ++i) {
      counts_[i] += other.counts_[i];
    }
    total_ += other.total_;
  }

  uint64_t total() const { return total_; }

  // The value (ns) at quantile q in [0, 1]: the middle of the bucket holding the
  // ceil(q * total)-th smallest sample; 0 when empty.
  uint64_t quantile(double q) const {
    if (total_ == 0) {
      return 0;
    }
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total_) + 0.999999);
    if (rank == 0) {
      rank = 1;
    }
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        return middleOf(i);
      }
    }
    return middleOf(kBuckets - 1);
  }

 private:
  // Worked example: 1000 ns has its top bit at 9, so shift = 9 - 5 = 4 and the top six bits
  // are 1000 >> 4 = 62; the bucket is 2 * 32 + (4 - 1) * 32 + (62 - 32) = 190 and spans
  // [992, 1008).
  static int indexOf(uint64_t ns) {
    if (ns < 2 * kSub) {
      return static_cast<int>(ns);
    }
    const int msb = 63 - std::countl_zero(ns);
    const int shift = msb - kSubBits;
    const int index = 2 * kSub + (shift - 1) * kSub + static_cast<int>((ns >> shift) - kSub);
    return index < kBuckets ? index : kBuckets - 1;
  }

  static uint64_t middleOf(int index) {
    if (index < 2 * kSub) {
      return static_cast<uint64_t>(index);
    }
    const int shift = (index - 2 * kSub) / kSub + 1;
    const uint64_t top = static_cast<uint64_t>((index - 2 * kSub) % kSub + kSub);
    return (top << shift) + (uint64_t{1} << shift) / 2;
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
};

}  // namespace fulcrum::bench
