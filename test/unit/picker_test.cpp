// Properties every picker shares, whatever its algorithm: weights are followed, weight 0 and
// excluded backends are never picked, and an empty choice gives kNone.

#include <catch2/catch.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <stdexcept>
#include <vector>

#include "balance_test_util.hpp"
#include "fulcrum/balance.hpp"

using namespace fulcrum;
using namespace fulcrum::balance;
using namespace fulcrum::balance::testing;

namespace {

constexpr size_t kSharePicks = 100000;

const Algorithm kAllAlgorithms[] = {Algorithm::RoundRobin, Algorithm::LeastConn,
                                    Algorithm::RandomTwo, Algorithm::RingHash, Algorithm::Maglev};

// Per-backend session counters the way the data plane keeps them, wired into candidates.
struct LoadedPool {
  std::vector<uint32_t> weights;
  std::unique_ptr<std::atomic<uint32_t>[]> active;
  std::vector<Candidate> candidates;

  explicit LoadedPool(std::vector<uint32_t> w)
      : weights(std::move(w)), active(new std::atomic<uint32_t>[weights.size()]) {
    candidates = candidatesWithWeights(weights);
    for (size_t i = 0; i < weights.size(); ++i) {
      active[i].store(0);
      candidates[i].active = &active[i];
    }
  }
};

// Opens one session per pick and closes the oldest once `lifetime` are open, so every
// session lives exactly `lifetime` picks: the steady state a least-loaded picker is built for.
std::vector<uint32_t> pickWithSessions(const Picker& picker, LoadedPool& pool, size_t picks,
                                       size_t lifetime) {
  std::vector<uint32_t> out;
  std::deque<uint32_t> open;
  for (size_t i = 0; i < picks; ++i) {
    const uint32_t chosen = picker.pick(0, {});
    out.push_back(chosen);
    if (chosen == Picker::kNone) {
      continue;
    }
    pool.active[chosen].fetch_add(1);
    open.push_back(chosen);
    if (open.size() > lifetime) {
      pool.active[open.front()].fetch_sub(1);
      open.pop_front();
    }
  }
  return out;
}

// Picks for each hash with every picked session left open, so load-aware pickers see the
// load they create (a static all-idle load would make least_conn always choose the heaviest
// backend, which is right for that load but says nothing about eligibility).
std::vector<uint32_t> pickAllLoaded(const Picker& picker, LoadedPool& pool,
                                    const std::vector<uint64_t>& hashes,
                                    std::span<const uint8_t> excluded = {}) {
  std::vector<uint32_t> out;
  out.reserve(hashes.size());
  for (uint64_t h : hashes) {
    const uint32_t chosen = picker.pick(h, excluded);
    out.push_back(chosen);
    if (chosen != Picker::kNone) {
      pool.active[chosen].fetch_add(1);
    }
  }
  return out;
}

PickerOptions optionsFor(Algorithm algorithm) {
  PickerOptions options;
  options.algorithm = algorithm;
  return options;
}

}  // namespace

// Over 100k picks each backend's share is within 2% of its weight share, for every algorithm.
TEST_CASE("every picker follows weights over 100k picks", "[balance]") {
  const std::vector<uint32_t> weights = {1, 2, 3, 4};
  const std::vector<uint64_t> hashes = distinctFlowHashes(kSharePicks);

  SECTION("round_robin") {
    const auto picker = makePicker(optionsFor(Algorithm::RoundRobin),
                                   candidatesWithWeights(weights));
    const auto counts = countPicks(pickAll(*picker, hashes), weights.size());
    CHECK(counts.back() == 0);
    CHECK(maxShareError(counts, weights) < 0.02);
  }

  SECTION("maglev") {
    const auto picker = makePicker(optionsFor(Algorithm::Maglev), candidatesWithWeights(weights));
    const auto counts = countPicks(pickAll(*picker, hashes), weights.size());
    CHECK(counts.back() == 0);
    CHECK(maxShareError(counts, weights) < 0.02);
  }

  SECTION("ring_hash") {
    // A ring's shares scatter with sd sqrt(p(1-p)/points): with 1024 points per unit of
    // weight (10240 in all) the 40% backend has sd 0.5%, so 2% is a four-sigma bound; the
    // default 160 (sd 1.2%) is evenness the operator trades for memory.
    PickerOptions options = optionsFor(Algorithm::RingHash);
    options.ring_hash_vnodes = 1024;
    const auto picker = makePicker(options, candidatesWithWeights(weights));
    const auto counts = countPicks(pickAll(*picker, hashes), weights.size());
    CHECK(counts.back() == 0);
    CHECK(maxShareError(counts, weights) < 0.02);
  }

  SECTION("random_two with every backend idle") {
    // Loads tie at zero, so the weighted draw alone decides.
    LoadedPool pool(weights);
    const auto picker = makePicker(optionsFor(Algorithm::RandomTwo), pool.candidates);
    const auto counts = countPicks(pickAll(*picker, hashes), weights.size());
    CHECK(counts.back() == 0);
    CHECK(maxShareError(counts, weights) < 0.02);
  }

  SECTION("random_two with sessions opening and closing") {
    LoadedPool pool(weights);
    const auto picker = makePicker(optionsFor(Algorithm::RandomTwo), pool.candidates);
    const auto counts = countPicks(pickWithSessions(*picker, pool, kSharePicks, 100),
                                   weights.size());
    CHECK(counts.back() == 0);
    CHECK(maxShareError(counts, weights) < 0.02);
  }

  SECTION("least_conn with sessions opening and closing") {
    LoadedPool pool(weights);
    const auto picker = makePicker(optionsFor(Algorithm::LeastConn), pool.candidates);
    const auto counts = countPicks(pickWithSessions(*picker, pool, kSharePicks, 100),
                                   weights.size());
    CHECK(counts.back() == 0);
    CHECK(maxShareError(counts, weights) < 0.02);
  }
}

