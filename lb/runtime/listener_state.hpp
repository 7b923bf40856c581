#pragma once

// State one listener shares across all workers: its config, the address it really bound
// and the counters every worker updates with relaxed atomics.

#include <atomic>
#include <cstdint>

#include "fulcrum/config.hpp"
#include "fulcrum/endpoint.hpp"
#include "pool/pool.hpp"
#include "udp/udp_stats.hpp"
#include "xdp/xdp_manager.hpp"

namespace fulcrum::runtime {

struct ListenerState {
  ListenerConfig config;
  Endpoint address;  // Bound address; a configured port 0 is resolved here.
  pool::Pool* pool = nullptr;

  std::atomic<uint32_t> active{0};  // Sessions open now, all workers.
  std::atomic<uint64_t> accepted_total{0};
  std::atomic<uint64_t> rejected_max_connections_total{0};
  std::atomic<uint64_t> no_backend_total{0};
  std::atomic<uint64_t> accept_error_total{0};
  std::atomic<uint64_t> backend_socket_error_total{0};  // socket() failed: out of fds.

  // Last time (loop milliseconds) a per-connection local failure was logged, so that a
  // condition hitting every connection logs once per interval, not once per connection.
  std::atomic<uint64_t> last_local_error_log_ms{0};

  // Set while the listener refuses clients for max_connections, so that the condition is
  // logged once when it starts and once when it ends.
  std::atomic<bool> at_capacity{false};

  // UDP listeners only: session table size and datagram counters.
  udp::UdpListenerStats udp;

  // mode = "xdp" only. While the VIP is served in the kernel, xdp_attach is "native" or
  // "generic", xdp names the manager whose maps hold it and xdp_vip_id its entry; with
  // xdp_attach empty the listener is served by the splicer (xdp_fallback_reason says why).
  // Written by the control plane, read by the admin endpoint on the same thread.
  std::string xdp_attach;
  std::string xdp_fallback_reason;
  const xdp::XdpManager* xdp = nullptr;
  xdp::Interface xdp_interface;
  uint32_t xdp_vip_id = 0;
  bool xdp_vip_added = false;
};

// True at most once per interval_ms across all threads sharing last_ms.
inline bool logAllowed(std::atomic<uint64_t>& last_ms, uint64_t now_ms, uint64_t interval_ms) {
  uint64_t last = last_ms.load(std::memory_order_relaxed);
  if (last != 0 && now_ms - last < interval_ms) {
    return false;
  }
  return last_ms.compare_exchange_strong(last, now_ms, std::memory_order_relaxed);
}

}  // namespace fulcrum::runtime
