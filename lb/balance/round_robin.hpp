#pragma once

// Smooth weighted round-robin.
//
// Contract: built once on the control thread from an immutable candidate list; pick() is
// then called concurrently by every worker without locks or allocation. The order of picks
// is a fixed cycle, so two fresh pickers over the same list give the same sequence.

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "fulcrum/balance.hpp"

namespace fulcrum::balance {

class RoundRobinPicker final : public Picker {
 public:
  // Longest precomputed cycle. Lists whose gcd-reduced weights sum to more are scaled down
  // to about this total first (every weighted backend keeps at least one turn), so shares
  // then match the configured weights to within about one part in 65536 per backend.
  static constexpr uint64_t kMaxCycle = 1 << 16;

  explicit RoundRobinPicker(std::vector<Candidate> candidates);

  // Picker.
  uint32_t pick(uint64_t flow_hash, std::span<const uint8_t> excluded) const override;

  // One full cycle of candidate indices; empty when every weight is 0. Exposed for tests.
  const std::vector<uint32_t>& cycle() const { return cycle_; }

 private:
  std::vector<Candidate> candidates_;
  std::vector<uint32_t> cycle_;
  // Shared by all workers; relaxed because only the spread of values matters, not their
  // order relative to other memory. On its own cache line so picks do not false-share with
  // the read-only fields above.
  alignas(64) mutable std::atomic<uint64_t> next_{0};
};

}  // namespace fulcrum::balance
