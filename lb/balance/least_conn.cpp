// Least connections weighted by capacity: the lowest (active + 1) / weight wins, that is the
// backend whose load would be lowest after taking this flow. Counting the flow being placed
// makes weights matter from the first connection (with plain active/weight every idle
// backend ties at 0 and a 3:1 pool fills 1:1 at low load). Ratios are compared by
// cross-multiplication, (a1 + 1) * w2 < (a2 + 1) * w1, in 64 bits (both factors fit in 33
// bits), so no division and no floats.

#include "balance/least_conn.hpp"

#include <utility>

#include "balance/picker_util.hpp"

namespace fulcrum::balance {

namespace {

uint32_t activeOf(const Candidate& c) {
  return c.active == nullptr ? 0 : c.active->load(std::memory_order_relaxed);
}

}  // namespace

LeastConnPicker::LeastConnPicker(std::vector<Candidate> candidates)
    : candidates_(std::move(candidates)) {
  detail::checkCandidateCount(candidates_.size());
}

uint32_t LeastConnPicker::pick(uint64_t /*flow_hash*/, std::span<const uint8_t> excluded) const {
  // First pass: the lowest ratio and how many candidates share it.
  uint32_t best = kNone;
  uint64_t best_active = 0;
  uint64_t best_weight = 1;
  uint64_t ties = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    const Candidate& c = candidates_[i];
    if (c.weight == 0 || detail::isExcluded(excluded, i)) {
      continue;
    }

    const uint64_t active = uint64_t{activeOf(c)} + 1;
    const uint64_t lhs = active * best_weight;
    const uint64_t rhs = best_active * c.weight;
    if (best == kNone || lhs < rhs) {
      best = static_cast<uint32_t>(i);
      best_active = active;
      best_weight = c.weight;
      ties = 1;
    } else if (lhs == rhs) {
      ++ties;
    }
  }
  if (ties <= 1) {
    return best;
  }

  // Second pass: the k-th of the tied candidates, k advancing by one per pick. Counting
  // ties instead of starting the scan at a rotating index keeps the turns even when
  // ineligible candidates sit between them (a rotating start would hand the candidate after
  // a gap the gap's turns too). Counters may move between the passes; if the k-th tie is
  // gone by then, the first pass's choice stands.
  uint64_t k = next_.fetch_add(1, std::memory_order_relaxed) % ties;
  for (size_t i = best; i < candidates_.size(); ++i) {
    const Candidate& c = candidates_[i];
    if (c.weight == 0 || detail::isExcluded(excluded, i)) {
      continue;
    }
    if ((uint64_t{activeOf(c)} + 1) * best_weight != best_active * c.weight) {
      continue;
    }
    if (k == 0) {
      return static_cast<uint32_t>(i);
    }
    --k;
  }
  return best;
}

}  // namespace fulcrum::balance
