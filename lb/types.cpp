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

}  // namespace fulcrum
