#pragma once

// Consistent hashing on a ring (ketama style): each candidate owns weight * vnodes points on
// a 64-bit circle; a flow goes to the owner of the first point at or after its hash.
//
// Contract: built once on the control thread; pick() runs concurrently on every worker, a
// binary search with no lock and no allocation. Point positions depend only on candidate
// keys, so nodes with the same backend set (in any order) send every flow to the same
// backend. When the owner is excluded the flow walks clockwise to the next point whose owner
// is not; flows whose owner is not excluded never move.

#include <cstdint>
#include <span>
#include <vector>

#include "fulcrum/balance.hpp"

namespace fulcrum::balance {

class RingHashPicker final : public Picker {
 public:
  // Most points on one ring (12 bytes each, 12 MiB). Above it every candidate's share of
  // points is scaled down proportionally, keeping at least one point per weighted candidate.
  static constexpr uint64_t kMaxPoints = 1 << 20;

  // Throws std::invalid_argument when vnodes is 0.
  RingHashPicker(std::vector<Candidate> candidates, uint32_t vnodes);

  // Picker.
  uint32_t pick(uint64_t flow_hash, std::span<const uint8_t> excluded) const override;

  // Points owned by each candidate, for tests and status pages.
  std::vector<uint64_t> pointsPerCandidate() const;
  size_t pointCount() const { return positions_.size(); }

 private:
  std::vector<Candidate> candidates_;
  // The ring, sorted by position; owners_[i] owns positions_[i]. Kept as two arrays so the
  // binary search touches only positions.
  std::vector<uint64_t> positions_;
  std::vector<uint32_t> owners_;
};

}  // namespace fulcrum::balance