// A backend with weight 0 takes no new flows under any algorithm.
TEST_CASE("weight 0 is never picked", "[balance]") {
  const std::vector<uint32_t> weights = {0, 3, 0, 1};
  const std::vector<uint64_t> hashes = distinctFlowHashes(20000);

  for (Algorithm algorithm : kAllAlgorithms) {
    INFO("algorithm " << toString(algorithm));
    LoadedPool pool(weights);
    const auto picker = makePicker(optionsFor(algorithm), pool.candidates);
    const auto counts = countPicks(pickAllLoaded(*picker, pool, hashes), weights.size());
    CHECK(counts[0] == 0);
    CHECK(counts[2] == 0);
    CHECK(counts[1] > 0);
    CHECK(counts[3] > 0);
    CHECK(counts.back() == 0);
  }
}

// Excluded backends are skipped, and the rest still take every flow.
TEST_CASE("an excluded candidate is never returned", "[balance]") {
  const std::vector<uint32_t> weights = {1, 1, 2, 1, 1};
  const std::vector<uint8_t> excluded = {0, 1, 0, 1, 0};
  const std::vector<uint64_t> hashes = distinctFlowHashes(20000);

  for (Algorithm algorithm : kAllAlgorithms) {
    INFO("algorithm " << toString(algorithm));
    LoadedPool pool(weights);
    const auto picker = makePicker(optionsFor(algorithm), pool.candidates);
    const auto counts = countPicks(pickAllLoaded(*picker, pool, hashes, excluded),
                                   weights.size());
    CHECK(counts[1] == 0);
    CHECK(counts[3] == 0);
    CHECK(counts[0] > 0);
    CHECK(counts[2] > 0);
    CHECK(counts[4] > 0);
    CHECK(counts.back() == 0);
  }
}

// Nothing to pick gives kNone: all excluded, all weight 0, or no candidates at all.
TEST_CASE("no eligible candidate gives kNone", "[balance]") {
  const std::vector<uint64_t> hashes = distinctFlowHashes(2000);
  const std::vector<uint8_t> all_excluded = {1, 1, 1};

  for (Algorithm algorithm : kAllAlgorithms) {
    INFO("algorithm " << toString(algorithm));

    const auto weighted = makePicker(optionsFor(algorithm), candidatesWithWeights({1, 2, 3}));
    const auto zero = makePicker(optionsFor(algorithm), candidatesWithWeights({0, 0, 0}));
    const auto empty = makePicker(optionsFor(algorithm), {});
    const auto mixed = makePicker(optionsFor(algorithm), candidatesWithWeights({0, 5, 0}));
    const std::vector<uint8_t> only_weighted_excluded = {0, 1, 0};

    for (uint64_t h : hashes) {
      REQUIRE(weighted->pick(h, all_excluded) == Picker::kNone);
      REQUIRE(zero->pick(h, {}) == Picker::kNone);
      REQUIRE(empty->pick(h, {}) == Picker::kNone);
      REQUIRE(mixed->pick(h, only_weighted_excluded) == Picker::kNone);
    }
  }
}

// An excluded span shorter than the candidate list treats the missing entries as allowed
// instead of reading past its end.
TEST_CASE("a short excluded span only excludes what it covers", "[balance]") {
  const std::vector<uint8_t> first_excluded = {1};
  const std::vector<uint64_t> hashes = distinctFlowHashes(5000);

  for (Algorithm algorithm : kAllAlgorithms) {
    INFO("algorithm " << toString(algorithm));
    const auto picker = makePicker(optionsFor(algorithm), candidatesWithWeights({1, 1, 1}));
    const auto counts = countPicks(pickAll(*picker, hashes, first_excluded), 3);
    CHECK(counts[0] == 0);
    CHECK(counts[1] > 0);
    CHECK(counts[2] > 0);
    CHECK(counts.back() == 0);
  }
}

// Options a validator should refuse make makePicker throw instead of building a bad picker.
TEST_CASE("makePicker refuses invalid options", "[balance]") {
  PickerOptions maglev = optionsFor(Algorithm::Maglev);
  for (uint32_t size : {0u, 1u, 4u, 65536u, 1000001u, 1000033u}) {
    INFO("maglev_table_size " << size);
    maglev.maglev_table_size = size;
    CHECK_THROWS_AS(makePicker(maglev, candidatesWithWeights({1, 1})), std::invalid_argument);
  }

  PickerOptions ring = optionsFor(Algorithm::RingHash);
  ring.ring_hash_vnodes = 0;
  CHECK_THROWS_AS(makePicker(ring, candidatesWithWeights({1, 1})), std::invalid_argument);

  // The limits apply only to the algorithm that uses them.
  PickerOptions round_robin = optionsFor(Algorithm::RoundRobin);
  round_robin.maglev_table_size = 4;
  round_robin.ring_hash_vnodes = 0;
  CHECK_NOTHROW(makePicker(round_robin, candidatesWithWeights({1, 1})));
}
