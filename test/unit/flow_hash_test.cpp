// Flow hashing: which fields each hash key uses, IPv4-mapped IPv6 equivalence, and spread.

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>
#include <set>
#include <vector>

#include <xxhash.h>

#include "fulcrum/flow_hash.hpp"

using namespace fulcrum;

namespace {

sockaddr_in v4(const char* ip, uint16_t port) {
  sockaddr_in sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  REQUIRE(inet_pton(AF_INET, ip, &sa.sin_addr) == 1);
  return sa;
}

sockaddr_in6 v6(const char* ip, uint16_t port) {
  sockaddr_in6 sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(port);
  REQUIRE(inet_pton(AF_INET6, ip, &sa.sin6_addr) == 1);
  return sa;
}

template <typename T>
const sockaddr* sa(const T& addr) {
  return reinterpret_cast<const sockaddr*>(&addr);
}

const HashKey kAllKeys[] = {HashKey::SourceIp, HashKey::SourceIpPort, HashKey::FiveTuple};

}  // namespace

// A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they must hash like plain IPv4.
TEST_CASE("IPv4-mapped IPv6 hashes like the IPv4 address", "[flow_hash]") {
  const auto client4 = v4("127.0.0.7", 40000);
  const auto client6 = v6("::ffff:127.0.0.7", 40000);
  const auto local4 = v4("127.0.0.1", 6380);
  const auto local6 = v6("::ffff:127.0.0.1", 6380);

  for (HashKey key : kAllKeys) {
    INFO("hash key " << static_cast<int>(key));
    for (Protocol protocol : {Protocol::Tcp, Protocol::Udp}) {
      const uint64_t plain = hashFlow(key, protocol, sa(client4), sa(local4));
      CHECK(hashFlow(key, protocol, sa(client6), sa(local6)) == plain);
      CHECK(hashFlow(key, protocol, sa(client6), sa(local4)) == plain);
      CHECK(hashFlow(key, protocol, sa(client4), sa(local6)) == plain);
    }
  }

  // A real IPv6 address with the same low bytes is a different client.
  const auto native6 = v6("::127.0.0.7", 40000);
  CHECK(hashFlow(HashKey::SourceIp, Protocol::Tcp, sa(native6), nullptr) !=
        hashFlow(HashKey::SourceIp, Protocol::Tcp, sa(client4), nullptr));
}

// source_ip uses the client address only.
TEST_CASE("source_ip ignores ports, protocol and local address", "[flow_hash]") {
  const auto local_a = v4("127.0.0.1", 6380);
  const auto local_b = v4("127.0.0.2", 6381);
  const uint64_t base =
      hashFlow(HashKey::SourceIp, Protocol::Tcp, sa(v4("127.1.2.3", 1111)), sa(local_a));

  CHECK(hashFlow(HashKey::SourceIp, Protocol::Udp, sa(v4("127.1.2.3", 2222)), sa(local_b)) ==
        base);
  CHECK(hashFlow(HashKey::SourceIp, Protocol::Tcp, sa(v4("127.1.2.4", 1111)), sa(local_a)) !=
        base);
}

// source_ip_port adds the client port but still ignores the local side.
TEST_CASE("source_ip_port adds the client port only", "[flow_hash]") {
  const auto client = v4("127.1.2.3", 1111);
  const uint64_t base =
      hashFlow(HashKey::SourceIpPort, Protocol::Tcp, sa(client), sa(v4("127.0.0.1", 6380)));

  CHECK(hashFlow(HashKey::SourceIpPort, Protocol::Udp, sa(client), sa(v4("127.0.0.2", 9))) ==
        base);
  CHECK(hashFlow(HashKey::SourceIpPort, Protocol::Tcp, sa(v4("127.1.2.3", 1112)), nullptr) !=
        base);
  CHECK(hashFlow(HashKey::SourceIp, Protocol::Tcp, sa(client), nullptr) != base);
}

