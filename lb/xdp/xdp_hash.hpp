#pragma once

// The flow hash of XDP listeners in userspace: the kernel's function from ebpf/fulcrum_xdp.h
// fed with the same fields, so a flow the splicer serves (fallback) and a flow the XDP
// program steers land on the same backend, and tests can predict the kernel's choice.

#include <sys/socket.h>

#include <cstdint>

#include "fulcrum/types.hpp"
#include "fulcrum_xdp.h"

namespace fulcrum::xdp {

// The kernel's flow key for client -> local. IPv4-mapped IPv6 addresses count as IPv4, as
// the packet on the wire is IPv4. Addresses and ports stay in network byte order.
fulcrum_flow makeFlow(Protocol protocol, const sockaddr* client, const sockaddr* local);

uint8_t hashKeyCode(HashKey key);

// fulcrum_xdp_flow_hash(makeFlow(...), hashKeyCode(key)).
uint64_t xdpFlowHash(HashKey key, Protocol protocol, const sockaddr* client,
                     const sockaddr* local);

}  // namespace fulcrum::xdp
