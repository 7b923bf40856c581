#pragma once

// Least connections: the backend with the lowest active/weight ratio.
//
// Contract: built once on the control thread; pick() runs concurrently on every worker, reads
// each candidate's active counter with a relaxed load and costs O(candidates) (a second pass
// when several candidates tie), with no lock and no allocation. A candidate without an
// active counter counts as idle.

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "fulcrum/balance.hpp"

namespace fulcrum::balance {

class LeastConnPicker final : public Picker {
 public:
  explicit LeastConnPicker(std::vector<Candidate> candidates);

  // Picker.
  uint32_t pick(uint64_t flow_hash, std::span<const uint8_t> excluded) const override;

 private:
  std::vector<Candidate> candidates_;
  // Which of several equally loaded candidates takes the next flow; advances by one per
  // tied pick so ties rotate instead of piling onto the lowest index.
  alignas(64) mutable std::atomic<uint64_t> next_{0};
};

}  // namespace fulcrum::balance
