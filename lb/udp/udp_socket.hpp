#pragma once

// Control-plane helpers for UDP listeners: opening each worker's socket and reporting the
// listener's counters when Fulcrum stops. Called on the main thread only.

#include "fulcrum/config.hpp"
#include "fulcrum/endpoint.hpp"
#include "runtime/listener_state.hpp"

namespace fulcrum::udp {

// Opens one worker's SO_REUSEPORT UDP socket for a listener, non-blocking, bound to address.
// With first = true and a nonzero port it first proves that no other process holds the
// address (SO_REUSEPORT would otherwise silently share it). Wildcard binds ask the kernel
// for each datagram's destination address (IP_PKTINFO / IPV6_RECVPKTINFO) so replies can
// leave from the address the client reached. Throws runtime::StartupError.
int openListenSocket(const ListenerConfig& config, const Endpoint& address, bool first);

// True for 0.0.0.0 and [::]: the kernel will not choose the reply source for us.
bool isWildcard(const Endpoint& address);

// Logs one info line with every counter of a UDP listener ("udp listener totals ...").
void logTotals(const runtime::ListenerState& state);

}  // namespace fulcrum::udp
