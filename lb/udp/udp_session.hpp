#pragma once

// One UDP session: a client address and port, the backend picked at its first datagram and
// the connected socket through which its datagrams reach that backend. Replies come back on
// that socket (which is how they are told apart from other clients' replies) and leave
// through the listener's socket, from the address the client sent to. An ICMP unreachable
// from the backend surfaces on the same socket as ECONNREFUSED.
//
// Sessions are created, used and destroyed by their udp::Listener on its worker's loop; the
// memory is freed in the poll handle's close callback.

#include <uv.h>

#include <sys/socket.h>

#include <cstdint>
#include <memory>

#include "pool/pool.hpp"
#include "tcp/proxy_header.hpp"
#include "udp/datagram_batch.hpp"
#include "udp/session_table.hpp"

namespace fulcrum::udp {

class Listener;

struct Session : SessionNode {
  Listener* listener = nullptr;
  int fd = -1;     // Connected to the backend; closed when the session ends.
  uv_poll_t poll;  // Readable: replies or an ICMP error.

  sockaddr_storage client{};  // Where replies go.
  socklen_t client_len = 0;
  LocalAddress local;  // The address the client sent to (wildcard listeners only).

  std::shared_ptr<const pool::PoolSnapshot> snapshot;  // Keeps backend alive.
  const pool::Backend* backend = nullptr;
  uint32_t close_generation = 0;  // backend->stats->close_generation at the pick.

  uint64_t requests = 0;  // Client datagrams handed to the backend socket.
  uint64_t replies = 0;   // Datagrams read from the backend socket.
  uint64_t bytes_to_backend = 0;
  uint64_t bytes_from_backend = 0;
  uint64_t opened_ms = 0;
  // The listener's replies setting when the session opened; a reload applies to new
  // sessions only.
  uint32_t expected_replies = 0;
  bool ending = false;

  // Sent in front of every datagram to the backend when the pool asks for PROXY v2.
  uint8_t proxy_header[tcp::kMaxProxyHeaderBytes];
  uint8_t proxy_header_len = 0;
  // IP_PKTINFO / IPV6_PKTINFO for replies when the listener is bound to a wildcard.
  alignas(cmsghdr) uint8_t reply_control[DatagramBatch::kControlBytes];
  uint8_t reply_control_len = 0;
};

}  // namespace fulcrum::udp
