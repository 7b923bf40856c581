#pragma once

// Everything the admin endpoint shows, gathered once per request on the control plane's
// loop: the listeners (their shared counters are read live) and a copy of every pool's and
// backend's state from the health checker. Renderers (JSON, metrics, page) read only this,
// so they can be tested on a view built by hand.

#include <cstdint>
#include <string>
#include <vector>

#include "health/checker.hpp"
#include "runtime/listener_state.hpp"

namespace fulcrum::admin {

struct StatusView {
  std::string version;
  uint64_t uptime_ms = 0;  // Since the admin endpoint started (the end of startup).
  bool draining = false;   // A shutdown signal arrived; no new sessions are accepted.
  std::vector<const runtime::ListenerState*> listeners;  // Outlive the view.
  std::vector<health::PoolStatus> pools;
};

}  // namespace fulcrum::admin
