#include "udp/session_table.hpp"

#include <netinet/in.h>

#include "fulcrum/flow_hash.hpp"

namespace fulcrum::udp {

bool ClientKey::fromSockaddr(const sockaddr* sa, ClientKey& out) {
  out = ClientKey{};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    std::memcpy(out.addr, &in->sin_addr, 4);
    out.port = in->sin_port;
    out.family = AF_INET;
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(out.addr, &in6->sin6_addr, 16);
    out.scope_id = in6->sin6_scope_id;
    out.port = in6->sin6_port;
    out.family = AF_INET6;
    return true;
  }
  return false;
}

size_t ClientKeyHash::operator()(const ClientKey& key) const {
  return static_cast<size_t>(hashBytes(&key, sizeof(key)));
}

SessionNode* SessionTable::find(const ClientKey& key) const {
  const auto it = map_.find(key);
  return it == map_.end() ? nullptr : it->second;
}

bool SessionTable::insert(SessionNode* node, uint64_t now_ms) {
  if (!map_.emplace(node->key, node).second) {
    return false;
  }
  node->last_active_ms = now_ms;
  linkNewest(node);
  return true;
}

void SessionTable::touch(SessionNode* node, uint64_t now_ms) {
  node->last_active_ms = now_ms;
  if (node == newest_) {
    return;
  }
  unlinkOrder(node);
  linkNewest(node);
}

void SessionTable::erase(SessionNode* node) {
  map_.erase(node->key);
  unlinkOrder(node);
}

void SessionTable::unlinkOrder(SessionNode* node) {
  if (node->older != nullptr) {
    node->older->newer = node->newer;
  } else {
    oldest_ = node->newer;
  }
  if (node->newer != nullptr) {
    node->newer->older = node->older;
  } else {
    newest_ = node->older;
  }
  node->older = nullptr;
  node->newer = nullptr;
}

void SessionTable::linkNewest(SessionNode* node) {
  node->older = newest_;
  node->newer = nullptr;
  if (newest_ != nullptr) {
    newest_->newer = node;
  } else {
    oldest_ = node;
  }
  newest_ = node;
}

}  // namespace fulcrum::udp
