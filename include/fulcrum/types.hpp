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

// What a UDP listener does with a datagram from a new client when its session table is full.
enum class TableFullPolicy { DropNew, EvictOldest };

// The active probe a pool runs against each backend.
enum class HealthCheckType { None, Tcp, TcpExpect, Http, UdpExpect };

// How a tcp_expect / udp_expect answer is compared with the expected bytes.
enum class ExpectMatch { Contains, Prefix, Exact };

// What happens to open sessions of a backend that goes down.
enum class OnDown { Continue, Close };

// What a pool does when no backend is up.
enum class AllDownPolicy { Refuse, All };

enum class AccessLogFormat { Logfmt, Json };

// How a listener serves its VIP: the userspace splicer, or the in-kernel XDP fast path.
enum class ListenerMode { Splicer, Xdp };

// How the XDP program is attached: native (driver) first then generic, or only one of them.
enum class XdpAttach { Auto, Native, Generic };

// What an XDP listener does when its program cannot be attached: serve the VIP with the
// splicer, or refuse to start.
enum class XdpFallback { Splicer, None };

// Operator-set state of a backend; health is tracked separately.
enum class AdminState { Enabled, Draining, Disabled };

const char* toString(LogLevel v);
const char* toString(Protocol v);
const char* toString(Algorithm v);
const char* toString(HashKey v);
const char* toString(ProxyProtocol v);
const char* toString(TableFullPolicy v);
const char* toString(HealthCheckType v);
const char* toString(ExpectMatch v);
const char* toString(OnDown v);
const char* toString(AllDownPolicy v);
const char* toString(AdminState v);
const char* toString(AccessLogFormat v);
const char* toString(ListenerMode v);
const char* toString(XdpAttach v);
const char* toString(XdpFallback v);

}  // namespace fulcrum
