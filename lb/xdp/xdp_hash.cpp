#include "xdp/xdp_hash.hpp"

#include <netinet/in.h>

#include <cstring>

namespace fulcrum::xdp {

namespace {

void putAddress(const sockaddr* sa, uint32_t out[4], uint16_t* port, uint8_t* family) {
  if (sa != nullptr && sa->sa_family == AF_INET) {
    sockaddr_in v4;
    std::memcpy(&v4, sa, sizeof(v4));
    std::memcpy(&out[0], &v4.sin_addr, 4);
    *port = v4.sin_port;
    *family = FULCRUM_XDP_FAMILY_V4;
    return;
  }
  if (sa != nullptr && sa->sa_family == AF_INET6) {
    sockaddr_in6 v6;
    std::memcpy(&v6, sa, sizeof(v6));
    *port = v6.sin6_port;
    if (IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr)) {
      std::memcpy(&out[0], v6.sin6_addr.s6_addr + 12, 4);
      *family = FULCRUM_XDP_FAMILY_V4;
      return;
    }
    std::memcpy(out, v6.sin6_addr.s6_addr, 16);
    *family = FULCRUM_XDP_FAMILY_V6;
  }
}

}  // namespace

fulcrum_flow makeFlow(Protocol protocol, const sockaddr* client, const sockaddr* local) {
  fulcrum_flow flow;
  std::memset(&flow, 0, sizeof(flow));
  uint8_t local_family = 0;
  putAddress(client, flow.src, &flow.sport, &flow.family);
  putAddress(local, flow.dst, &flow.dport, &local_family);
  flow.proto = protocol == Protocol::Udp ? IPPROTO_UDP : IPPROTO_TCP;
  return flow;
}

uint8_t hashKeyCode(HashKey key) {
  switch (key) {
    case HashKey::SourceIp:
      return FULCRUM_XDP_HASH_SOURCE_IP;
    case HashKey::SourceIpPort:
      return FULCRUM_XDP_HASH_SOURCE_IP_PORT;
    case HashKey::FiveTuple:
      return FULCRUM_XDP_HASH_FIVE_TUPLE;
  }
  return FULCRUM_XDP_HASH_SOURCE_IP;
}

uint64_t xdpFlowHash(HashKey key, Protocol protocol, const sockaddr* client,
                     const sockaddr* local) {
  const fulcrum_flow flow = makeFlow(protocol, client, local);
  return fulcrum_xdp_flow_hash(&flow, hashKeyCode(key));
}

}  // namespace fulcrum::xdp
