#pragma once

// Power of two choices: draw two distinct candidates at random in proportion to their
// weights and keep the one with the lower active/weight ratio.
//
// Contract: built once on the control thread; pick() runs concurrently on every worker with
// no lock and no allocation, O(log candidates) when nothing is excluded. Picks are not
// reproducible: each thread draws from its own generator seeded at first use.

#include <cstdint>
#include <span>
#include <vector>

#include "fulcrum/balance.hpp"

namespace fulcrum::balance {

class RandomTwoPicker final : public Picker {
 public:
  explicit RandomTwoPicker(std::vector<Candidate> candidates);

  // Picker.
  uint32_t pick(uint64_t flow_hash, std::span<const uint8_t> excluded) const override;

 private:
  // A weighted draw among candidates that are not excluded and not skip (kNone skips none);
  // kNone when nothing is left.
  uint32_t draw(std::span<const uint8_t> excluded, uint32_t skip) const;
  // The same draw by one linear pass, for when rejection sampling keeps hitting excluded
  // candidates.
  uint32_t drawByScan(std::span<const uint8_t> excluded, uint32_t skip) const;
  // Index of the candidate owning point r of the cumulative weight line.
  uint32_t owner(uint64_t r) const;

  std::vector<Candidate> candidates_;
  std::vector<uint64_t> cumulative_;  // cumulative_[i] = weight[0] + ... + weight[i].
  uint64_t total_weight_ = 0;
};

}  // namespace fulcrum::balance