// five_tuple changes with every one of its fields.
TEST_CASE("five_tuple uses protocol and both endpoints", "[flow_hash]") {
  const auto client = v4("127.1.2.3", 1111);
  const auto local = v4("127.0.0.1", 6380);
  const uint64_t base = hashFlow(HashKey::FiveTuple, Protocol::Tcp, sa(client), sa(local));

  CHECK(hashFlow(HashKey::FiveTuple, Protocol::Tcp, sa(client), sa(local)) == base);
  CHECK(hashFlow(HashKey::FiveTuple, Protocol::Udp, sa(client), sa(local)) != base);
  CHECK(hashFlow(HashKey::FiveTuple, Protocol::Tcp, sa(client), sa(v4("127.0.0.2", 6380))) !=
        base);
  CHECK(hashFlow(HashKey::FiveTuple, Protocol::Tcp, sa(client), sa(v4("127.0.0.1", 6381))) !=
        base);
  CHECK(hashFlow(HashKey::FiveTuple, Protocol::Tcp, sa(v4("127.1.2.3", 1112)), sa(local)) !=
        base);
  CHECK(hashFlow(HashKey::FiveTuple, Protocol::Tcp, sa(v4("127.1.2.4", 1111)), sa(local)) !=
        base);
}

// Client and local sides are not interchangeable: swapping them is another flow.
TEST_CASE("five_tuple is direction-sensitive", "[flow_hash]") {
  const auto a = v4("127.1.2.3", 1111);
  const auto b = v4("127.0.0.1", 6380);
  CHECK(hashFlow(HashKey::FiveTuple, Protocol::Tcp, sa(a), sa(b)) !=
        hashFlow(HashKey::FiveTuple, Protocol::Tcp, sa(b), sa(a)));
}

// 100k clients give 100k distinct hashes that fill 64 buckets evenly (each within 10% of
// the mean; a uniform hash has sd about 2.5% of the mean here).
TEST_CASE("flow hashes spread evenly", "[flow_hash]") {
  constexpr size_t kClients = 100000;
  constexpr size_t kBuckets = 64;
  std::set<uint64_t> seen;
  std::vector<size_t> buckets(kBuckets, 0);
  for (uint32_t i = 0; i < kClients; ++i) {
    sockaddr_in client;
    std::memset(&client, 0, sizeof(client));
    client.sin_family = AF_INET;
    client.sin_addr.s_addr = htonl(0x7f000000u + 1 + i);  // 127.0.0.1 upwards, sequential.
    const uint64_t h = hashFlow(HashKey::SourceIp, Protocol::Tcp, sa(client), nullptr);
    seen.insert(h);
    buckets[h % kBuckets] += 1;
  }
  CHECK(seen.size() == kClients);
  const double mean = static_cast<double>(kClients) / kBuckets;
  for (size_t b = 0; b < kBuckets; ++b) {
    INFO("bucket " << b << " holds " << buckets[b]);
    CHECK(static_cast<double>(buckets[b]) > mean * 0.9);
    CHECK(static_cast<double>(buckets[b]) < mean * 1.1);
  }
}

// Sockets that are not IP (or missing) still hash, all to one stable value, without reading
// past the address.
TEST_CASE("non-IP addresses hash to a stable value", "[flow_hash]") {
  sockaddr_un unix_client;
  std::memset(&unix_client, 0, sizeof(unix_client));
  unix_client.sun_family = AF_UNIX;
  std::strcpy(unix_client.sun_path, "/tmp/fulcrum-test.sock");

  const uint64_t from_unix = hashFlow(HashKey::SourceIpPort, Protocol::Tcp, sa(unix_client),
                                      nullptr);
  CHECK(hashFlow(HashKey::SourceIpPort, Protocol::Tcp, nullptr, nullptr) == from_unix);
  CHECK(hashFlow(HashKey::SourceIpPort, Protocol::Tcp, sa(v4("127.0.0.1", 0)), nullptr) !=
        from_unix);
}

// hashBytes is XXH3-64 with the seed it is given, which is what other tools can reproduce.
TEST_CASE("hashBytes is seeded XXH3-64", "[flow_hash]") {
  const char text[] = "127.0.0.1:7001";
  CHECK(hashBytes(text, sizeof(text) - 1, 42) == XXH3_64bits_withSeed(text, sizeof(text) - 1, 42));
  CHECK(hashBytes(text, sizeof(text) - 1) == XXH3_64bits_withSeed(text, sizeof(text) - 1, 0));
  CHECK(hashBytes(text, sizeof(text) - 1, 1) != hashBytes(text, sizeof(text) - 1, 2));
}
