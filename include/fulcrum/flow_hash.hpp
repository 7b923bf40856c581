#pragma once

// Flow hashing for the consistent-hash pickers. Fixed seeds (no per-process randomness)
// so every Fulcrum node maps a flow to the same backend.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "fulcrum/types.hpp"

namespace fulcrum {

// Hash of the parts of a flow selected by key: source_ip uses the client address only,
// source_ip_port adds the client port, five_tuple adds protocol and the local address and
// port. IPv4-mapped IPv6 clients hash like the IPv4 address.
uint64_t hashFlow(HashKey key, Protocol protocol, const sockaddr* client, const sockaddr* local);

// XXH3-64 of a byte range with a fixed seed.
uint64_t hashBytes(const void* data, size_t len, uint64_t seed = 0);

}  // namespace fulcrum
