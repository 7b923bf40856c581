// Smooth weighted round-robin, the algorithm nginx uses for its upstreams
// (src/http/ngx_http_upstream_round_robin.c, ngx_http_upstream_get_peer): at every step each
// backend's current value
// grows by its weight, the largest current value wins, and the winner gives back the total
// weight. Heavy backends are spread through the cycle instead of served in bursts: weights
// 5,1,1 give a,a,b,a,c,a,a.
//
// Running that step on the pick path would need a lock (it mutates every backend's current
// value). The cycle is periodic with period sum(weight / gcd), so it is computed once here
// and pick() only indexes it with a relaxed atomic counter.

#include "balance/round_robin.hpp"

#include <algorithm>
#include <utility>

#include "balance/picker_util.hpp"

namespace fulcrum::balance {

namespace {

// Reduced weights whose sum is the cycle length: divided by their gcd, then, if still
// longer than the cap, scaled down proportionally with a floor of 1 for weighted backends.
std::vector<uint64_t> cycleWeights(std::span<const Candidate> candidates, uint64_t max_cycle) {
  std::vector<uint64_t> weights;
  weights.reserve(candidates.size());

  uint64_t divisor = 0;
  for (const Candidate& c : candidates) {
    divisor = detail::gcd(divisor, c.weight);
  }

  uint64_t total = 0;
  for (const Candidate& c : candidates) {
    const uint64_t w = divisor == 0 ? 0 : c.weight / divisor;
    weights.push_back(w);
    total += w;
  }
  if (total <= max_cycle) {
    return weights;
  }

  // w <= 2^32 and max_cycle <= 2^16, so the product cannot overflow.
  for (uint64_t& w : weights) {
    if (w > 0) {
      w = std::max<uint64_t>(1, w * max_cycle / total);
    }
  }
  return weights;
}

// Backends of equal weight, in index order. They are interchangeable in the smooth step
// except for the tie rule (lowest index first), so within a group turns simply rotate: after
// `turns` turns, member turns % size is next, and it has had turns / size turns so far.
struct WeightGroup {
  int64_t weight;
  std::vector<uint32_t> members;
  uint64_t turns = 0;

  uint32_t next() const { return members[turns % members.size()]; }
};

// One cycle of the smooth step. Before the pick at step t (from 1) a backend's current value
// is t * weight - total * (its turns so far), so only each group's next member can hold the
// maximum and the scan is over groups, not backends: O(cycle x distinct weights), which is
// a few groups for typical pools and at most the capped cycle times 4096 for the worst.
std::vector<uint32_t> smoothCycle(const std::vector<uint64_t>& weights) {
  std::vector<WeightGroup> groups;
  int64_t total = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] == 0) {
      continue;
    }
    const auto w = static_cast<int64_t>(weights[i]);
    total += w;
    auto it = std::find_if(groups.begin(), groups.end(),
                           [w](const WeightGroup& g) { return g.weight == w; });
    if (it == groups.end()) {
      groups.push_back(WeightGroup{w, {}, 0});
      it = groups.end() - 1;
    }
    it->members.push_back(static_cast<uint32_t>(i));
  }

  std::vector<uint32_t> cycle;
  cycle.reserve(static_cast<size_t>(total));
  for (int64_t step = 1; step <= total; ++step) {
    WeightGroup* best = nullptr;
    int64_t best_value = 0;
    for (WeightGroup& g : groups) {
      const auto own_turns = static_cast<int64_t>(g.turns / g.members.size());
      const int64_t value = step * g.weight - total * own_turns;
      if (best == nullptr || value > best_value ||
          (value == best_value && g.next() < best->next())) {
        best = &g;
        best_value = value;
      }
    }
    cycle.push_back(best->next());
    best->turns += 1;
  }
  return cycle;
}

}  // namespace

RoundRobinPicker::RoundRobinPicker(std::vector<Candidate> candidates)
    : candidates_(std::move(candidates)) {
  detail::checkCandidateCount(candidates_.size());
  cycle_ = smoothCycle(cycleWeights(candidates_, kMaxCycle));
}

uint32_t RoundRobinPicker::pick(uint64_t /*flow_hash*/, std::span<const uint8_t> excluded) const {
  if (cycle_.empty()) {
    return kNone;
  }

  const size_t len = cycle_.size();
  const size_t start = next_.fetch_add(1, std::memory_order_relaxed) % len;
  const uint32_t first = cycle_[start];
  if (!detail::isExcluded(excluded, first)) {
    return first;
  }

  // Excluded: take the next turn in the cycle that is not. The eligibility check first keeps
  // an all-excluded pool at O(candidates) instead of a walk round the whole cycle.
  if (!detail::anyEligible(candidates_, excluded)) {
    return kNone;
  }
  for (size_t step = 1; step < len; ++step) {
    const uint32_t index = cycle_[(start + step) % len];
    if (!detail::isExcluded(excluded, index)) {
      return index;
    }
  }
  return kNone;
}

}  // namespace fulcrum::balance
