#include "udp/udp_socket.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "fulcrum/log.hpp"
#include "runtime/listen_socket.hpp"
#include "runtime/server.hpp"

namespace fulcrum::udp {

namespace {

// Socket buffers asked for on listener sockets. A burst of many clients lands in one
// socket's receive queue between two wakeups, and a backend's burst of replies leaves
// through the same socket, so the defaults (about 200 KiB) drop under load well before the
// CPU is busy. The kernel caps the request at net.core.rmem_max / wmem_max.
constexpr int kListenerBufferBytes = 4 * 1024 * 1024;

}  // namespace

bool isWildcard(const Endpoint& address) {
  if (address.isV4()) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address.sa());
    return in->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (address.isV6()) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address.sa());
    return IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
  }
  return false;
}

int openListenSocket(const ListenerConfig& config, const Endpoint& address, bool first) {
  if (first) {
    runtime::ensureAddressFree(config, address, SOCK_DGRAM);
  }

  const int fd = runtime::newReusePortSocket(config, address, SOCK_DGRAM);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kListenerBufferBytes, sizeof(kListenerBufferBytes));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kListenerBufferBytes, sizeof(kListenerBufferBytes));

  if (isWildcard(address)) {
    const int rc = address.isV6()
                       ? ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))
                       : ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    if (rc != 0) {
      const int error = errno;
      ::close(fd);
      throw runtime::StartupError(fmt::format(
          "cannot ask for destination addresses on udp listener {}: {}; bind a specific "
          "address instead of a wildcard",
          config.name, std::strerror(error)));
    }
  }

  runtime::bindOrThrow(fd, config, address);
  return fd;
}

void logTotals(const runtime::ListenerState& state) {
  const UdpListenerStats& s = state.udp;
  const auto get = [](const std::atomic<uint64_t>& v) {
    return v.load(std::memory_order_relaxed);
  };

  std::string drops;
  for (size_t i = 0; i < kDropReasons; ++i) {
    drops += fmt::format(" drop_{}={}", toString(static_cast<Drop>(i)), get(s.drops_total[i]));
  }
  std::string ends;
  for (size_t i = 0; i < kEndReasons; ++i) {
    ends += fmt::format(" ended_{}={}", toString(static_cast<EndReason>(i)),
                        get(s.sessions_ended_total[i]));
  }

  spdlog::info("udp listener totals listener={} sessions_total={} sessions_open={} "
               "datagrams_from_client={} datagrams_to_backend={} datagrams_from_backend={} "
               "datagrams_to_client={} bytes_from_client={} bytes_from_backend={}{}{}",
               state.config.name, get(s.sessions_total),
               s.sessions.load(std::memory_order_relaxed), get(s.datagrams_from_client_total),
               get(s.datagrams_to_backend_total), get(s.datagrams_from_backend_total),
               get(s.datagrams_to_client_total), get(s.bytes_from_client_total),
               get(s.bytes_from_backend_total), drops, ends);
}

}  // namespace fulcrum::udp
