#pragma once

// One active health probe of one backend, run on the control plane's libuv loop. The health
// checker owns one Probe per backend and starts it once per interval; the probe reports
// exactly one ProbeResult per start, then is ready for the next start.
//
// Kinds (HealthCheckConfig::type): tcp (the connect succeeds), tcp_expect (send bytes, read
// until the answer matches or the peer closes or the timeout fires), http (an HTTP/1.1
// request, status and optional body substring checked; Connection: close), udp_expect (send
// one datagram, the answer datagram must match; ICMP port unreachable fails at once).

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "fulcrum/config.hpp"

namespace fulcrum::health {

struct ProbeResult {
  bool ok = false;
  std::chrono::milliseconds latency{0};  // Start to verdict.
  // What the probe saw, for the operator's log line, one short phrase without spaces where
  // practical: "connected", "refused", "timeout", "status_503", "expect_not_found",
  // "closed_after_12_bytes", "icmp_unreachable", "http_parse_error", ...
  std::string detail;
};

class Probe {
 public:
  using Done = std::function<void(const ProbeResult&)>;

  // config must outlive the probe (it lives in the checker's copy of the pool config).
  Probe(uv_loop_t* loop, const HealthCheckConfig& config);
  ~Probe();  // Must not be running; call close() and let the loop turn first.

  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  // Starts one probe; done runs exactly once on the loop thread, never from inside start().
  // Must not be called while running().
  void start(Done done);
  bool running() const;

  // Cancels a running probe without calling done, and releases every libuv handle;
  // on_closed runs once all are closed, after which the probe may be destroyed.
  void close(std::function<void()> on_closed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True when answer satisfies expect under match (contains, prefix or exact). Exposed for
// unit tests.
bool expectMatches(std::string_view answer, std::string_view expect, ExpectMatch match);

}  // namespace fulcrum::health
