// pick_dump: prints the picks of the deterministic pickers for 10,000 fixed flows over a
// fixed backend list, one "algorithm variant flow pick" line per pick.
//
// Run twice as separate processes, the outputs must match byte for byte: that is the
// fleet-consistency promise (no per-process seeds, no address-dependent ordering) checked
// end to end, from real sockaddrs through hashFlow to the picker. The ctest wrapper is
// compare_runs.cmake. Only builds addresses in memory; opens no socket.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "fulcrum/balance.hpp"
#include "fulcrum/flow_hash.hpp"

namespace {

using fulcrum::Algorithm;
using fulcrum::HashKey;
using fulcrum::Protocol;
using fulcrum::balance::Candidate;
using fulcrum::balance::Picker;
using fulcrum::balance::PickerOptions;

constexpr uint32_t kFlows = 10000;

struct Flow {
  sockaddr_storage client;
  sockaddr_storage local;
  HashKey key;
  Protocol protocol;
};

void setV4(sockaddr_storage* out, uint32_t host_order_ip, uint16_t port) {
  std::memset(out, 0, sizeof(*out));
  auto* sa = reinterpret_cast<sockaddr_in*>(out);
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(host_order_ip);
  sa->sin_port = htons(port);
}

// An address in 2001:db8::/32 (documentation prefix) ending in `low`, or the IPv4-mapped
// form of 127.x.y.z when mapped is set.
void setV6(sockaddr_storage* out, uint32_t low, uint16_t port, bool mapped) {
  std::memset(out, 0, sizeof(*out));
  auto* sa = reinterpret_cast<sockaddr_in6*>(out);
  sa->sin6_family = AF_INET6;
  sa->sin6_port = htons(port);
  uint8_t* bytes = sa->sin6_addr.s6_addr;
  if (mapped) {
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    bytes[12] = 127;
  } else {
    bytes[0] = 0x20;
    bytes[1] = 0x01;
    bytes[2] = 0x0d;
    bytes[3] = 0xb8;
    bytes[12] = static_cast<uint8_t>(low >> 24);
  }
  bytes[13] = static_cast<uint8_t>(low >> 16);
  bytes[14] = static_cast<uint8_t>(low >> 8);
  bytes[15] = static_cast<uint8_t>(low);
}

// Flows cycle through IPv4, IPv6 and IPv4-mapped clients and through the three hash keys,
// with both protocols, so every branch of hashFlow feeds the pickers.
std::vector<Flow> fixedFlows() {
  std::vector<Flow> flows(kFlows);
  const HashKey keys[] = {HashKey::SourceIp, HashKey::SourceIpPort, HashKey::FiveTuple};
  for (uint32_t i = 0; i < kFlows; ++i) {
    Flow& f = flows[i];
    const uint32_t low = (i * 2654435761u) & 0x00ffffffu;
    const auto port = static_cast<uint16_t>(1024 + (i * 7919u) % 60000);
    switch (i % 3) {
      case 0:
        setV4(&f.client, 0x7f000000u | low, port);
        setV4(&f.local, 0x7f000001u, 6380);
        break;
      case 1:
        setV6(&f.client, low, port, false);
        setV6(&f.local, 1, 6380, false);
        break;
      default:
        setV6(&f.client, low, port, true);
        setV6(&f.local, 1, 6380, true);
        break;
    }
    f.key = keys[(i / 3) % 3];
    f.protocol = (i / 9) % 2 == 0 ? Protocol::Tcp : Protocol::Udp;
  }
  return flows;
}

std::vector<Candidate> fixedBackends() {
  const uint32_t weights[] = {1, 2, 1, 3, 1, 0, 2};
  std::vector<Candidate> out;
  for (uint32_t i = 0; i < std::size(weights); ++i) {
    Candidate c;
    c.key = "127.0.0.1:" + std::to_string(7001 + i);
    c.weight = weights[i];
    out.push_back(c);
  }
  return out;
}

void dump(const char* name, Algorithm algorithm, const std::vector<Flow>& flows,
          const std::vector<uint64_t>& hashes) {
  PickerOptions options;
  options.algorithm = algorithm;
  options.maglev_table_size = 65537;
  options.ring_hash_vnodes = 160;
  const auto picker = fulcrum::balance::makePicker(options, fixedBackends());

  // Variant "all" excludes nothing; "excl" excludes backend 3 so the fallback paths run too.
  const std::vector<uint8_t> none;
  const std::vector<uint8_t> third = {0, 0, 0, 1, 0, 0, 0};
  const struct {
    const char* label;
    std::span<const uint8_t> excluded;
  } variants[] = {{"all", none}, {"excl", third}};

  for (const auto& variant : variants) {
    for (size_t i = 0; i < flows.size(); ++i) {
      std::printf("%s %s %zu %u\n", name, variant.label, i,
                  picker->pick(hashes[i], variant.excluded));
    }
  }
}

}  // namespace

int main() {
  const std::vector<Flow> flows = fixedFlows();
  std::vector<uint64_t> hashes;
  hashes.reserve(flows.size());
  for (const Flow& f : flows) {
    hashes.push_back(fulcrum::hashFlow(f.key, f.protocol,
                                       reinterpret_cast<const sockaddr*>(&f.client),
                                       reinterpret_cast<const sockaddr*>(&f.local)));
  }

  // Round-robin ignores the hash but starts every process at the same turn.
  dump("round_robin", Algorithm::RoundRobin, flows, hashes);
  dump("ring_hash", Algorithm::RingHash, flows, hashes);
  dump("maglev", Algorithm::Maglev, flows, hashes);
  return std::fflush(stdout) == 0 ? 0 : 1;
}
