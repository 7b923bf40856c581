#pragma once

// PROXY protocol headers (HAProxy's "The PROXY protocol", versions 1 and 2) sent to a
// backend before any client byte, so the server sees the real client address.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "fulcrum/types.hpp"

namespace fulcrum::tcp {

// The transport a v2 header announces. v1 has no UDP form, so Datagram is for v2 only.
enum class ProxyTransport { Stream, Datagram };

// Largest header we emit: v1 with two full IPv6 addresses is 104 bytes, v2 for TCP over
// IPv6 is 52.
inline constexpr size_t kMaxProxyHeaderBytes = 108;

// Writes the header for a TCP connection from client to local (the address the client
// reached) into out, which holds kMaxProxyHeaderBytes. IPv4-mapped IPv6 addresses are sent
// as IPv4. When the two families differ, or either is not IP, v1 sends "PROXY UNKNOWN" and
// v2 sends a LOCAL command, as the specification asks. Returns the number of bytes written;
// 0 for ProxyProtocol::Off.
//
// transport = Datagram announces UDP (v2 transport byte 0x12 or 0x22), for the header a UDP
// listener puts in front of every datagram; with v1 it returns 0, since v1 cannot describe
// UDP (config validation refuses that pairing).
size_t buildProxyHeader(ProxyProtocol version, const sockaddr* client, const sockaddr* local,
                        uint8_t* out, ProxyTransport transport = ProxyTransport::Stream);

}  // namespace fulcrum::tcp
