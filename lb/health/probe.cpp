#include "health/probe.hpp"

#include <utility>

#include "health/probe_attempt.hpp"

namespace fulcrum::health {

using detail::Attempt;
using detail::ProbeHandles;

struct Probe::Impl {
  Impl(uv_loop_t* loop, const HealthCheckConfig& config) : loop(loop), config(config) {}

  uv_loop_t* loop;
  const HealthCheckConfig& config;
  std::shared_ptr<ProbeHandles> handles = std::make_shared<ProbeHandles>();
  Attempt* current = nullptr;  // The running attempt; it owns itself.
  Done done;
};

namespace {

// A handle that exists only to be closed: its close callback runs on a later loop turn,
// which is how close() defers on_closed even when no attempt has a handle open.
struct CloseToken {
  uv_idle_t idle;
  std::shared_ptr<ProbeHandles> handles;
};

void onTokenClosed_cb(uv_handle_t* handle) {
  auto* token = static_cast<CloseToken*>(handle->data);
  auto handles = std::move(token->handles);
  delete token;
  handles->handleClosed();
}

}  // namespace

Probe::Probe(uv_loop_t* loop, const HealthCheckConfig& config)
    : impl_(std::make_unique<Impl>(loop, config)) {}

Probe::~Probe() {
  // The contract asks for close() first; if a caller forgot, cancelling still releases the
  // handles (they do not need the Probe) and keeps the attempt from reporting into freed
  // memory.
  if (impl_->current != nullptr) {
    impl_->current->cancel();
  }
}

void Probe::start(Done done) {
  Impl& impl = *impl_;
  impl.done = std::move(done);

  // The attempt reports through Impl, which the contract keeps alive while a probe runs.
  auto report = [&impl](const ProbeResult& result) {
    impl.current = nullptr;
    Done finished = std::move(impl.done);
    impl.done = nullptr;
    finished(result);
  };

  Attempt* attempt = nullptr;
  if (impl.config.type == HealthCheckType::UdpExpect) {
    attempt = detail::newUdpAttempt(impl.loop, impl.config, impl.handles, std::move(report));
  } else {
    attempt = detail::newTcpAttempt(impl.loop, impl.config, impl.handles, std::move(report));
  }
  impl.current = attempt;
  attempt->begin();
}

bool Probe::running() const {
  return impl_->current != nullptr;
}

void Probe::close(std::function<void()> on_closed) {
  Impl& impl = *impl_;
  if (impl.current != nullptr) {
    impl.current->cancel();
    impl.current = nullptr;
    impl.done = nullptr;
  }

  impl.handles->on_closed.push_back(std::move(on_closed));

  auto* token = new CloseToken{};
  token->handles = impl.handles;
  token->idle.data = token;
  uv_idle_init(impl.loop, &token->idle);
  impl.handles->open++;
  uv_close(reinterpret_cast<uv_handle_t*>(&token->idle), onTokenClosed_cb);
}

bool expectMatches(std::string_view answer, std::string_view expect, ExpectMatch match) {
  switch (match) {
    case ExpectMatch::Contains:
      return answer.find(expect) != std::string_view::npos;
    case ExpectMatch::Prefix:
      return answer.substr(0, expect.size()) == expect;
    case ExpectMatch::Exact:
      return answer == expect;
  }
  return false;
}

}  // namespace fulcrum::health
