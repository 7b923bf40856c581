#include "tcp/proxy_header.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include <fmt/format.h>

namespace fulcrum::tcp {

namespace {

// The 12-byte v2 signature, section 2.2 of the specification.
constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t kV2Proxy = 0x21;  // Version 2, command PROXY.
constexpr uint8_t kV2Local = 0x20;  // Version 2, command LOCAL.
constexpr uint8_t kV2Tcp4 = 0x11;   // AF_INET, STREAM.
constexpr uint8_t kV2Tcp6 = 0x21;   // AF_INET6, STREAM.
constexpr uint8_t kV2Udp4 = 0x12;   // AF_INET, DGRAM.
constexpr uint8_t kV2Udp6 = 0x22;   // AF_INET6, DGRAM.

// A client address reduced to the family it should be announced as.
struct IpAddress {
  int family = AF_UNSPEC;
  uint8_t bytes[16] = {};
  uint16_t port_be = 0;  // Network byte order.
};

IpAddress normalise(const sockaddr* sa) {
  IpAddress a;
  if (sa == nullptr) {
    return a;
  }

  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.family = AF_INET;
    std::memcpy(a.bytes, &in->sin_addr, 4);
    a.port_be = in->sin_port;
    return a;
  }

  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    a.port_be = in6->sin6_port;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      a.family = AF_INET;
      std::memcpy(a.bytes, in6->sin6_addr.s6_addr + 12, 4);
    } else {
      a.family = AF_INET6;
      std::memcpy(a.bytes, in6->sin6_addr.s6_addr, 16);
    }
  }
  return a;
}

size_t buildV1(const IpAddress& src, const IpAddress& dst, uint8_t* out) {
  char* text = reinterpret_cast<char*>(out);

  if (src.family == AF_UNSPEC || src.family != dst.family) {
    constexpr char kUnknown[] = "PROXY UNKNOWN\r\n";
    std::memcpy(text, kUnknown, sizeof(kUnknown) - 1);
    return sizeof(kUnknown) - 1;
  }

  char src_ip[INET6_ADDRSTRLEN];
  char dst_ip[INET6_ADDRSTRLEN];
  inet_ntop(src.family, src.bytes, src_ip, sizeof(src_ip));
  inet_ntop(dst.family, dst.bytes, dst_ip, sizeof(dst_ip));

  const char* proto = src.family == AF_INET ? "TCP4" : "TCP6";
  const auto result = fmt::format_to_n(text, kMaxProxyHeaderBytes, "PROXY {} {} {} {} {}\r\n",
                                       proto, src_ip, dst_ip, ntohs(src.port_be),
                                       ntohs(dst.port_be));
  return result.size;
}

size_t buildV2(const IpAddress& src, const IpAddress& dst, ProxyTransport transport,
               uint8_t* out) {
  std::memcpy(out, kV2Signature, sizeof(kV2Signature));
  uint8_t* p = out + sizeof(kV2Signature);

  if (src.family == AF_UNSPEC || src.family != dst.family) {
    // LOCAL with no address block: the receiver uses the real connection endpoints.
    p[0] = kV2Local;
    p[1] = 0x00;
    p[2] = 0;
    p[3] = 0;
    return sizeof(kV2Signature) + 4;
  }

  const size_t addr_len = src.family == AF_INET ? 4 : 16;
  const uint16_t block_len = static_cast<uint16_t>(2 * addr_len + 4);
  p[0] = kV2Proxy;
  if (transport == ProxyTransport::Datagram) {
    p[1] = src.family == AF_INET ? kV2Udp4 : kV2Udp6;
  } else {
    p[1] = src.family == AF_INET ? kV2Tcp4 : kV2Tcp6;
  }
  p[2] = static_cast<uint8_t>(block_len >> 8);
  p[3] = static_cast<uint8_t>(block_len & 0xff);
  p += 4;

  std::memcpy(p, src.bytes, addr_len);
  p += addr_len;
  std::memcpy(p, dst.bytes, addr_len);
  p += addr_len;
  std::memcpy(p, &src.port_be, 2);
  std::memcpy(p + 2, &dst.port_be, 2);
  return sizeof(kV2Signature) + 4 + block_len;
}

}  // namespace

size_t buildProxyHeader(ProxyProtocol version, const sockaddr* client, const sockaddr* local,
                        uint8_t* out, ProxyTransport transport) {
  const IpAddress src = normalise(client);
  const IpAddress dst = normalise(local);

  switch (version) {
    case ProxyProtocol::Off:
      return 0;
    case ProxyProtocol::V1:
      return transport == ProxyTransport::Stream ? buildV1(src, dst, out) : 0;
    case ProxyProtocol::V2:
      return buildV2(src, dst, transport, out);
  }
  return 0;
}

}  // namespace fulcrum::tcp
