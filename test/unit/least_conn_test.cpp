// Least connections: the lowest (active + 1)/weight wins, ties rotate, excluded backends
// are skipped.

#include <catch2/catch.hpp>

#include <atomic>
#include <vector>

#include "balance/least_conn.hpp"
#include "balance_test_util.hpp"

using namespace fulcrum::balance;
using namespace fulcrum::balance::testing;

// The backend with the fewest sessions gets the flow, every time.
TEST_CASE("least_conn picks the least loaded backend", "[balance][least_conn]") {
  FixedLoadPool pool({1, 1, 1}, {5, 2, 7});
  const LeastConnPicker picker(pool.candidates);
  for (int i = 0; i < 30; ++i) {
    REQUIRE(picker.pick(0, {}) == 1);
  }
}

// Load is measured per unit of weight: 4 sessions on weight 4 is lighter than 2 on weight 1.
TEST_CASE("least_conn divides load by weight", "[balance][least_conn]") {
  FixedLoadPool pool({4, 1}, {4, 2});
  const LeastConnPicker picker(pool.candidates);
  for (int i = 0; i < 10; ++i) {
    REQUIRE(picker.pick(0, {}) == 0);
  }

  pool.active[0].store(12);  // (12+1)/4 > (2+1)/1.
  for (int i = 0; i < 10; ++i) {
    REQUIRE(picker.pick(0, {}) == 1);
  }
}

// Weights count from the first flow: an idle 3:1 pool fills 3:1, not 1:1.
TEST_CASE("least_conn follows weights from an idle start", "[balance][least_conn]") {
  FixedLoadPool pool({3, 1}, {0, 0});
  const LeastConnPicker picker(pool.candidates);
  std::vector<uint32_t> picks;
  for (int i = 0; i < 8; ++i) {
    const uint32_t chosen = picker.pick(0, {});
    picks.push_back(chosen);
    pool.active[chosen].fetch_add(1);
  }
  CHECK(countPicks(picks, 2) == std::vector<size_t>{6, 2, 0});
}

// Equally loaded backends take turns rather than the first one taking every flow.
TEST_CASE("least_conn rotates ties", "[balance][least_conn]") {
  FixedLoadPool pool({1, 1, 1, 1}, {3, 3, 3, 3});
  const LeastConnPicker picker(pool.candidates);

  std::vector<uint32_t> picks;
  for (int i = 0; i < 8; ++i) {
    picks.push_back(picker.pick(0, {}));
  }
  const auto counts = countPicks(picks, 4);
  CHECK(counts == std::vector<size_t>{2, 2, 2, 2, 0});
  for (size_t i = 1; i < picks.size(); ++i) {
    CHECK(picks[i] != picks[i - 1]);
  }
}

// Ties rotate only among the least loaded; a busier backend never joins the rotation.
TEST_CASE("least_conn rotates only among the least loaded", "[balance][least_conn]") {
  FixedLoadPool pool({1, 1, 1, 1}, {1, 0, 1, 0});
  const LeastConnPicker picker(pool.candidates);
  std::vector<uint32_t> picks;
  for (int i = 0; i < 40; ++i) {
    picks.push_back(picker.pick(0, {}));
  }
  const auto counts = countPicks(picks, 4);
  CHECK(counts == std::vector<size_t>{0, 20, 0, 20, 0});
}

// An excluded backend is passed over even when it is the least loaded.
TEST_CASE("least_conn skips an excluded least loaded backend", "[balance][least_conn]") {
  FixedLoadPool pool({1, 1, 1}, {0, 4, 2});
  const LeastConnPicker picker(pool.candidates);
  const std::vector<uint8_t> excluded = {1, 0, 0};
  for (int i = 0; i < 10; ++i) {
    REQUIRE(picker.pick(0, excluded) == 2);
  }
}

// Without counters every backend counts as idle, and picks rotate evenly over the eligible
// ones, even with ineligible ones (weight 0, excluded) between them.
TEST_CASE("least_conn rotates evenly across gaps", "[balance][least_conn]") {
  const LeastConnPicker picker(candidatesWithWeights({1, 0, 1, 1, 1}));
  const std::vector<uint8_t> excluded = {0, 0, 0, 1, 0};
  std::vector<uint32_t> picks;
  for (int i = 0; i < 30; ++i) {
    picks.push_back(picker.pick(0, excluded));
  }
  const auto counts = countPicks(picks, 5);
  CHECK(counts == std::vector<size_t>{10, 0, 10, 0, 10, 0});
}
