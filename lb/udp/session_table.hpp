#pragma once

// The per-worker map from a client's address and port to its UDP session, with the sessions
// kept in least-recently-active order. The order serves both ends of a session's life: idle
// expiry reads the oldest entries only, and evict_oldest takes the very first one, so neither
// ever walks the whole table.
//
// Used on one worker thread only; no locks. The table owns no session: it links the nodes
// the caller inserts and forgets them on erase.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <unordered_map>

namespace fulcrum::udp {

// A client's IP address and port in a fixed layout, so it hashes and compares as bytes.
// IPv4 uses the first 4 bytes of addr; the rest stay zero.
struct ClientKey {
  uint8_t addr[16] = {};
  uint32_t scope_id = 0;  // IPv6 link-local scope; 0 otherwise.
  uint16_t port = 0;      // Network byte order.
  uint16_t family = 0;    // AF_INET or AF_INET6.

  // Returns false (and leaves the key empty) for a family other than IPv4 or IPv6.
  static bool fromSockaddr(const sockaddr* sa, ClientKey& out);

  bool operator==(const ClientKey& other) const {
    return std::memcmp(this, &other, sizeof(ClientKey)) == 0;
  }
};

static_assert(sizeof(ClientKey) == 24, "ClientKey must have no padding: it is hashed as bytes");

struct ClientKeyHash {
  size_t operator()(const ClientKey& key) const;
};

// What the table links: embedded in each session. last_active_ms is the loop time of the
// session's last datagram either way.
struct SessionNode {
  ClientKey key;
  uint64_t last_active_ms = 0;
  SessionNode* older = nullptr;  // Towards the least recently active end.
  SessionNode* newer = nullptr;
};

class SessionTable {
 public:
  SessionTable() = default;
  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

  // The node for key, or nullptr. No allocation.
  SessionNode* find(const ClientKey& key) const;

  // Links a node whose key is not in the table yet, as the most recently active one.
  // Allocates one map entry; returns false if the key is already present.
  bool insert(SessionNode* node, uint64_t now_ms);

  // Marks node active at now_ms: it moves to the most recently active end.
  void touch(SessionNode* node, uint64_t now_ms);

  // Unlinks node (which must be in the table).
  void erase(SessionNode* node);

  // The least recently active node, or nullptr when empty; node->newer walks on from there.
  SessionNode* oldest() const { return oldest_; }
  size_t size() const { return map_.size(); }

 private:
  void unlinkOrder(SessionNode* node);
  void linkNewest(SessionNode* node);

  std::unordered_map<ClientKey, SessionNode*, ClientKeyHash> map_;
  SessionNode* oldest_ = nullptr;
  SessionNode* newest_ = nullptr;
};

}  // namespace fulcrum::udp
