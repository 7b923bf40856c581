// The UDP session table: lookups by client address and port, and the least-recently-active
// order that idle expiry and evict_oldest read from its oldest end.

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "fulcrum/endpoint.hpp"
#include "udp/session_table.hpp"

using fulcrum::Endpoint;
using fulcrum::udp::ClientKey;
using fulcrum::udp::SessionNode;
using fulcrum::udp::SessionTable;

namespace {

ClientKey key(const char* address) {
  ClientKey k;
  REQUIRE(ClientKey::fromSockaddr(Endpoint::parse(address)->sa(), k));
  return k;
}

std::vector<SessionNode*> order(const SessionTable& table) {
  std::vector<SessionNode*> out;
  for (SessionNode* n = table.oldest(); n != nullptr; n = n->newer) {
    out.push_back(n);
  }
  return out;
}

}  // namespace

// A session is the client's address and port: each part tells sessions apart, the same
// address and port always gives the same key, whatever else the sockaddr held.
TEST_CASE("client keys differ by address, port and family", "[udp]") {
  CHECK(key("127.0.0.1:5000") == key("127.0.0.1:5000"));
  CHECK_FALSE(key("127.0.0.1:5000") == key("127.0.0.1:5001"));
  CHECK_FALSE(key("127.0.0.1:5000") == key("127.0.0.2:5000"));
  CHECK_FALSE(key("[::1]:5000") == key("127.0.0.1:5000"));

  sockaddr_storage noisy;
  std::memset(&noisy, 0xAB, sizeof(noisy));
  const Endpoint e = *Endpoint::parse("10.1.2.3:53");
  std::memcpy(&noisy, e.sa(), e.len());
  ClientKey k;
  REQUIRE(ClientKey::fromSockaddr(reinterpret_cast<const sockaddr*>(&noisy), k));
  CHECK(k == key("10.1.2.3:53"));
  CHECK(fulcrum::udp::ClientKeyHash{}(k) == fulcrum::udp::ClientKeyHash{}(key("10.1.2.3:53")));
}

TEST_CASE("client keys refuse families other than IPv4 and IPv6", "[udp]") {
  sockaddr sa{};
  sa.sa_family = AF_UNIX;
  ClientKey k;
  CHECK_FALSE(ClientKey::fromSockaddr(&sa, k));
}

// Insert, find, refuse a duplicate, erase.
TEST_CASE("session table finds what was inserted until it is erased", "[udp]") {
  SessionTable table;
  SessionNode a, b;
  a.key = key("127.0.0.1:1000");
  b.key = key("[::1]:1000");

  REQUIRE(table.insert(&a, 10));
  REQUIRE(table.insert(&b, 20));
  CHECK(table.size() == 2);
  CHECK(table.find(a.key) == &a);
  CHECK(table.find(b.key) == &b);
  CHECK(table.find(key("127.0.0.1:1001")) == nullptr);

  SessionNode again;
  again.key = a.key;
  CHECK_FALSE(table.insert(&again, 30));
  CHECK(table.find(a.key) == &a);

  table.erase(&a);
  CHECK(table.find(a.key) == nullptr);
  CHECK(table.size() == 1);
  CHECK(order(table) == std::vector<SessionNode*>{&b});
}

// The oldest end is always the least recently active session, so a sweep and an eviction
// read only the front of the list.
TEST_CASE("session table keeps least recently active order", "[udp]") {
  SessionTable table;
  SessionNode n[4];
  for (int i = 0; i < 4; ++i) {
    n[i].key = key(("127.0.0.1:" + std::to_string(2000 + i)).c_str());
    REQUIRE(table.insert(&n[i], 100 + i));
  }
  CHECK(order(table) == std::vector<SessionNode*>{&n[0], &n[1], &n[2], &n[3]});

  table.touch(&n[0], 200);
  table.touch(&n[2], 201);
  CHECK(order(table) == std::vector<SessionNode*>{&n[1], &n[3], &n[0], &n[2]});
  CHECK(table.oldest()->last_active_ms == 101);

  table.touch(&n[2], 202);  // Already newest: stays.
  CHECK(order(table).back() == &n[2]);
  CHECK(n[2].last_active_ms == 202);

  table.erase(&n[3]);
  table.erase(&n[2]);
  CHECK(order(table) == std::vector<SessionNode*>{&n[1], &n[0]});
  table.erase(&n[1]);
  table.erase(&n[0]);
  CHECK(table.oldest() == nullptr);
  CHECK(table.size() == 0);
}
