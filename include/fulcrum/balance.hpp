#pragma once

// Backend pickers. Pure code: no sockets, no clocks, no process-random state, so the same
// inputs give the same picks in every process and on every node.

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fulcrum/types.hpp"

namespace fulcrum::balance {

// One backend as a picker sees it.
struct Candidate {
  std::string key;      // Stable identity fed to hashing pickers: the address, "ip:port".
  uint32_t weight = 1;  // 0 = takes no new flows.
  // Live sessions on this backend, maintained by the data plane; read by least_conn and
  // random_two. May be null for the other algorithms.
  const std::atomic<uint32_t>* active = nullptr;
};

struct PickerOptions {
  Algorithm algorithm = Algorithm::RoundRobin;
  uint32_t maglev_table_size = 65537;  // Prime.
  uint32_t ring_hash_vnodes = 160;     // Ring points per unit of weight.
};

class Picker {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  virtual ~Picker() = default;

  // Returns the index of the chosen candidate, or kNone when every candidate is excluded or
  // has weight 0. Thread-safe: all workers call it concurrently on one shared instance.
  // flow_hash: from hashFlow(); ignored by non-hashing pickers.
  // excluded: empty, or one entry per candidate; nonzero means "must not be picked" (a
  // backend already tried for this flow, or one that is down). Hashing pickers keep every
  // non-excluded key where it was: only keys whose first choice is excluded move.
  virtual uint32_t pick(uint64_t flow_hash, std::span<const uint8_t> excluded) const = 0;
};

// Throws std::invalid_argument for options a config validator should have refused.
std::unique_ptr<Picker> makePicker(const PickerOptions& options, std::vector<Candidate> candidates);

// The Maglev lookup table (Eisenbud et al., NSDI 2016, section 3.4): table[i] is a candidate
// index, or kNone when every weight is 0. Deterministic for a given candidate list and size.
// Exposed so the XDP path can program the kernel with the very same table.
std::vector<uint32_t> buildMaglevTable(std::span<const Candidate> candidates, uint32_t size);

}  // namespace fulcrum::balance
