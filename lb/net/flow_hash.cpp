#include "fulcrum/flow_hash.hpp"

#include <netinet/in.h>

#include <cstring>

#include <xxhash.h>

namespace fulcrum {

namespace {

// The seed of every flow hash: ASCII "FULCRUM1". Changing it remaps every flow on every node,
// so it changes only together with a note in the release that hashing is not compatible.
constexpr uint64_t kFlowSeed = 0x46554c4352554d31ULL;

// Family tags written in front of each address, so an IPv4 address and an IPv6 address whose
// bytes happen to match can never produce the same input.
constexpr uint8_t kTagNone = 0;
constexpr uint8_t kTagV4 = 4;
constexpr uint8_t kTagV6 = 6;

// IP protocol numbers (IANA), so the five-tuple input means the same as on the wire.
constexpr uint8_t kIpProtoTcp = 6;
constexpr uint8_t kIpProtoUdp = 17;

// Longest input: two endpoints (tag, 16 address bytes, 2 port bytes) and a protocol byte.
constexpr size_t kMaxFlowBytes = 2 * (1 + 16 + 2) + 1;

// A fixed-size buffer the hash input is laid out in, so hashing a flow never allocates.
class FlowBytes {
 public:
  void put(const void* data, size_t len) {
    std::memcpy(bytes_ + len_, data, len);
    len_ += len;
  }

  void putByte(uint8_t value) { put(&value, 1); }

  const uint8_t* data() const { return bytes_; }
  size_t size() const { return len_; }

 private:
  uint8_t bytes_[kMaxFlowBytes] = {};
  size_t len_ = 0;
};

// Appends one endpoint: family tag, address bytes and, when with_port, the port exactly as
// it sits in the sockaddr (network byte order, so the input is the same on any host).
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is written as the IPv4 address it carries:
// a dual-stack listener sees IPv4 clients that way, and they must land where a plain IPv4
// listener would send them. A null or non-IP address (AF_UNIX, AF_UNSPEC) is written as an
// empty tag and a zero port, so such flows still hash, all to one value.
void putEndpoint(FlowBytes& out, const sockaddr* sa, bool with_port) {
  const uint8_t zero_port[2] = {0, 0};

  if (sa != nullptr && sa->sa_family == AF_INET) {
    sockaddr_in v4;
    std::memcpy(&v4, sa, sizeof(v4));
    out.putByte(kTagV4);
    out.put(&v4.sin_addr, 4);
    if (with_port) {
      out.put(&v4.sin_port, 2);
    }
    return;
  }

  if (sa != nullptr && sa->sa_family == AF_INET6) {
    sockaddr_in6 v6;
    std::memcpy(&v6, sa, sizeof(v6));
    if (IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr)) {
      out.putByte(kTagV4);
      out.put(v6.sin6_addr.s6_addr + 12, 4);
    } else {
      out.putByte(kTagV6);
      out.put(v6.sin6_addr.s6_addr, 16);
    }
    if (with_port) {
      out.put(&v6.sin6_port, 2);
    }
    return;
  }

  out.putByte(kTagNone);
  if (with_port) {
    out.put(zero_port, 2);
  }
}

}  // namespace

uint64_t hashFlow(HashKey key, Protocol protocol, const sockaddr* client, const sockaddr* local) {
  FlowBytes bytes;

  switch (key) {
    case HashKey::SourceIp:
      putEndpoint(bytes, client, false);
      break;
    case HashKey::SourceIpPort:
      putEndpoint(bytes, client, true);
      break;
    case HashKey::FiveTuple:
      putEndpoint(bytes, client, true);
      bytes.putByte(protocol == Protocol::Udp ? kIpProtoUdp : kIpProtoTcp);
      putEndpoint(bytes, local, true);
      break;
  }

  return hashBytes(bytes.data(), bytes.size(), kFlowSeed);
}

uint64_t hashBytes(const void* data, size_t len, uint64_t seed) {
  return XXH3_64bits_withSeed(data, len, seed);
}

}  // namespace fulcrum
