// Smooth weighted round-robin: the nginx interleave, gcd-reduced cycles, exact shares under
// concurrent picks, and the cap on cycle length.

#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

#include "balance/round_robin.hpp"
#include "balance_test_util.hpp"

using namespace fulcrum::balance;
using namespace fulcrum::balance::testing;

namespace {

std::string picksAsLetters(const Picker& picker, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    out += static_cast<char>('a' + picker.pick(0, {}));
  }
  return out;
}

// The smooth step exactly as nginx runs it per pick, one full cycle long: every backend's
// current value grows by its weight, the largest (lowest index on ties) wins and gives back
// the total.
std::vector<uint32_t> referenceCycle(const std::vector<uint32_t>& weights) {
  int64_t total = 0;
  for (uint32_t w : weights) {
    total += w;
  }
  std::vector<int64_t> current(weights.size(), 0);
  std::vector<uint32_t> out;
  for (int64_t step = 0; step < total; ++step) {
    size_t best = weights.size();
    for (size_t i = 0; i < weights.size(); ++i) {
      if (weights[i] == 0) {
        continue;
      }
      current[i] += weights[i];
      if (best == weights.size() || current[i] > current[best]) {
        best = i;
      }
    }
    current[best] -= total;
    out.push_back(static_cast<uint32_t>(best));
  }
  return out;
}

}  // namespace

// The precomputed cycle matches nginx's step run pick by pick, for weights with repeats,
// gaps and no common divisor.
TEST_CASE("round_robin cycle equals the step-by-step smooth algorithm",
          "[balance][round_robin]") {
  const std::vector<std::vector<uint32_t>> cases = {
      {5, 1, 1},       {1, 2, 3, 4},          {3, 0, 3, 1, 7, 1},
      {1},             {2, 3, 2, 3, 2, 3, 9}, {10, 1, 10, 1, 10, 1, 4, 4},
      {7, 5, 3, 2, 1}, {1, 1, 1, 1, 1, 100},
  };
  for (const auto& weights : cases) {
    INFO("weights " << ::Catch::Detail::stringify(weights));
    const RoundRobinPicker picker(candidatesWithWeights(weights));
    CHECK(picker.cycle() == referenceCycle(weights));
  }
}

// Weights 5,1,1 spread the heavy backend through the cycle instead of five in a row.
TEST_CASE("round_robin interleaves weights 5,1,1 as a,a,b,a,c,a,a", "[balance][round_robin]") {
  const RoundRobinPicker picker(candidatesWithWeights({5, 1, 1}));
  CHECK(picksAsLetters(picker, 14) == "aabacaaaabacaa");
}

// Equal weights alternate; they never give the same backend twice in a row.
TEST_CASE("round_robin alternates equal weights", "[balance][round_robin]") {
  const RoundRobinPicker picker(candidatesWithWeights({3, 3, 3}));
  CHECK(picksAsLetters(picker, 9) == "abcabcabc");
}

// The cycle is sum(weight / gcd) long, so big round weights cost no memory.
TEST_CASE("round_robin reduces weights by their gcd", "[balance][round_robin]") {
  const RoundRobinPicker picker(candidatesWithWeights({100, 200, 0, 300}));
  REQUIRE(picker.cycle().size() == 6);
  const auto counts = countPicks(picker.cycle(), 4);
  CHECK(counts[0] == 1);
  CHECK(counts[1] == 2);
  CHECK(counts[2] == 0);
  CHECK(counts[3] == 3);
}

// Two workers sharing one picker still consume the cycle turn by turn: 100k picks made by
// two threads give exactly the shares one thread would.
TEST_CASE("round_robin gives exact shares under concurrent picks", "[balance][round_robin]") {
  const RoundRobinPicker picker(candidatesWithWeights({1, 2, 3, 4}));
  constexpr size_t kPerThread = 50000;

  std::vector<uint32_t> picks_a;
  std::vector<uint32_t> picks_b;
  auto run = [&picker](std::vector<uint32_t>* out) {
    out->reserve(kPerThread);
    for (size_t i = 0; i < kPerThread; ++i) {
      out->push_back(picker.pick(0, {}));
    }
  };
  std::thread a(run, &picks_a);
  std::thread b(run, &picks_b);
  a.join();
  b.join();

  auto counts = countPicks(picks_a, 4);
  const auto counts_b = countPicks(picks_b, 4);
  for (size_t i = 0; i < counts.size(); ++i) {
    counts[i] += counts_b[i];
  }
  CHECK(counts[0] == 10000);
  CHECK(counts[1] == 20000);
  CHECK(counts[2] == 30000);
  CHECK(counts[3] == 40000);
  CHECK(counts[4] == 0);
}

// Weights whose reduced sum exceeds the cap are scaled down, yet every weighted backend
// keeps a turn and shares stay close to the weights.
TEST_CASE("round_robin caps the cycle length", "[balance][round_robin]") {
  std::vector<uint32_t> weights;
  for (uint32_t i = 0; i < 300; ++i) {
    weights.push_back(1000 - i);  // Sum 255150, gcd 1.
  }
  weights.push_back(1);
  const RoundRobinPicker picker(candidatesWithWeights(weights));

  CHECK(picker.cycle().size() <= RoundRobinPicker::kMaxCycle + weights.size());
  const auto counts = countPicks(picker.cycle(), weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    INFO("backend " << i);
    CHECK(counts[i] > 0);
  }
  CHECK(maxShareError(counts, weights) < 0.001);
}

// An excluded backend's turns go to the next turns in the cycle, never to kNone.
TEST_CASE("round_robin skips excluded turns", "[balance][round_robin]") {
  const RoundRobinPicker picker(candidatesWithWeights({5, 1, 1}));
  const std::vector<uint8_t> excluded = {1, 0, 0};
  for (int i = 0; i < 70; ++i) {
    const uint32_t chosen = picker.pick(0, excluded);
    REQUIRE((chosen == 1 || chosen == 2));
  }
}
