#pragma once

// One run of a probe: the libuv handles of a single check, from start() to the verdict.
// Private to lb/health/probe*.cpp.
//
// Each Probe::start() creates a fresh Attempt, so a probe can start again as soon as it has
// reported even while the previous attempt's handles are still closing. An Attempt owns its
// handles and deletes itself once every one of them is closed; it never touches its Probe
// after the verdict, so a Probe may be destroyed while old attempts still wind down.

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fulcrum/config.hpp"
#include "health/probe.hpp"

namespace fulcrum::health::detail {

// Handle bookkeeping shared by a Probe and its attempts, so Probe::close() can report once
// the last handle of the last attempt is closed, whichever of them goes first.
struct ProbeHandles {
  int open = 0;  // libuv handles initialised and not yet through their close callback.
  std::vector<std::function<void()>> on_closed;  // Waiting for open to reach 0.

  // Called from every close callback; runs the waiting callbacks once nothing is open.
  void handleClosed();
};

class Attempt {
 public:
  // report runs once, on the loop thread, with the verdict; never after cancel().
  using Report = std::function<void(const ProbeResult&)>;

  Attempt(uv_loop_t* loop, const HealthCheckConfig& config,
          std::shared_ptr<ProbeHandles> handles, Report report);
  virtual ~Attempt() = default;

  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;

  // Arms the timeout and starts the I/O. A failure found at once is reported on the next
  // loop turn, never from inside begin().
  void begin();

  // Stops the check without a report and closes every handle; the attempt deletes itself
  // once they are closed.
  void cancel();

 protected:
  // Starts the kind-specific I/O. Returns 0, or a libuv error that ends the check with
  // failDetail(error) (reported on the next loop turn).
  virtual int startIo() = 0;
  // Calls uv_close on each I/O handle that was initialised, with onHandleClosed_cb.
  virtual void closeIo() = 0;
  // Detail phrase when the timeout fires.
  virtual std::string timeoutDetail() const { return "timeout"; }

  // Delivers the verdict (first call only), then closes the handles.
  void finish(bool ok, std::string detail);
  bool finished() const { return finished_; }

  // Registers a handle as open; its close callback must be onHandleClosed_cb.
  void trackHandle(uv_handle_t* handle);
  static void onHandleClosed_cb(uv_handle_t* handle);

  uv_loop_t* loop_;
  const HealthCheckConfig& config_;

 private:
  static void onTimer_cb(uv_timer_t* timer);
  void onTimer();
  void closeAll();

  std::shared_ptr<ProbeHandles> handles_;
  Report report_;
  uv_timer_t timer_;
  int own_open_ = 0;  // This attempt's handles not yet closed.
  bool finished_ = false;
  bool closing_ = false;
  // A failure found inside begin(), delivered by the timer on the next loop turn.
  bool early_failure_ = false;
  std::string early_detail_;
  std::chrono::steady_clock::time_point started_;
};

// Turns a libuv error from connect, read, write or recv into a short detail phrase:
// "refused", "reset", "unreachable", or "<step>_error_<name>".
std::string errorDetail(const char* step, int uv_error);

// Probe kinds. Each returns a new attempt that owns itself once begun.
Attempt* newTcpAttempt(uv_loop_t* loop, const HealthCheckConfig& config,
                       std::shared_ptr<ProbeHandles> handles, Attempt::Report report);
Attempt* newUdpAttempt(uv_loop_t* loop, const HealthCheckConfig& config,
                       std::shared_ptr<ProbeHandles> handles, Attempt::Report report);

}  // namespace fulcrum::health::detail
