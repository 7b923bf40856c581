// PROXY protocol headers as a backend would parse them.

#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "fulcrum/endpoint.hpp"
#include "tcp/proxy_header.hpp"

using fulcrum::Endpoint;
using fulcrum::ProxyProtocol;
using fulcrum::tcp::buildProxyHeader;
using fulcrum::tcp::kMaxProxyHeaderBytes;

namespace {

std::string header(ProxyProtocol version, const char* client, const char* local) {
  const Endpoint c = *Endpoint::parse(client);
  const Endpoint l = *Endpoint::parse(local);
  uint8_t out[kMaxProxyHeaderBytes];
  const size_t n = buildProxyHeader(version, c.sa(), l.sa(), out);
  return std::string(reinterpret_cast<const char*>(out), n);
}

const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);

}  // namespace

// v1 is one text line naming both endpoints, in the family the client used.
TEST_CASE("proxy v1 names client and local address for IPv4 and IPv6", "[proxy]") {
  CHECK(header(ProxyProtocol::V1, "192.0.2.10:51000", "127.0.0.1:6380") ==
        "PROXY TCP4 192.0.2.10 127.0.0.1 51000 6380\r\n");
  CHECK(header(ProxyProtocol::V1, "[2001:db8::7]:4000", "[::1]:443") ==
        "PROXY TCP6 2001:db8::7 ::1 4000 443\r\n");
}

// The longest possible v1 line still fits the buffer the splicer reserves.
TEST_CASE("proxy v1 with two full-length IPv6 addresses fits", "[proxy]") {
  const std::string h =
      header(ProxyProtocol::V1, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
             "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535");
  CHECK(h.size() <= 107);
  CHECK(h.substr(0, 11) == "PROXY TCP6 ");
  CHECK(h.substr(h.size() - 2) == "\r\n");
}

// A client reaching an IPv6 listener through an IPv4-mapped address is announced as IPv4.
TEST_CASE("proxy headers announce IPv4-mapped clients as IPv4", "[proxy]") {
  CHECK(header(ProxyProtocol::V1, "[::ffff:10.1.2.3]:1234", "[::ffff:127.0.0.1]:80") ==
        "PROXY TCP4 10.1.2.3 127.0.0.1 1234 80\r\n");
  const std::string v2 = header(ProxyProtocol::V2, "[::ffff:10.1.2.3]:1234",
                                "[::ffff:127.0.0.1]:80");
  REQUIRE(v2.size() == 28);
  CHECK(static_cast<uint8_t>(v2[13]) == 0x11);
}

// v2 is the binary form: signature, version/command, family, length, addresses, ports.
TEST_CASE("proxy v2 IPv4 block is byte-exact", "[proxy]") {
  const std::string h = header(ProxyProtocol::V2, "192.0.2.10:51000", "127.0.0.1:6380");
  REQUIRE(h.size() == 16 + 12);
  CHECK(h.substr(0, 12) == kSignature);
  CHECK(static_cast<uint8_t>(h[12]) == 0x21);
  CHECK(static_cast<uint8_t>(h[13]) == 0x11);
  CHECK(static_cast<uint8_t>(h[14]) == 0);
  CHECK(static_cast<uint8_t>(h[15]) == 12);
  const uint8_t expected_addrs[12] = {192, 0, 2, 10, 127, 0, 0, 1, 0xC7, 0x38, 0x18, 0xEC};
  CHECK(std::memcmp(h.data() + 16, expected_addrs, 12) == 0);
}

TEST_CASE("proxy v2 IPv6 block carries 16-byte addresses", "[proxy]") {
  const std::string h = header(ProxyProtocol::V2, "[2001:db8::7]:4000", "[::1]:443");
  REQUIRE(h.size() == 16 + 36);
  CHECK(static_cast<uint8_t>(h[13]) == 0x21);
  CHECK(static_cast<uint8_t>(h[15]) == 36);
  CHECK(static_cast<uint8_t>(h[16]) == 0x20);
  CHECK(static_cast<uint8_t>(h[17]) == 0x01);
  CHECK(static_cast<uint8_t>(h[16 + 31]) == 1);  // ::1
  CHECK(static_cast<uint8_t>(h[16 + 32]) == 0x0F);  // 4000 = 0x0FA0
  CHECK(static_cast<uint8_t>(h[16 + 33]) == 0xA0);
}

// Mixed families cannot be expressed; the specification's fallbacks are used.
TEST_CASE("proxy headers fall back to UNKNOWN / LOCAL for mixed families", "[proxy]") {
  CHECK(header(ProxyProtocol::V1, "192.0.2.10:1", "[::1]:2") == "PROXY UNKNOWN\r\n");
  const std::string v2 = header(ProxyProtocol::V2, "192.0.2.10:1", "[::1]:2");
  REQUIRE(v2.size() == 16);
  CHECK(static_cast<uint8_t>(v2[12]) == 0x20);
  CHECK(header(ProxyProtocol::Off, "192.0.2.10:1", "127.0.0.1:2").empty());
}

namespace {

std::string datagramHeader(ProxyProtocol version, const char* client, const char* local) {
  const Endpoint c = *Endpoint::parse(client);
  const Endpoint l = *Endpoint::parse(local);
  uint8_t out[kMaxProxyHeaderBytes];
  const size_t n = buildProxyHeader(version, c.sa(), l.sa(), out,
                                    fulcrum::tcp::ProxyTransport::Datagram);
  return std::string(reinterpret_cast<const char*>(out), n);
}

}  // namespace

// A UDP listener's v2 header differs from the TCP one only in the transport nibble.
TEST_CASE("proxy v2 for datagrams announces DGRAM over IPv4 and IPv6", "[proxy]") {
  const std::string tcp4 = header(ProxyProtocol::V2, "192.0.2.10:51000", "127.0.0.1:53");
  const std::string udp4 = datagramHeader(ProxyProtocol::V2, "192.0.2.10:51000", "127.0.0.1:53");
  REQUIRE(udp4.size() == tcp4.size());
  CHECK(static_cast<uint8_t>(udp4[13]) == 0x12);
  CHECK(udp4.substr(0, 13) == tcp4.substr(0, 13));
  CHECK(udp4.substr(14) == tcp4.substr(14));

  const std::string udp6 = datagramHeader(ProxyProtocol::V2, "[2001:db8::7]:4000", "[::1]:53");
  REQUIRE(udp6.size() == 16 + 36);
  CHECK(static_cast<uint8_t>(udp6[13]) == 0x22);
}

// v1 has no UDP form, so nothing is written rather than a header that lies about the transport.
TEST_CASE("proxy v1 writes nothing for datagrams", "[proxy]") {
  CHECK(datagramHeader(ProxyProtocol::V1, "192.0.2.10:1", "127.0.0.1:2").empty());
  CHECK(datagramHeader(ProxyProtocol::V2, "192.0.2.10:1", "[::1]:2").size() == 16);
}
