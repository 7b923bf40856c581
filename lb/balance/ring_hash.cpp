// Ring consistent hashing: Karger et al., "Consistent Hashing and Random Trees", STOC 1997
// (several points per cache on the circle to even out the shares), with weights as a
// per-backend point count as in libketama.
//
// A backend with m of the ring's K points gets a share distributed as Beta(m, K - m):
// standard deviation sqrt(p(1-p)/K), about 1.2% absolute for a 40% backend on a 1600-point
// ring, so more points buy evenness at the cost of memory and build time.
//
// Point j of a candidate sits at XXH3(le64(XXH3(key, kKeySeed)) || le32(j), kPointSeed).

#include "balance/ring_hash.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "balance/picker_util.hpp"
#include "fulcrum/flow_hash.hpp"

namespace fulcrum::balance {

namespace {

// Fixed seeds (ASCII "RINGKEY0", "RINGPNT0"); every node must use the same ones.
constexpr uint64_t kKeySeed = 0x52494e474b455930ULL;
constexpr uint64_t kPointSeed = 0x52494e47504e5430ULL;

struct Point {
  uint64_t position;
  uint32_t owner;
};

// Points for each candidate: weight * vnodes, or that scaled down so the total stays under
// max_points. 128-bit arithmetic because weight * vnodes * max_points can pass 2^64.
std::vector<uint64_t> pointCounts(std::span<const Candidate> candidates, uint32_t vnodes,
                                  uint64_t max_points) {
  __extension__ using Wide = unsigned __int128;

  std::vector<uint64_t> counts;
  counts.reserve(candidates.size());
  Wide total = 0;
  for (const Candidate& c : candidates) {
    const uint64_t count = static_cast<uint64_t>(c.weight) * vnodes;
    counts.push_back(count);
    total += count;
  }
  if (total <= max_points) {
    return counts;
  }

  for (uint64_t& count : counts) {
    if (count > 0) {
      const Wide scaled = static_cast<Wide>(count) * max_points / total;
      count = std::max<uint64_t>(1, static_cast<uint64_t>(scaled));
    }
  }
  return counts;
}

}  // namespace

RingHashPicker::RingHashPicker(std::vector<Candidate> candidates, uint32_t vnodes)
    : candidates_(std::move(candidates)) {
  detail::checkCandidateCount(candidates_.size());
  if (vnodes == 0) {
    throw std::invalid_argument("ring_hash_vnodes must be at least 1");
  }

  const std::vector<uint64_t> counts = pointCounts(candidates_, vnodes, kMaxPoints);
  uint64_t total = 0;
  for (uint64_t count : counts) {
    total += count;
  }

  std::vector<Point> ring;
  ring.reserve(total);
  for (size_t i = 0; i < candidates_.size(); ++i) {
    const std::string& key = candidates_[i].key;
    uint8_t input[12];
    detail::storeLe64(input, hashBytes(key.data(), key.size(), kKeySeed));
    for (uint64_t j = 0; j < counts[i]; ++j) {
      detail::storeLe32(input + 8, static_cast<uint32_t>(j));
      ring.push_back(Point{hashBytes(input, sizeof(input), kPointSeed), static_cast<uint32_t>(i)});
    }
  }

  // Equal positions are broken by key, not by index, so the ring does not depend on the
  // order backends are listed in; index only separates candidates with identical keys.
  std::sort(ring.begin(), ring.end(), [this](const Point& a, const Point& b) {
    if (a.position != b.position) {
      return a.position < b.position;
    }
    const std::string& ka = candidates_[a.owner].key;
    const std::string& kb = candidates_[b.owner].key;
    if (ka != kb) {
      return ka < kb;
    }
    return a.owner < b.owner;
  });

  positions_.reserve(ring.size());
  owners_.reserve(ring.size());
  for (const Point& p : ring) {
    positions_.push_back(p.position);
    owners_.push_back(p.owner);
  }
}

uint32_t RingHashPicker::pick(uint64_t flow_hash, std::span<const uint8_t> excluded) const {
  const size_t n = positions_.size();
  if (n == 0) {
    return kNone;
  }

  // First point at or after the hash; past the last point the circle wraps to the first.
  const auto it = std::lower_bound(positions_.begin(), positions_.end(), flow_hash);
  const size_t start = it == positions_.end() ? 0 : static_cast<size_t>(it - positions_.begin());
  const uint32_t first = owners_[start];
  if (!detail::isExcluded(excluded, first)) {
    return first;
  }

  // The walk below ends at the first eligible point; checking that one exists first keeps an
  // all-excluded pool from walking the whole ring on every pick.
  if (!detail::anyEligible(candidates_, excluded)) {
    return kNone;
  }
  for (size_t step = 1; step < n; ++step) {
    const uint32_t owner = owners_[(start + step) % n];
    if (!detail::isExcluded(excluded, owner)) {
      return owner;
    }
  }
  return kNone;
}

std::vector<uint64_t> RingHashPicker::pointsPerCandidate() const {
  std::vector<uint64_t> counts(candidates_.size(), 0);
  for (uint32_t owner : owners_) {
    ++counts[owner];
  }
  return counts;
}

}  // namespace fulcrum::balance
