#include "runtime/listen_socket.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "runtime/server.hpp"

namespace fulcrum::runtime {

namespace {

const char* protocolWord(int type) {
  return type == SOCK_DGRAM ? "udp " : "";
}

std::string bindHint(int error) {
  switch (error) {
    case EADDRINUSE:
      return "; another process holds this port: stop it or change bind";
    case EADDRNOTAVAIL:
      return "; the address is not configured on any interface of this host";
    case EACCES:
      return "; ports below 1024 need root or CAP_NET_BIND_SERVICE";
    default:
      return "";
  }
}

}  // namespace

int newReusePortSocket(const ListenerConfig& config, const Endpoint& address, int type) {
  const int fd = ::socket(address.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw StartupError(fmt::format("cannot create {}socket for listener {}: {}",
                                   protocolWord(type), config.name, std::strerror(errno)));
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (address.isV6()) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  return fd;
}

void bindOrThrow(int fd, const ListenerConfig& config, const Endpoint& address) {
  if (::bind(fd, address.sa(), address.len()) == 0) {
    return;
  }
  const int error = errno;
  int type = SOCK_STREAM;
  socklen_t len = sizeof(type);
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  ::close(fd);
  throw StartupError(fmt::format("cannot bind listener {} to {}{}: {}{}", config.name,
                                 protocolWord(type), address.toString(), std::strerror(error),
                                 bindHint(error)));
}

void ensureAddressFree(const ListenerConfig& config, const Endpoint& address, int type) {
  if (address.port() == 0) {
    return;
  }
  const int fd = ::socket(address.family(), type | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return;  // The real bind reports the problem.
  }
  const int one = 1;
  if (type == SOCK_STREAM) {
    // Without it a TCP port in TIME_WAIT would look taken.
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  if (address.isV6()) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  const int rc = ::bind(fd, address.sa(), address.len());
  const int error = errno;
  ::close(fd);
  if (rc != 0 && error == EADDRINUSE) {
    throw StartupError(fmt::format(
        "cannot bind listener {} to {}{}: {}; another process (perhaps another fulcrum) holds "
        "this address: stop it or change bind",
        config.name, protocolWord(type), address.toString(), std::strerror(error)));
  }
}

int openTcpListenSocket(const ListenerConfig& config, const Endpoint& address, bool first) {
  if (first) {
    ensureAddressFree(config, address, SOCK_STREAM);
  }
  const int fd = newReusePortSocket(config, address, SOCK_STREAM);
  // Accepted sockets inherit TCP_NODELAY from the listening socket, which saves a
  // setsockopt per connection.
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  bindOrThrow(fd, config, address);
  if (::listen(fd, static_cast<int>(config.backlog)) != 0) {
    const int error = errno;
    ::close(fd);
    throw StartupError(fmt::format("cannot listen on {} for listener {}: {}",
                                   address.toString(), config.name, std::strerror(error)));
  }
  return fd;
}

}  // namespace fulcrum::runtime
