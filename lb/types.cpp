#include "fulcrum/types.hpp"

// The strings here are the config spelling of each value, so a summary or a log line can be
// pasted back into a config file unchanged.

namespace fulcrum {

const char* toString(LogLevel v) {
  switch (v) {
    case LogLevel::Trace:
      return "trace";
    case LogLevel::Debug:
      return "debug";
    case LogLevel::Info:
      return "info";
    case LogLevel::Warn:
      return "warn";
    case LogLevel::Error:
      return "error";
  }
  return "unknown";
}

const char* toString(Protocol v) {
  switch (v) {
    case Protocol::Tcp:
      return "tcp";
    case Protocol::Udp:
      return "udp";
  }
  return "unknown";
}

const char* toString(Algorithm v) {
  switch (v) {
    case Algorithm::RoundRobin:
      return "round_robin";
    case Algorithm::LeastConn:
      return "least_conn";
    case Algorithm::RandomTwo:
      return "random_two";
    case Algorithm::RingHash:
      return "ring_hash";
    case Algorithm::Maglev:
      return "maglev";
  }
  return "unknown";
}

const char* toString(HashKey v) {
  switch (v) {
    case HashKey::SourceIp:
      return "source_ip";
    case HashKey::SourceIpPort:
      return "source_ip_port";
    case HashKey::FiveTuple:
      return "five_tuple";
  }
  return "unknown";
}

const char* toString(ProxyProtocol v) {
  switch (v) {
    case ProxyProtocol::Off:
      return "off";
    case ProxyProtocol::V1:
      return "v1";
    case ProxyProtocol::V2:
      return "v2";
  }
  return "unknown";
}

const char* toString(TableFullPolicy v) {
  switch (v) {
    case TableFullPolicy::DropNew:
      return "drop_new";
    case TableFullPolicy::EvictOldest:
      return "evict_oldest";
  }
  return "unknown";
}

const char* toString(HealthCheckType v) {
  switch (v) {
    case HealthCheckType::None:
      return "none";
    case HealthCheckType::Tcp:
      return "tcp";
    case HealthCheckType::TcpExpect:
      return "tcp_expect";
    case HealthCheckType::Http:
      return "http";
    case HealthCheckType::UdpExpect:
      return "udp_expect";
  }
  return "unknown";
}

const char* toString(ExpectMatch v) {
  switch (v) {
    case ExpectMatch::Contains:
      return "contains";
    case ExpectMatch::Prefix:
      return "prefix";
    case ExpectMatch::Exact:
      return "exact";
  }
  return "unknown";
}

const char* toString(OnDown v) {
  switch (v) {
    case OnDown::Continue:
      return "continue";
    case OnDown::Close:
      return "close";
  }
  return "unknown";
}

const char* toString(AllDownPolicy v) {
  switch (v) {
    case AllDownPolicy::Refuse:
      return "refuse";
    case AllDownPolicy::All:
      return "all";
  }
  return "unknown";
}

const char* toString(AdminState v) {
  switch (v) {
    case AdminState::Enabled:
      return "enabled";
    case AdminState::Draining:
      return "draining";
    case AdminState::Disabled:
      return "disabled";
  }
  return "unknown";
}

const char* toString(AccessLogFormat v) {
  switch (v) {
    case AccessLogFormat::Logfmt:
      return "logfmt";
    case AccessLogFormat::Json:
      return "json";
  }
  return "unknown";
}

const char* toString(ListenerMode v) {
  switch (v) {
    case ListenerMode::Splicer:
      return "splicer";
    case ListenerMode::Xdp:
      return "xdp";
  }
  return "unknown";
}

const char* toString(XdpAttach v) {
  switch (v) {
    case XdpAttach::Auto:
      return "auto";
    case XdpAttach::Native:
      return "native";
    case XdpAttach::Generic:
      return "generic";
  }
  return "unknown";
}

const char* toString(XdpFallback v) {
  switch (v) {
    case XdpFallback::Splicer:
      return "splicer";
    case XdpFallback::None:
      return "none";
  }
  return "unknown";
}

}  // namespace fulcrum
