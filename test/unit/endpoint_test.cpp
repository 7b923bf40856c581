#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <cstring>
#include <string>

#include "fulcrum/endpoint.hpp"

using fulcrum::Endpoint;

namespace {

std::string refusalOf(std::string_view text) {
  std::string error;
  if (Endpoint::parse(text, &error)) {
    return "(accepted)";
  }
  return error;
}

}  // namespace

// An IPv4 address parses into a sockaddr_in that the kernel would accept as is.
TEST_CASE("endpoint parses IPv4 host:port", "[endpoint]") {
  const auto endpoint = Endpoint::parse("127.0.0.1:6379");
  REQUIRE(endpoint);
  CHECK(endpoint->isV4());
  CHECK_FALSE(endpoint->isV6());
  CHECK(endpoint->port() == 6379);
  CHECK(endpoint->len() == sizeof(sockaddr_in));
  CHECK(endpoint->toString() == "127.0.0.1:6379");
  CHECK(endpoint->ipString() == "127.0.0.1");

  const auto* sin = reinterpret_cast<const sockaddr_in*>(endpoint->sa());
  CHECK(sin->sin_family == AF_INET);
  CHECK(sin->sin_port == htons(6379));
  CHECK(sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
}

// IPv6 needs brackets; the printed form is the canonical one, not the one typed.
TEST_CASE("endpoint parses bracketed IPv6", "[endpoint]") {
  const auto endpoint = Endpoint::parse("[0:0::1]:80");
  REQUIRE(endpoint);
  CHECK(endpoint->isV6());
  CHECK(endpoint->port() == 80);
  CHECK(endpoint->len() == sizeof(sockaddr_in6));
  CHECK(endpoint->toString() == "[::1]:80");
  CHECK(endpoint->ipString() == "::1");

  const auto mapped = Endpoint::parse("[::ffff:10.0.0.1]:53");
  REQUIRE(mapped);
  CHECK(mapped->isV6());
  CHECK(mapped->toString() == "[::ffff:10.0.0.1]:53");
}

// Port 0 (kernel chooses) and 65535 are the ends of the allowed range.
TEST_CASE("endpoint ports span 0 to 65535", "[endpoint]") {
  CHECK(Endpoint::parse("127.0.0.1:0")->port() == 0);
  CHECK(Endpoint::parse("[::]:65535")->port() == 65535);
  CHECK(refusalOf("127.0.0.1:65536") == "port \"65536\" is not a number from 0 to 65535");
  CHECK(refusalOf("127.0.0.1:123456") == "port \"123456\" is not a number from 0 to 65535");
  CHECK(refusalOf("127.0.0.1:+80") == "port \"+80\" is not a number from 0 to 65535");
  CHECK(refusalOf("[::1]:http") == "port \"http\" is not a number from 0 to 65535");
}

// Each refusal names the problem and shows the allowed form.
TEST_CASE("endpoint refuses malformed addresses with a reason", "[endpoint]") {
  CHECK(refusalOf("") ==
        "empty address; expected host:port such as 127.0.0.1:6379 or [::1]:6379");
  CHECK(refusalOf("127.0.0.1") ==
        "missing port; expected host:port such as 127.0.0.1:6379 or [::1]:6379");
  CHECK(refusalOf("127.0.0.1:") ==
        "missing port after ':'; expected host:port such as 127.0.0.1:6379 or [::1]:6379");
  CHECK(refusalOf(":80") ==
        "missing host before ':'; expected host:port such as 127.0.0.1:6379 or [::1]:6379");
  CHECK(refusalOf("localhost:80") ==
        "\"localhost\" is not a numeric IP address and host names are not resolved; use an "
        "address such as 127.0.0.1:6379 or [::1]:6379");
  CHECK(refusalOf("127.0.0.256:80") ==
        "\"127.0.0.256\" is not a valid IPv4 address; expected four decimal numbers 0..255 "
        "such as 127.0.0.1");
  CHECK(refusalOf("127.1:80") ==
        "\"127.1\" is not a valid IPv4 address; expected four decimal numbers 0..255 such as "
        "127.0.0.1");
  CHECK(refusalOf("::1:80") ==
        "\"::1:80\" looks like an IPv6 address without brackets; write it as [addr]:port "
        "such as [::1]:6379");
  CHECK(refusalOf("[::1:80") ==
        "missing ']' after the IPv6 address; expected [addr]:port such as [::1]:6379");
  CHECK(refusalOf("[::1]") == "missing port after [::1]; expected [addr]:port such as [::1]:6379");
  CHECK(refusalOf("[::1]80") ==
        "missing port after [::1]; expected [addr]:port such as [::1]:6379");
  CHECK(refusalOf("[::g]:80") ==
        "\"::g\" is not a valid IPv6 address; expected [addr]:port such as [::1]:6379");
  CHECK(refusalOf("[127.0.0.1]:80") ==
        "\"127.0.0.1\" is not a valid IPv6 address; expected [addr]:port such as [::1]:6379");
  CHECK(refusalOf("[fe80::1%eth0]:80") ==
        "\"fe80::1%eth0\" has a zone index, which is not supported; use a global or "
        "unique-local IPv6 address");
  CHECK(refusalOf(" 127.0.0.1:80") ==
        "address contains white space; expected host:port such as 127.0.0.1:6379 or "
        "[::1]:6379");
  // A NUL would end the text where the C parser reads it; the rest must not be ignored.
  using namespace std::string_view_literals;
  CHECK(refusalOf("127.0.0.1\0junk:80"sv) ==
        "address contains a control character; expected host:port such as 127.0.0.1:6379 or "
        "[::1]:6379");
  CHECK(refusalOf("127.0.0.1:80\x01"sv) ==
        "address contains a control character; expected host:port such as 127.0.0.1:6379 or "
        "[::1]:6379");
}

// Equality compares family, address and port, so two spellings of one address are equal.
TEST_CASE("endpoint equality ignores spelling", "[endpoint]") {
  CHECK(*Endpoint::parse("[::1]:80") == *Endpoint::parse("[0:0:0:0:0:0:0:1]:80"));
  CHECK_FALSE(*Endpoint::parse("[::1]:80") == *Endpoint::parse("[::1]:81"));
  CHECK_FALSE(*Endpoint::parse("127.0.0.1:80") == *Endpoint::parse("127.0.0.2:80"));
  CHECK_FALSE(*Endpoint::parse("127.0.0.1:80") == *Endpoint::parse("[::ffff:127.0.0.1]:80"));
  CHECK(Endpoint() == Endpoint());
}

// A default endpoint is empty and prints as "-"; setPort leaves it empty.
TEST_CASE("endpoint default is empty", "[endpoint]") {
  Endpoint endpoint;
  CHECK(endpoint.family() == AF_UNSPEC);
  CHECK(endpoint.len() == 0);
  CHECK(endpoint.port() == 0);
  CHECK(endpoint.toString() == "-");
  CHECK(endpoint.ipString() == "-");
  endpoint.setPort(80);
  CHECK(endpoint.port() == 0);
}

// setPort is how a bind port of 0 is replaced by the one the kernel chose.
TEST_CASE("endpoint setPort rewrites the port only", "[endpoint]") {
  auto v4 = *Endpoint::parse("127.0.0.1:0");
  v4.setPort(4242);
  CHECK(v4.toString() == "127.0.0.1:4242");

  auto v6 = *Endpoint::parse("[::1]:0");
  v6.setPort(4243);
  CHECK(v6.toString() == "[::1]:4243");
}

// fromSockaddr copies what the kernel hands back, including a link-local scope, and refuses
// families it does not know.
TEST_CASE("endpoint copies kernel socket addresses", "[endpoint]") {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(9001);
  inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
  const Endpoint v4 = Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&sin));
  CHECK(v4.toString() == "10.1.2.3:9001");
  CHECK(v4 == *Endpoint::parse("10.1.2.3:9001"));

  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(443);
  sin6.sin6_scope_id = 3;
  inet_pton(AF_INET6, "fe80::1", &sin6.sin6_addr);
  const Endpoint v6 = Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&sin6));
  CHECK(v6.toString() == "[fe80::1%3]:443");
  CHECK_FALSE(v6 == *Endpoint::parse("[fe80::1]:443"));

  sockaddr unix_like{};
  unix_like.sa_family = AF_UNIX;
  CHECK(Endpoint::fromSockaddr(&unix_like).family() == AF_UNSPEC);
  CHECK(Endpoint::fromSockaddr(nullptr).family() == AF_UNSPEC);
}
