#pragma once

// Counters of one UDP listener, shared by every worker that serves it and updated with
// relaxed atomics. All UDP counter names live here so they can be reviewed together; the
// control plane prints them in the "udp listener totals" line when Fulcrum stops. Including
// this header pulls in nothing but <atomic>.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace fulcrum::udp {

// Why a datagram was not delivered. Every datagram Fulcrum reads and does not pass on is
// counted under exactly one of these.
enum class Drop : uint8_t {
  NoBackend,           // No backend could be picked for a new session.
  TableFull,           // New client while the session table was full (or nothing to evict).
  Truncated,           // Larger than the receive buffer; never forwarded in part.
  SocketError,         // No backend socket for a new session (out of descriptors, ...).
  BackendSendError,    // The backend socket refused the datagram (buffer full, too large).
  BackendUnreachable,  // The backend answered with ICMP unreachable.
  ClientSendError,     // The listener socket refused a reply (buffer full, ...).
  Draining,            // New client while Fulcrum drains: open sessions only.
};

inline constexpr size_t kDropReasons = 8;

const char* toString(Drop reason);

// Why a session ended; one per session, logged at debug and counted.
enum class EndReason {
  RepliesDone,         // Every client datagram got the listener's `replies` answers.
  IdleTimeout,         // Nothing either way for idle_timeout.
  Evicted,             // Made room for a new client under table_full = "evict_oldest".
  BackendUnreachable,  // ICMP unreachable from the backend.
  BackendError,        // Another error on the backend socket.
  BackendDown,         // The backend went down under on_down = "close".
  Shutdown,            // Fulcrum is stopping.
};

inline constexpr size_t kEndReasons = 7;

const char* toString(EndReason reason);

struct UdpListenerStats {
  // Sessions open now, all workers; bounded by the listener's max_sessions.
  std::atomic<uint32_t> sessions{0};
  std::atomic<uint64_t> sessions_total{0};
  std::atomic<uint64_t> sessions_ended_total[kEndReasons] = {};

  std::atomic<uint64_t> datagrams_from_client_total{0};
  std::atomic<uint64_t> datagrams_to_backend_total{0};
  std::atomic<uint64_t> datagrams_from_backend_total{0};
  std::atomic<uint64_t> datagrams_to_client_total{0};
  std::atomic<uint64_t> bytes_from_client_total{0};
  std::atomic<uint64_t> bytes_from_backend_total{0};
  std::atomic<uint64_t> drops_total[kDropReasons] = {};

  // Set while the table is full, so the condition is logged when it starts and when it ends
  // rather than once per datagram.
  std::atomic<bool> table_full{false};
  // Last time (loop milliseconds) a drop was logged; see runtime::logAllowed.
  std::atomic<uint64_t> last_drop_log_ms{0};

  void countDrop(Drop reason, uint64_t n = 1) {
    drops_total[static_cast<size_t>(reason)].fetch_add(n, std::memory_order_relaxed);
  }
  void countEnd(EndReason reason) {
    sessions_ended_total[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace fulcrum::udp
