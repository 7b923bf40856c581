#pragma once

// Small enums shared by the config model, the pickers and the data plane. Including this
// header pulls in nothing else.

#include <cstdint>

namespace fulcrum {

enum class LogLevel { Trace, Debug, Info, Warn, Error };

enum class Protocol { Tcp, Udp };

enum class Algorithm { RoundRobin, LeastConn, RandomTwo, RingHash, Maglev };

// Which parts of a flow feed the hash used by ring_hash and maglev.
enum class HashKey { SourceIp, SourceIpPort, FiveTuple };

enum class ProxyProtocol { Off, V1, V2 };

const char* toString(LogLevel v);
const char* toString(Protocol v);
const char* toString(Algorithm v);
const char* toString(HashKey v);
const char* toString(ProxyProtocol v);

}  // namespace fulcrum
