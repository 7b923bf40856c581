#pragma once

// Maglev consistent hashing: a prime-sized lookup table filled from per-candidate
// permutations; a flow goes to table[hash % size].
//
// Contract: built once on the control thread (buildMaglevTable, O(size x candidates) worst
// case); pick() runs concurrently on every worker with no lock and no allocation. When a
// flow's entry is excluded it falls back deterministically (see maglev.cpp), so flows whose
// entry is not excluded never move and every node picks the same fallback.

#include <cstdint>
#include <span>
#include <vector>

#include "fulcrum/balance.hpp"

namespace fulcrum::balance {

class MaglevPicker final : public Picker {
 public:
  // Throws std::invalid_argument when table_size is not prime or above kMaxMaglevTableSize.
  MaglevPicker(std::vector<Candidate> candidates, uint32_t table_size);

  // Picker.
  uint32_t pick(uint64_t flow_hash, std::span<const uint8_t> excluded) const override;

  const std::vector<uint32_t>& table() const { return table_; }

 private:
  uint32_t pickFallback(uint64_t flow_hash, std::span<const uint8_t> excluded) const;

  std::vector<Candidate> candidates_;
  std::vector<uint32_t> table_;
};

}  // namespace fulcrum::balance
