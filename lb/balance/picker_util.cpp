#include "balance/picker_util.hpp"

#include <stdexcept>

#include "fulcrum/flow_hash.hpp"

namespace fulcrum::balance::detail {

bool anyEligible(std::span<const Candidate> candidates, std::span<const uint8_t> excluded) {
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].weight > 0 && !isExcluded(excluded, i)) {
      return true;
    }
  }
  return false;
}

bool isPrime(uint32_t n) {
  if (n < 2) {
    return false;
  }
  if (n % 2 == 0) {
    return n == 2;
  }
  for (uint64_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) {
      return false;
    }
  }
  return true;
}

uint64_t gcd(uint64_t a, uint64_t b) {
  while (b != 0) {
    const uint64_t rest = a % b;
    a = b;
    b = rest;
  }
  return a;
}

void storeLe64(uint8_t* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<uint8_t>(value >> (8 * i));
  }
}

void storeLe32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<uint8_t>(value >> (8 * i));
  }
}

uint64_t rehash(uint64_t value, uint32_t salt, uint64_t seed) {
  uint8_t bytes[12];
  storeLe64(bytes, value);
  storeLe32(bytes + 8, salt);
  return hashBytes(bytes, sizeof(bytes), seed);
}

void checkCandidateCount(size_t count) {
  if (count >= Picker::kNone) {
    throw std::invalid_argument("too many backends for one picker: indices must fit 32 bits");
  }
}

}  // namespace fulcrum::balance::detail
