// Power of two choices: Mitzenmacher, "The Power of Two Choices in Randomized Load
// Balancing", IEEE TPDS 12(10), 2001. Comparing two random backends instead of all of them
// gets most of least-connections' balance at O(1) cost and, unlike a full scan, avoids
// every worker herding onto the same momentarily idle backend. Weights enter twice: in how
// often a backend is drawn, and in the active/weight comparison.

#include "balance/random_two.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <utility>

#include "balance/picker_util.hpp"

namespace fulcrum::balance {

namespace {

// Rejected draws tolerated before switching to an exact linear draw. Each draw is rejected
// with probability (excluded weight / total), so four rejections in a row are rare unless
// most of the pool is excluded, and then the scan is the cheaper path anyway.
constexpr int kMaxRejections = 4;

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// Zero means "not seeded yet": constant-initialised, so reading it costs no guard check.
thread_local uint64_t t_rng_state = 0;

uint64_t seedThread() {
  // Distinct per thread even when the clock is coarse: a process-wide counter, the clock and
  // the address of this thread's state (different per thread, and randomised by ASLR).
  static std::atomic<uint64_t> threads{0};
  uint64_t seed = (threads.fetch_add(1, std::memory_order_relaxed) + 1) * kGolden;
  seed ^= static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  seed ^= static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&t_rng_state));
  return seed == 0 ? kGolden : seed;
}

// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014): a Weyl sequence through a 64-bit mixing function. Fast, passes BigCrush, and
// one word of state fits a thread_local.
uint64_t nextRandom() {
  if (t_rng_state == 0) {
    t_rng_state = seedThread();
  }
  t_rng_state += kGolden;
  uint64_t z = t_rng_state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [0, bound). The modulo bias is below bound / 2^64, far under anything a
// balancer can observe.
uint64_t randomBelow(uint64_t bound) { return nextRandom() % bound; }

uint64_t activeOf(const Candidate& c) {
  return c.active == nullptr ? 0 : c.active->load(std::memory_order_relaxed);
}

}  // namespace

RandomTwoPicker::RandomTwoPicker(std::vector<Candidate> candidates)
    : candidates_(std::move(candidates)) {
  detail::checkCandidateCount(candidates_.size());

  cumulative_.reserve(candidates_.size());
  for (const Candidate& c : candidates_) {
    total_weight_ += c.weight;
    cumulative_.push_back(total_weight_);
  }
}

uint32_t RandomTwoPicker::owner(uint64_t r) const {
  // The first cumulative sum above r. Weight-0 candidates repeat the previous sum and so are
  // never the first one above.
  const auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), r);
  return static_cast<uint32_t>(it - cumulative_.begin());
}

uint32_t RandomTwoPicker::drawByScan(std::span<const uint8_t> excluded, uint32_t skip) const {
  uint64_t eligible_weight = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (i != skip && !detail::isExcluded(excluded, i)) {
      eligible_weight += candidates_[i].weight;
    }
  }
  if (eligible_weight == 0) {
    return kNone;
  }

  uint64_t r = randomBelow(eligible_weight);
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (i == skip || detail::isExcluded(excluded, i)) {
      continue;
    }
    if (r < candidates_[i].weight) {
      return static_cast<uint32_t>(i);
    }
    r -= candidates_[i].weight;
  }
  return kNone;
}

uint32_t RandomTwoPicker::draw(std::span<const uint8_t> excluded, uint32_t skip) const {
  // Drawing without skip: take the weight line, cut out skip's segment, and map a point of
  // the shorter line back by stepping over the cut.
  uint64_t line = total_weight_;
  uint64_t cut_start = 0;
  uint64_t cut_len = 0;
  if (skip != kNone) {
    cut_len = candidates_[skip].weight;
    cut_start = cumulative_[skip] - cut_len;
    line -= cut_len;
  }
  if (line == 0) {
    return kNone;
  }

  for (int attempt = 0; attempt < kMaxRejections; ++attempt) {
    uint64_t r = randomBelow(line);
    if (r >= cut_start) {
      r += cut_len;
    }
    const uint32_t index = owner(r);
    if (!detail::isExcluded(excluded, index)) {
      return index;
    }
  }

  // Rejection sampling stopped early; an exact draw from the same distribution keeps the
  // overall result exact.
  return drawByScan(excluded, skip);
}

uint32_t RandomTwoPicker::pick(uint64_t /*flow_hash*/, std::span<const uint8_t> excluded) const {
  const uint32_t first = draw(excluded, kNone);
  if (first == kNone) {
    return kNone;
  }
  const uint32_t second = draw(excluded, first);
  if (second == kNone) {
    return first;
  }

  // Lower active/weight wins; a tie keeps the first draw, which is itself random.
  const uint64_t a1 = activeOf(candidates_[first]);
  const uint64_t a2 = activeOf(candidates_[second]);
  if (a2 * candidates_[first].weight < a1 * candidates_[second].weight) {
    return second;
  }
  return first;
}

}  // namespace fulcrum::balance
