#pragma once

// Listening sockets for TCP and UDP listeners: what both protocols share (SO_REUSEPORT per
// worker, the check that nobody else holds the address, bind errors an operator can act on)
// and the TCP socket itself. The UDP socket adds its own options in udp/udp_socket.cpp.
// Every failure throws runtime::StartupError with a complete message.

#include "fulcrum/config.hpp"
#include "fulcrum/endpoint.hpp"

namespace fulcrum::runtime {

// A non-blocking socket of type (SOCK_STREAM or SOCK_DGRAM) with SO_REUSEADDR and
// SO_REUSEPORT, IPv6-only for IPv6 addresses (so an IPv4 listener on the same port can
// coexist), not yet bound.
int newReusePortSocket(const ListenerConfig& config, const Endpoint& address, int type);

// Binds fd to address; on failure closes fd and throws with a hint for the usual causes.
void bindOrThrow(int fd, const ListenerConfig& config, const Endpoint& address);

// Every worker's socket sets SO_REUSEPORT, which would also let this process silently join
// another process (a second Fulcrum, a stale instance) already bound to the address and
// split its traffic. A plain bind of the same type first proves nobody holds it. Port 0
// never collides.
void ensureAddressFree(const ListenerConfig& config, const Endpoint& address, int type);

// One worker's TCP listening socket: bound and listening. first = the first worker's, which
// also runs ensureAddressFree.
int openTcpListenSocket(const ListenerConfig& config, const Endpoint& address, bool first);

}  // namespace fulcrum::runtime
