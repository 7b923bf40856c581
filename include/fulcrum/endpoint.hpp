#pragma once

// A numeric IPv4 or IPv6 socket address. Host names are never resolved: a balancer's
// data path must not depend on DNS, and a config must mean the same thing on every node.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fulcrum {

class Endpoint {
 public:
  Endpoint();

  // Parses "1.2.3.4:80" or "[::1]:80". Port 0..65535 (0 means "any", useful for tests).
  // On failure returns nullopt and, when error is given, a sentence saying what was wrong
  // and what is allowed, e.g. "missing port: expected host:port such as 127.0.0.1:6379".
  static std::optional<Endpoint> parse(std::string_view text, std::string* error = nullptr);

  // Copies an address returned by the kernel (accept, getsockname). Unknown families give
  // an empty endpoint (family() == AF_UNSPEC).
  static Endpoint fromSockaddr(const sockaddr* sa);

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&ss_); }
  socklen_t len() const;
  int family() const { return ss_.ss_family; }
  bool isV4() const { return family() == AF_INET; }
  bool isV6() const { return family() == AF_INET6; }
  uint16_t port() const;  // Host byte order.
  void setPort(uint16_t port);

  // "127.0.0.1:80" or "[::1]:80"; "-" for an empty endpoint.
  std::string toString() const;
  // "127.0.0.1" or "::1".
  std::string ipString() const;

  bool operator==(const Endpoint& other) const;

 private:
  sockaddr_storage ss_;
};

}  // namespace fulcrum
