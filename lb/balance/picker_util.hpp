#pragma once

// Helpers shared by the picker implementations in lb/balance/. Not a public interface.

#include <cstddef>
#include <cstdint>
#include <span>

#include "fulcrum/balance.hpp"

namespace fulcrum::balance::detail {

// The excluded span is empty or has one entry per candidate. An index past its end counts
// as "not excluded", so a short span can never make a picker read out of bounds.
inline bool isExcluded(std::span<const uint8_t> excluded, size_t index) {
  return index < excluded.size() && excluded[index] != 0;
}

// True when at least one candidate with weight > 0 is not excluded. O(n); pickers call it
// only on their slow path, after the first choice turned out to be excluded.
bool anyEligible(std::span<const Candidate> candidates, std::span<const uint8_t> excluded);

// Trial division; at most 65536 divisions for any uint32_t.
bool isPrime(uint32_t n);

// Greatest common divisor; gcd(0, b) == b.
uint64_t gcd(uint64_t a, uint64_t b);

// Writes value little-endian, so hash inputs built from integers are the same bytes on
// every host whatever its byte order.
void storeLe64(uint8_t* out, uint64_t value);
void storeLe32(uint8_t* out, uint32_t value);

// Rehash of a 64-bit value with a small integer salt (XXH3 with a fixed seed); used where a
// picker needs a second, independent, deterministic draw from one flow hash.
uint64_t rehash(uint64_t value, uint32_t salt, uint64_t seed);

// Throws std::invalid_argument when a list is too long for 32-bit candidate indices
// (Picker::kNone is reserved).
void checkCandidateCount(size_t count);

}  // namespace fulcrum::balance::detail
