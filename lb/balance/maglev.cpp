// Maglev hashing: Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4 and Pseudocode 1.
//
// Each candidate has a preference list over the M table slots, a permutation given by
//   offset = h1(key) mod M,  skip = h2(key) mod (M - 1) + 1,  p(j) = (offset + j * skip) mod M.
// M prime makes every skip coprime with M, so each list visits every slot exactly once.
// Candidates take turns; on its turn a candidate claims the first slot on its list that is
// still free. Equal turns give each candidate M/N slots, within one.
//
// Weights: Pseudocode 1 gives every backend one turn per round; ours are weighted. Every
// round each candidate earns its weight in credit, and a candidate holding at least the
// largest weight spends that much for one turn. The heaviest candidate moves every round,
// the others in proportion, so each slot count is within a slot or two of its weight share.
//
// Worked example, M = 7, weights a=2, b=1: turns go a | a b | a | a b | a, so a ends with
// 5 slots and b with 2 (exact shares 4.67 and 2.33); with weights 1,1 it would be 4 and 3.

#include "balance/maglev.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "balance/picker_util.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/flow_hash.hpp"

namespace fulcrum::balance {

namespace {

// Fixed seeds (ASCII "MAGLVOFF", "MAGLVSKP", "MAGLVPRB"); every node must use the same ones.
constexpr uint64_t kOffsetSeed = 0x4d41474c564f4646ULL;
constexpr uint64_t kSkipSeed = 0x4d41474c56534b50ULL;
constexpr uint64_t kProbeSeed = 0x4d41474c56505242ULL;

// Fallback probes into the table before the linear scan. Each probe lands on an excluded
// candidate with probability (excluded slots / M), so 32 misses in a row need nearly the
// whole table excluded.
constexpr uint32_t kMaxProbes = 32;

struct Turn {
  uint32_t index;  // Candidate index, the value stored in the table.
  uint64_t weight;
  uint64_t credit;
  uint64_t position;  // Next slot on this candidate's preference list.
  uint64_t skip;
};

void checkTableSize(uint32_t size) {
  if (!detail::isPrime(size)) {
    throw std::invalid_argument("maglev table size " + std::to_string(size) +
                                " is not prime; use a prime such as 65537");
  }
  if (size > kMaxMaglevTableSize) {
    throw std::invalid_argument("maglev table size " + std::to_string(size) +
                                " is above the limit " + std::to_string(kMaxMaglevTableSize));
  }
}

// Weighted candidates in turn order: by key, then by index. Sorting by key makes the table
// independent of the order backends are listed in, so two nodes with the same set agree.
std::vector<Turn> turnOrder(std::span<const Candidate> candidates, uint32_t size) {
  std::vector<Turn> turns;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    if (c.weight == 0) {
      continue;
    }
    const uint64_t h1 = hashBytes(c.key.data(), c.key.size(), kOffsetSeed);
    const uint64_t h2 = hashBytes(c.key.data(), c.key.size(), kSkipSeed);
    turns.push_back(Turn{static_cast<uint32_t>(i), c.weight, 0, h1 % size, h2 % (size - 1) + 1});
  }

  std::sort(turns.begin(), turns.end(), [&candidates](const Turn& a, const Turn& b) {
    const std::string& ka = candidates[a.index].key;
    const std::string& kb = candidates[b.index].key;
    if (ka != kb) {
      return ka < kb;
    }
    return a.index < b.index;
  });
  return turns;
}

}  // namespace

std::vector<uint32_t> buildMaglevTable(std::span<const Candidate> candidates, uint32_t size) {
  checkTableSize(size);
  detail::checkCandidateCount(candidates.size());

  std::vector<uint32_t> table(size, Picker::kNone);
  std::vector<Turn> turns = turnOrder(candidates, size);
  if (turns.empty()) {
    return table;
  }

  uint64_t max_weight = 0;
  for (const Turn& t : turns) {
    max_weight = std::max(max_weight, t.weight);
  }

  // Terminates: the heaviest candidate claims a slot every round, and a free slot always
  // exists on every list while the table is not full.
  uint64_t filled = 0;
  while (true) {
    for (Turn& t : turns) {
      t.credit += t.weight;
      if (t.credit < max_weight) {
        continue;
      }
      t.credit -= max_weight;

      while (table[t.position] != Picker::kNone) {
        t.position = (t.position + t.skip) % size;
      }
      table[t.position] = t.index;
      t.position = (t.position + t.skip) % size;

      if (++filled == size) {
        return table;
      }
    }
  }
}

MaglevPicker::MaglevPicker(std::vector<Candidate> candidates, uint32_t table_size)
    : candidates_(std::move(candidates)), table_(buildMaglevTable(candidates_, table_size)) {}

uint32_t MaglevPicker::pick(uint64_t flow_hash, std::span<const uint8_t> excluded) const {
  const uint32_t first = table_[flow_hash % table_.size()];
  if (first == kNone || !detail::isExcluded(excluded, first)) {
    return first;
  }
  return pickFallback(flow_hash, excluded);
}

// The entry is excluded. Probe the table at positions derived from the flow hash alone, so
// the answer depends only on the flow, the table and the excluded set: the same on every
// node, and drawn in proportion to the surviving candidates' slots (their weights). A flow
// whose own entry survives never gets here, so it never moves. If every probe misses, scan
// the candidates from a flow-dependent start.
uint32_t MaglevPicker::pickFallback(uint64_t flow_hash, std::span<const uint8_t> excluded) const {
  for (uint32_t attempt = 1; attempt <= kMaxProbes; ++attempt) {
    const uint64_t probe = detail::rehash(flow_hash, attempt, kProbeSeed);
    const uint32_t index = table_[probe % table_.size()];
    if (!detail::isExcluded(excluded, index)) {
      return index;
    }
  }

  const size_t n = candidates_.size();
  const size_t start = flow_hash % n;
  for (size_t step = 0; step < n; ++step) {
    const size_t i = (start + step) % n;
    if (candidates_[i].weight > 0 && !detail::isExcluded(excluded, i)) {
      return static_cast<uint32_t>(i);
    }
  }
  return kNone;
}

}  // namespace fulcrum::balance
