// Power of two choices: the two draws are distinct, the lighter one wins, and exclusions are
// honoured even when they cover most of the weight.

#include <catch2/catch.hpp>

#include <atomic>
#include <vector>

#include "balance/random_two.hpp"
#include "balance_test_util.hpp"

using namespace fulcrum::balance;
using namespace fulcrum::balance::testing;

namespace {

std::vector<size_t> countManyPicks(const Picker& picker, size_t picks, size_t candidates,
                                   std::span<const uint8_t> excluded = {}) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < picks; ++i) {
    out.push_back(picker.pick(0, excluded));
  }
  return countPicks(out, candidates);
}

}  // namespace

// The two draws are distinct, so with two backends the lighter one wins every time.
TEST_CASE("random_two with two backends always takes the lighter", "[balance][random_two]") {
  FixedLoadPool pool({1, 1}, {10, 3});
  const RandomTwoPicker picker(pool.candidates);
  const auto counts = countManyPicks(picker, 1000, 2);
  CHECK(counts[0] == 0);
  CHECK(counts[1] == 1000);
}

// The most loaded of three never wins a comparison, so it never gets a flow.
TEST_CASE("random_two never picks the most loaded of three", "[balance][random_two]") {
  FixedLoadPool pool({1, 1, 1}, {50, 0, 0});
  const RandomTwoPicker picker(pool.candidates);
  const auto counts = countManyPicks(picker, 10000, 3);
  CHECK(counts[0] == 0);
  CHECK(counts[1] > 4000);
  CHECK(counts[2] > 4000);
}

// Loads compare per unit of weight: 6 sessions on weight 3 beat 3 on weight 1.
TEST_CASE("random_two divides load by weight", "[balance][random_two]") {
  FixedLoadPool pool({3, 1}, {6, 3});
  const RandomTwoPicker picker(pool.candidates);
  const auto counts = countManyPicks(picker, 1000, 2);
  CHECK(counts[0] == 1000);
}

// With nearly all weight excluded, rejection sampling keeps failing and the exact scan must
// still find the one backend left.
TEST_CASE("random_two finds the last eligible backend", "[balance][random_two]") {
  const RandomTwoPicker picker(candidatesWithWeights({1000, 1000, 1, 1000}));
  const std::vector<uint8_t> excluded = {1, 1, 0, 1};
  const auto counts = countManyPicks(picker, 2000, 4, excluded);
  CHECK(counts[2] == 2000);
}

// A single weighted backend is picked without a second draw.
TEST_CASE("random_two with one weighted backend picks it", "[balance][random_two]") {
  const RandomTwoPicker picker(candidatesWithWeights({0, 7, 0}));
  const auto counts = countManyPicks(picker, 500, 3);
  CHECK(counts[1] == 500);
}
