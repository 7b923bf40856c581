#include "fulcrum/endpoint.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include <fmt/format.h>

namespace fulcrum {

namespace {

constexpr std::string_view kExample = "such as 127.0.0.1:6379 or [::1]:6379";

// Sets *error (when the caller asked for one) and returns nullopt, so every refusal below is
// a single statement.
std::optional<Endpoint> refuse(std::string* error, std::string message) {
  if (error != nullptr) {
    *error = std::move(message);
  }
  return std::nullopt;
}

// Decimal digits only: strtoul would accept "+80", " 80" and "0x50", none of which an
// operator means as a port.
std::optional<uint16_t> parsePort(std::string_view text) {
  if (text.empty() || text.size() > 5) {
    return std::nullopt;
  }
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(value);
}

bool looksLikeHostName(std::string_view host) {
  return std::any_of(host.begin(), host.end(), [](unsigned char c) { return std::isalpha(c); });
}

std::string badPort(std::string_view port) {
  if (port.empty()) {
    return fmt::format("missing port after ':'; expected host:port {}", kExample);
  }
  return fmt::format("port \"{}\" is not a number from 0 to 65535", port);
}

}  // namespace

Endpoint::Endpoint() {
  std::memset(&ss_, 0, sizeof(ss_));
  ss_.ss_family = AF_UNSPEC;
}

std::optional<Endpoint> Endpoint::parse(std::string_view text, std::string* error) {
  if (text.empty()) {
    return refuse(error, fmt::format("empty address; expected host:port {}", kExample));
  }
  // A NUL would end the text where inet_pton reads it and silently drop the rest.
  if (std::any_of(text.begin(), text.end(),
                  [](unsigned char c) { return std::iscntrl(c) && !std::isspace(c); })) {
    return refuse(error, fmt::format("address contains a control character; expected "
                                     "host:port {}",
                                     kExample));
  }
  if (std::any_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); })) {
    return refuse(error, fmt::format("address contains white space; expected host:port {}",
                                     kExample));
  }

  Endpoint endpoint;

  // Bracketed IPv6: "[addr]:port". Brackets are required because the port separator is also
  // the IPv6 group separator.
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return refuse(error, "missing ']' after the IPv6 address; expected [addr]:port such as "
                           "[::1]:6379");
    }
    const std::string host(text.substr(1, close - 1));
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return refuse(error, fmt::format("missing port after [{}]; expected [addr]:port such as "
                                       "[::1]:6379",
                                       host));
    }
    if (host.find('%') != std::string::npos) {
      return refuse(error, fmt::format("\"{}\" has a zone index, which is not supported; use a "
                                       "global or unique-local IPv6 address",
                                       host));
    }

    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&endpoint.ss_);
    if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) != 1) {
      return refuse(error, fmt::format("\"{}\" is not a valid IPv6 address; expected [addr]:port "
                                       "such as [::1]:6379",
                                       host));
    }
    const auto port = parsePort(rest.substr(1));
    if (!port) {
      return refuse(error, badPort(rest.substr(1)));
    }
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(*port);
    return endpoint;
  }

  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return refuse(error, fmt::format("missing port; expected host:port {}", kExample));
  }
  if (text.find(':') != colon) {
    return refuse(error, fmt::format("\"{}\" looks like an IPv6 address without brackets; write "
                                     "it as [addr]:port such as [::1]:6379",
                                     text));
  }

  const std::string host(text.substr(0, colon));
  const std::string_view port_text = text.substr(colon + 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&endpoint.ss_);
  if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) != 1) {
    if (host.empty()) {
      return refuse(error, fmt::format("missing host before ':'; expected host:port {}",
                                       kExample));
    }
    if (looksLikeHostName(host)) {
      return refuse(error, fmt::format("\"{}\" is not a numeric IP address and host names are "
                                       "not resolved; use an address {}",
                                       host, kExample));
    }
    return refuse(error, fmt::format("\"{}\" is not a valid IPv4 address; expected four "
                                     "decimal numbers 0..255 such as 127.0.0.1",
                                     host));
  }
  const auto port = parsePort(port_text);
  if (!port) {
    return refuse(error, badPort(port_text));
  }
  sin->sin_family = AF_INET;
  sin->sin_port = htons(*port);
  return endpoint;
}

Endpoint Endpoint::fromSockaddr(const sockaddr* sa) {
  Endpoint endpoint;
  if (sa == nullptr) {
    return endpoint;
  }
  if (sa->sa_family == AF_INET) {
    std::memcpy(&endpoint.ss_, sa, sizeof(sockaddr_in));
  } else if (sa->sa_family == AF_INET6) {
    std::memcpy(&endpoint.ss_, sa, sizeof(sockaddr_in6));
  }
  return endpoint;
}

socklen_t Endpoint::len() const {
  if (isV4()) {
    return sizeof(sockaddr_in);
  }
  if (isV6()) {
    return sizeof(sockaddr_in6);
  }
  return 0;
}

uint16_t Endpoint::port() const {
  if (isV4()) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
  }
  if (isV6()) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  }
  return 0;
}

void Endpoint::setPort(uint16_t port) {
  if (isV4()) {
    reinterpret_cast<sockaddr_in*>(&ss_)->sin_port = htons(port);
  } else if (isV6()) {
    reinterpret_cast<sockaddr_in6*>(&ss_)->sin6_port = htons(port);
  }
}

std::string Endpoint::ipString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (isV4()) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr, buf, sizeof(buf));
    return buf;
  }
  if (isV6()) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss_);
    inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
    // A link-local peer seen by accept() carries its interface; keep it so two such peers
    // on different links do not print alike.
    if (sin6->sin6_scope_id != 0) {
      return fmt::format("{}%{}", buf, sin6->sin6_scope_id);
    }
    return buf;
  }
  return "-";
}

std::string Endpoint::toString() const {
  if (isV4()) {
    return fmt::format("{}:{}", ipString(), port());
  }
  if (isV6()) {
    return fmt::format("[{}]:{}", ipString(), port());
  }
  return "-";
}

bool Endpoint::operator==(const Endpoint& other) const {
  if (family() != other.family()) {
    return false;
  }

  // Field by field rather than memcmp: a sockaddr copied from the kernel may carry bytes in
  // sin_zero or flowinfo that say nothing about which peer it is.
  if (isV4()) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss_);
    const auto* b = reinterpret_cast<const sockaddr_in*>(&other.ss_);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (isV6()) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss_);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&other.ss_);
    return a->sin6_port == b->sin6_port && a->sin6_scope_id == b->sin6_scope_id &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(in6_addr)) == 0;
  }
  return true;
}

}  // namespace fulcrum
