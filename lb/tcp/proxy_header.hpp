#pragma once

// PROXY protocol headers (HAProxy's "The PROXY protocol", versions 1 and 2) sent to a
// backend before any client byte, so the server sees the real client address.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "fulcrum/types.hpp"

namespace fulcrum::tcp {

// Largest header we emit: v1 with two full IPv6 addresses is 104 bytes, v2 for TCP over
// IPv6 is 52.
inline constexpr size_t kMaxProxyHeaderBytes = 108;

// Writes the header for a TCP connection from client to local (the address the client
// reached) into out, which holds kMaxProxyHeaderBytes. IPv4-mapped IPv6 addresses are sent
// as IPv4. When the two families differ, or either is not IP, v1 sends "PROXY UNKNOWN" and
// v2 sends a LOCAL command, as the specification asks. Returns the number of bytes written;
// 0 for ProxyProtocol::Off.
size_t buildProxyHeader(ProxyProtocol version, const sockaddr* client, const sockaddr* local,
                        uint8_t* out);

}  // namespace fulcrum::tcp
