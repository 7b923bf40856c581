#include "health/probe_attempt.hpp"

#include <cctype>
#include <utility>

namespace fulcrum::health::detail {

void ProbeHandles::handleClosed() {
  open--;
  if (open > 0 || on_closed.empty()) {
    return;
  }

  // Move the callbacks out first: one of them may destroy the Probe that shares this.
  auto callbacks = std::move(on_closed);
  on_closed.clear();
  for (auto& callback : callbacks) {
    if (callback) {
      callback();
    }
  }
}

Attempt::Attempt(uv_loop_t* loop, const HealthCheckConfig& config,
                 std::shared_ptr<ProbeHandles> handles, Report report)
    : loop_(loop), config_(config), handles_(std::move(handles)), report_(std::move(report)) {}

void Attempt::begin() {
  started_ = std::chrono::steady_clock::now();
  // The loop's cached time may be stale by however long the caller worked since the loop
  // last woke; the timeout counts from now.
  uv_update_time(loop_);

  uv_timer_init(loop_, &timer_);
  trackHandle(reinterpret_cast<uv_handle_t*>(&timer_));

  const int error = startIo();
  if (error < 0) {
    // Reporting from here would run the checker's callback inside Probe::start().
    early_failure_ = true;
    early_detail_ = errorDetail("connect", error);
    uv_timer_start(&timer_, onTimer_cb, 0, 0);
    return;
  }

  uv_timer_start(&timer_, onTimer_cb, static_cast<uint64_t>(config_.timeout.count()), 0);
}

void Attempt::cancel() {
  finished_ = true;
  report_ = nullptr;
  closeAll();
}

void Attempt::finish(bool ok, std::string detail) {
  if (finished_) {
    return;
  }
  finished_ = true;

  ProbeResult result;
  result.ok = ok;
  result.detail = std::move(detail);
  result.latency = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started_);

  closeAll();

  // Last step: the report may start the next attempt or close the probe.
  Report report = std::move(report_);
  report_ = nullptr;
  if (report) {
    report(result);
  }
}

void Attempt::trackHandle(uv_handle_t* handle) {
  handle->data = this;
  own_open_++;
  handles_->open++;
}

void Attempt::onHandleClosed_cb(uv_handle_t* handle) {
  auto* self = static_cast<Attempt*>(handle->data);
  self->own_open_--;
  if (self->own_open_ > 0) {
    // This attempt's other handles keep the shared count above zero.
    self->handles_->handleClosed();
    return;
  }

  // The shared count drops after the delete so a callback it runs may free the Probe.
  auto handles = std::move(self->handles_);
  delete self;
  handles->handleClosed();
}

void Attempt::onTimer_cb(uv_timer_t* timer) {
  static_cast<Attempt*>(timer->data)->onTimer();
}

void Attempt::onTimer() {
  if (early_failure_) {
    finish(false, std::move(early_detail_));
    return;
  }
  finish(false, timeoutDetail());
}

void Attempt::closeAll() {
  if (closing_) {
    return;
  }
  closing_ = true;

  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), onHandleClosed_cb);
  closeIo();
}

std::string errorDetail(const char* step, int uv_error) {
  switch (uv_error) {
    case UV_ECONNREFUSED:
      return "refused";
    case UV_ECONNRESET:
      return "reset";
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
      return "unreachable";
    default:
      break;
  }

  // uv_err_name gives "EADDRNOTAVAIL"; operators grep lower-case phrases.
  std::string detail = std::string(step) + "_error_";
  for (const char* c = uv_err_name(uv_error); *c != '\0'; ++c) {
    detail += static_cast<char>(std::tolower(static_cast<unsigned char>(*c)));
  }
  return detail;
}

}  // namespace fulcrum::health::detail
