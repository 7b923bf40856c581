// Maglev: prime table sizes, full and deterministic tables, weight-proportional slots,
// minimal disruption on removal and exact stability on exclusion.

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "balance/maglev.hpp"
#include "balance_test_util.hpp"

using namespace fulcrum::balance;
using namespace fulcrum::balance::testing;

namespace {

constexpr size_t kKeys = 100000;
constexpr uint32_t kSize = 65537;

std::vector<size_t> slotsPerCandidate(const std::vector<uint32_t>& table, size_t candidates) {
  return countPicks(table, candidates);
}

}  // namespace

// Non-prime sizes would leave some preference lists short of a full permutation.
TEST_CASE("maglev table size must be prime", "[balance][maglev]") {
  const auto list = candidatesWithWeights({1, 1});
  for (uint32_t size : {0u, 1u, 4u, 9u, 65536u}) {
    INFO("size " << size);
    CHECK_THROWS_AS(buildMaglevTable(list, size), std::invalid_argument);
  }
  for (uint32_t size : {2u, 3u, 7u, 65537u}) {
    INFO("size " << size);
    CHECK(buildMaglevTable(list, size).size() == size);
  }
}

// Every slot is filled while any weight is positive; all-zero weights give only kNone.
TEST_CASE("maglev table has no holes", "[balance][maglev]") {
  const auto table = buildMaglevTable(candidatesWithWeights({0, 1, 3, 0, 2}), kSize);
  CHECK(std::count(table.begin(), table.end(), Picker::kNone) == 0);
  const auto counts = slotsPerCandidate(table, 5);
  CHECK(counts[0] == 0);
  CHECK(counts[3] == 0);

  const auto empty = buildMaglevTable(candidatesWithWeights({0, 0}), 7);
  CHECK(std::count(empty.begin(), empty.end(), Picker::kNone) == 7);
}

// Equal weights share the table to within one slot, as in the paper.
TEST_CASE("maglev splits the table evenly for equal weights", "[balance][maglev]") {
  const auto counts = slotsPerCandidate(buildMaglevTable(candidatesWithWeights(
                                                             std::vector<uint32_t>(10, 3)),
                                                         kSize),
                                        10);
  const auto [low, high] = std::minmax_element(counts.begin(), counts.end() - 1);
  CHECK(*high - *low <= 1);
}

// Slots follow weights: heavier backends own more of the table, in proportion.
TEST_CASE("maglev gives heavier backends more slots", "[balance][maglev]") {
  const std::vector<uint32_t> weights = {1, 2, 3, 10};
  const auto counts = slotsPerCandidate(buildMaglevTable(candidatesWithWeights(weights), kSize),
                                        weights.size());
  CHECK(counts[0] < counts[1]);
  CHECK(counts[1] < counts[2]);
  CHECK(counts[2] < counts[3]);
  CHECK(maxShareError(counts, weights) < 0.001);
}

// The same list gives the same table; the same set in another order gives the same backend
// in every slot, so nodes agree however their configs list the backends.
TEST_CASE("maglev table is deterministic and independent of list order", "[balance][maglev]") {
  const auto list = candidatesWithWeights({1, 2, 1, 1, 4});
  auto reversed = list;
  std::reverse(reversed.begin(), reversed.end());

  const auto first = buildMaglevTable(list, kSize);
  const auto second = buildMaglevTable(list, kSize);
  CHECK(first == second);

  const auto other_order = buildMaglevTable(reversed, kSize);
  for (size_t slot = 0; slot < kSize; ++slot) {
    REQUIRE(list[first[slot]].key == reversed[other_order[slot]].key);
  }
}

// Rebuilding without one of N backends moves at most 1/N + 2% of the keys.
TEST_CASE("maglev moves few keys when a backend is removed", "[balance][maglev]") {
  const size_t n = 10;
  const auto all = candidatesWithWeights(std::vector<uint32_t>(n, 1));
  auto fewer = all;
  fewer.erase(fewer.begin() + 7);
  const auto hashes = distinctFlowHashes(kKeys);

  const auto before = chosenKeys(MaglevPicker(all, kSize), all, hashes);
  const auto after = chosenKeys(MaglevPicker(fewer, kSize), fewer, hashes);

  size_t moved = 0;
  size_t moved_from_removed = 0;
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (before[i] != after[i]) {
      ++moved;
      moved_from_removed += before[i] == all[7].key ? 1 : 0;
    }
  }
  const double moved_share = static_cast<double>(moved) / static_cast<double>(kKeys);
  CHECK(moved_from_removed > 0);
  CHECK(moved_share <= 1.0 / n + 0.02);
}

// Excluding a backend moves exactly its keys and spreads them over the survivors; every
// other key stays where it was.
TEST_CASE("maglev moves only the excluded backend's keys", "[balance][maglev]") {
  const auto list = candidatesWithWeights({1, 1, 2, 1, 1, 1});
  const MaglevPicker picker(list, kSize);
  const auto hashes = distinctFlowHashes(kKeys);
  const std::vector<uint8_t> excluded = {0, 1, 0, 0, 0, 0};

  const auto before = pickAll(picker, hashes);
  const auto after = pickAll(picker, hashes, excluded);
  std::set<uint32_t> new_homes;
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (before[i] == 1) {
      REQUIRE(after[i] != 1);
      REQUIRE(after[i] != Picker::kNone);
      new_homes.insert(after[i]);
    } else {
      REQUIRE(after[i] == before[i]);
    }
  }
  CHECK(new_homes == std::set<uint32_t>{0, 2, 3, 4, 5});
}

// With all but one backend excluded the table probes mostly miss; the scan still finds it.
TEST_CASE("maglev falls back to the last eligible backend", "[balance][maglev]") {
  const auto list = candidatesWithWeights({50, 50, 50, 1});
  const MaglevPicker picker(list, kSize);
  const std::vector<uint8_t> excluded = {1, 1, 1, 0};
  const auto counts = countPicks(pickAll(picker, distinctFlowHashes(20000), excluded), 4);
  CHECK(counts[3] == 20000);
}
