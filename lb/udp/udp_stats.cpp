#include "udp/udp_stats.hpp"

namespace fulcrum::udp {

const char* toString(Drop reason) {
  switch (reason) {
    case Drop::NoBackend:
      return "no_backend";
    case Drop::TableFull:
      return "table_full";
    case Drop::Truncated:
      return "truncated";
    case Drop::SocketError:
      return "socket_error";
    case Drop::BackendSendError:
      return "backend_send_error";
    case Drop::BackendUnreachable:
      return "backend_unreachable";
    case Drop::ClientSendError:
      return "client_send_error";
    case Drop::Draining:
      return "draining";
  }
  return "unknown";
}

const char* toString(EndReason reason) {
  switch (reason) {
    case EndReason::RepliesDone:
      return "replies_done";
    case EndReason::IdleTimeout:
      return "idle_timeout";
    case EndReason::Evicted:
      return "evicted";
    case EndReason::BackendUnreachable:
      return "backend_unreachable";
    case EndReason::BackendError:
      return "backend_error";
    case EndReason::BackendDown:
      return "backend_down";
    case EndReason::Shutdown:
      return "shutdown";
  }
  return "unknown";
}

}  // namespace fulcrum::udp
