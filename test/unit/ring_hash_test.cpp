// Ring hash: minimal disruption on removal, exact stability on exclusion, determinism,
// weight-proportional points.

#include <catch2/catch.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "balance/ring_hash.hpp"
#include "balance_test_util.hpp"

using namespace fulcrum::balance;
using namespace fulcrum::balance::testing;

namespace {

constexpr size_t kKeys = 100000;
constexpr uint32_t kVnodes = 160;

}  // namespace

// Rebuilding without one of N backends moves at most 1/N + 2% of the keys.
TEST_CASE("ring_hash moves few keys when a backend is removed", "[balance][ring_hash]") {
  const size_t n = 10;
  const auto all = candidatesWithWeights(std::vector<uint32_t>(n, 1));
  auto fewer = all;
  fewer.erase(fewer.begin() + 4);
  const auto hashes = distinctFlowHashes(kKeys);

  const auto before = chosenKeys(RingHashPicker(all, kVnodes), all, hashes);
  const auto after = chosenKeys(RingHashPicker(fewer, kVnodes), fewer, hashes);

  size_t moved = 0;
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (before[i] != after[i]) {
      ++moved;
      REQUIRE(before[i] == all[4].key);  // Only the removed backend's keys may move.
    }
  }
  const double moved_share = static_cast<double>(moved) / static_cast<double>(kKeys);
  CHECK(moved > 0);
  CHECK(moved_share <= 1.0 / n + 0.02);
}

// Excluding a backend moves exactly its keys, to other backends; all other keys stay.
TEST_CASE("ring_hash moves only the excluded backend's keys", "[balance][ring_hash]") {
  const auto list = candidatesWithWeights({1, 2, 1, 3, 1});
  const RingHashPicker picker(list, kVnodes);
  const auto hashes = distinctFlowHashes(kKeys);
  const std::vector<uint8_t> excluded = {0, 0, 0, 1, 0};

  const auto before = pickAll(picker, hashes);
  const auto after = pickAll(picker, hashes, excluded);
  size_t moved = 0;
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (before[i] == 3) {
      REQUIRE(after[i] != 3);
      REQUIRE(after[i] != Picker::kNone);
      ++moved;
    } else {
      REQUIRE(after[i] == before[i]);
    }
  }
  CHECK(moved > 0);
}

// Point positions depend only on keys: two rings over the same set, listed in either order,
// send every flow to the same backend.
TEST_CASE("ring_hash is deterministic and independent of list order", "[balance][ring_hash]") {
  const auto list = candidatesWithWeights({1, 2, 3, 1, 1});
  auto reversed = list;
  std::reverse(reversed.begin(), reversed.end());
  const auto hashes = distinctFlowHashes(20000);

  const auto first = chosenKeys(RingHashPicker(list, kVnodes), list, hashes);
  const auto second = chosenKeys(RingHashPicker(list, kVnodes), list, hashes);
  const auto other_order = chosenKeys(RingHashPicker(reversed, kVnodes), reversed, hashes);
  CHECK(first == second);
  CHECK(first == other_order);
}

// A backend gets weight * vnodes points, so a heavier one owns more of the ring.
TEST_CASE("ring_hash gives heavier backends more points", "[balance][ring_hash]") {
  const RingHashPicker picker(candidatesWithWeights({1, 2, 0, 5}), kVnodes);
  const auto points = picker.pointsPerCandidate();
  CHECK(points == std::vector<uint64_t>{kVnodes, 2 * kVnodes, 0, 5 * kVnodes});

  const auto counts = countPicks(pickAll(picker, distinctFlowHashes(kKeys)), 4);
  CHECK(counts[0] < counts[1]);
  CHECK(counts[1] < counts[3]);
}

// Any weighted backend makes every key land somewhere.
TEST_CASE("ring_hash has no holes while some weight is positive", "[balance][ring_hash]") {
  const RingHashPicker picker(candidatesWithWeights({0, 0, 1}), kVnodes);
  const auto counts = countPicks(pickAll(picker, distinctFlowHashes(kKeys)), 3);
  CHECK(counts[2] == kKeys);
}

// Huge weight * vnodes products are scaled to the point cap, still one point or more each.
TEST_CASE("ring_hash caps the number of points", "[balance][ring_hash]") {
  std::vector<uint32_t> weights(64, 1000);
  weights.push_back(1);
  const RingHashPicker picker(candidatesWithWeights(weights), 100000);
  CHECK(picker.pointCount() <= RingHashPicker::kMaxPoints + weights.size());
  const auto points = picker.pointsPerCandidate();
  CHECK(points.back() >= 1);
  CHECK(points.front() > 1000 * points.back());
}

TEST_CASE("ring_hash refuses zero vnodes", "[balance][ring_hash]") {
  CHECK_THROWS_AS(RingHashPicker(candidatesWithWeights({1}), 0), std::invalid_argument);
}
