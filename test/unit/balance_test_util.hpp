#pragma once

// Helpers for the picker tests: candidate lists from weights, flow hashes built from real
// socket addresses, and pick counting. Only builds sockaddrs in memory; opens no socket.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "fulcrum/balance.hpp"
#include "fulcrum/flow_hash.hpp"

namespace fulcrum::balance::testing {

// Backends 127.0.0.1:7000, :7001, ... with the given weights.
inline std::vector<Candidate> candidatesWithWeights(const std::vector<uint32_t>& weights) {
  std::vector<Candidate> out;
  for (size_t i = 0; i < weights.size(); ++i) {
    Candidate c;
    c.key = "127.0.0.1:" + std::to_string(7000 + i);
    c.weight = weights[i];
    out.push_back(c);
  }
  return out;
}

inline sockaddr_in clientV4(uint32_t host_order_ip, uint16_t port) {
  sockaddr_in sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(host_order_ip);
  sa.sin_port = htons(port);
  return sa;
}

// count distinct flow hashes of clients 127.x.y.z with varying ports, hashed by
// source_ip_port as a listener would hash them.
inline std::vector<uint64_t> distinctFlowHashes(size_t count) {
  std::vector<uint64_t> hashes;
  hashes.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const uint32_t ip = 0x7f000000u | static_cast<uint32_t>((i * 2654435761u) & 0x00ffffffu);
    const sockaddr_in sa = clientV4(ip, static_cast<uint16_t>(1024 + i % 60000));
    hashes.push_back(hashFlow(HashKey::SourceIpPort, Protocol::Tcp,
                              reinterpret_cast<const sockaddr*>(&sa), nullptr));
  }
  return hashes;
}

// Picks for each hash, in order.
inline std::vector<uint32_t> pickAll(const Picker& picker, const std::vector<uint64_t>& hashes,
                                     std::span<const uint8_t> excluded = {}) {
  std::vector<uint32_t> picks;
  picks.reserve(hashes.size());
  for (uint64_t h : hashes) {
    picks.push_back(picker.pick(h, excluded));
  }
  return picks;
}

// How often each candidate index was picked; kNone picks are counted in the last slot.
inline std::vector<size_t> countPicks(const std::vector<uint32_t>& picks, size_t candidates) {
  std::vector<size_t> counts(candidates + 1, 0);
  for (uint32_t p : picks) {
    counts[p == Picker::kNone ? candidates : p] += 1;
  }
  return counts;
}

// Largest |observed share - weight share| over all candidates, as a fraction of the total.
inline double maxShareError(const std::vector<size_t>& counts,
                            const std::vector<uint32_t>& weights) {
  size_t total_picks = 0;
  uint64_t total_weight = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    total_picks += counts[i];
    total_weight += weights[i];
  }
  double worst = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const double observed = static_cast<double>(counts[i]) / static_cast<double>(total_picks);
    const double expected = static_cast<double>(weights[i]) / static_cast<double>(total_weight);
    const double error = observed > expected ? observed - expected : expected - observed;
    worst = error > worst ? error : worst;
  }
  return worst;
}

// A pool of up to four candidates whose active-session counters the test sets directly.
struct FixedLoadPool {
  std::atomic<uint32_t> active[4];
  std::vector<Candidate> candidates;

  FixedLoadPool(std::vector<uint32_t> weights, std::vector<uint32_t> loads)
      : candidates(candidatesWithWeights(weights)) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      active[i].store(loads[i]);
      candidates[i].active = &active[i];
    }
  }
};

// The backend key each flow lands on, so pickers over different lists can be compared.
inline std::vector<std::string> chosenKeys(const Picker& picker,
                                           const std::vector<Candidate>& list,
                                           const std::vector<uint64_t>& hashes,
                                           std::span<const uint8_t> excluded = {}) {
  std::vector<std::string> out;
  out.reserve(hashes.size());
  for (uint64_t h : hashes) {
    const uint32_t index = picker.pick(h, excluded);
    out.push_back(index == Picker::kNone ? std::string("none") : list[index].key);
  }
  return out;
}

}  // namespace fulcrum::balance::testing
