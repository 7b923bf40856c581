#include "tcp/acceptor.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fulcrum/log.hpp"
#include "tcp/session.hpp"

namespace fulcrum::tcp {

namespace {

// Connections accepted per wakeup, so a connection storm cannot starve open sessions.
constexpr int kMaxAcceptsPerWakeup = 64;

// At most one descriptor-exhaustion warning per listener per this many milliseconds.
constexpr uint64_t kFdWarningIntervalMs = 5000;

// How long accepting pauses when out of descriptors and no pending client could be shed.
constexpr uint64_t kPauseOnFdExhaustionMs = 100;

}  // namespace

Acceptor::Acceptor(runtime::Worker& worker, runtime::ListenSocket socket)
    : worker_(worker), state_(socket.state), fd_(socket.fd) {
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

Acceptor::~Acceptor() {
  if (spare_fd_ >= 0) {
    ::close(spare_fd_);
  }
}

void Acceptor::start() {
  uv_timer_init(worker_.loop(), &resume_timer_);
  resume_timer_.data = this;
  uv_poll_init(worker_.loop(), &poll_, fd_);
  poll_.data = this;
  uv_poll_start(&poll_, UV_READABLE, onReadable_cb);
  open_ = true;
  started_ = true;
}

void Acceptor::close() {
  if (!open_) {
    // Never started (the worker never ran): the socket is still ours to close.
    if (fd_ >= 0 && !started_) {
      ::close(fd_);
      fd_ = -1;
    }
    return;
  }
  open_ = false;
  // The handle memory lives in this object, which the worker destroys only after its loop
  // has ended, so no close callback is needed.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&resume_timer_), nullptr);
  ::close(fd_);
  fd_ = -1;
}

void Acceptor::onReadable_cb(uv_poll_t* handle, int status, int /*events*/) {
  if (status < 0) {
    return;
  }
  static_cast<Acceptor*>(handle->data)->onReadable();
}

void Acceptor::onReadable() {
  // A spare lost to another thread during an earlier shortage is taken back at the first
  // wakeup with descriptors to spare, not at the next shortage, when none would be left.
  if (spare_fd_ < 0) {
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  for (int i = 0; i < kMaxAcceptsPerWakeup && open_ && !paused_; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    const int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      admit(fd, peer);
      continue;
    }

    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    }
    if (errno == EINTR || errno == ECONNABORTED) {
      continue;
    }

    state_->accept_error_total.fetch_add(1, std::memory_order_relaxed);
    if (errno == EMFILE || errno == ENFILE) {
      shedOneConnection();
      continue;
    }
    spdlog::error("accept failed listener={} reason={}", state_->config.name,
                  std::strerror(errno));
    return;
  }
}

void Acceptor::admit(int fd, const sockaddr_storage& peer) {
  state_->accepted_total.fetch_add(1, std::memory_order_relaxed);

  // Reserve a slot first, then check, so two workers cannot both take the last one.
  const uint32_t before = state_->active.fetch_add(1, std::memory_order_relaxed);
  if (before >= state_->config.max_connections) {
    state_->active.fetch_sub(1, std::memory_order_relaxed);
    state_->rejected_max_connections_total.fetch_add(1, std::memory_order_relaxed);
    if (!state_->at_capacity.exchange(true, std::memory_order_relaxed)) {
      spdlog::warn("listener at max_connections listener={} max_connections={} "
                   "action=close_new_clients",
                   state_->config.name, state_->config.max_connections);
    }
    ::close(fd);
    return;
  }
  if (state_->at_capacity.load(std::memory_order_relaxed) &&
      state_->at_capacity.exchange(false, std::memory_order_relaxed)) {
    spdlog::info("listener below max_connections listener={} max_connections={}",
                 state_->config.name, state_->config.max_connections);
  }

  // TCP_NODELAY comes from the listening socket (see openTcpListenSocket).
  Session::start(worker_, *state_, fd, peer);
}

void Acceptor::shedOneConnection() {
  const uint64_t now = uv_now(worker_.loop());
  if (last_fd_warning_ms_ == 0 || now - last_fd_warning_ms_ >= kFdWarningIntervalMs) {
    last_fd_warning_ms_ = now;
    spdlog::warn("accept failed listener={} reason=out_of_file_descriptors "
                 "action=close_new_clients",
                 state_->config.name);
  }

  // Pipes cached for splice hold descriptors too; new clients need them more.
  worker_.pipes().drop();

  // Workers share one descriptor table, so the number freed by closing the spare may be
  // taken by another thread before our accept() or open() runs. A lost spare is therefore
  // re-acquired on every episode rather than assumed to be there.
  if (spare_fd_ < 0) {
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  bool shed = false;
  if (spare_fd_ >= 0) {
    ::close(spare_fd_);
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      ::close(fd);
      shed = true;
    }
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  // Nothing could be shed: stop polling for a moment instead of spinning on a listening
  // socket that stays readable. Pending clients wait in the kernel's queue meanwhile.
  if (!shed) {
    pause();
  }
}

void Acceptor::pause() {
  if (!open_ || paused_) {
    return;
  }
  paused_ = true;
  uv_poll_stop(&poll_);
  uv_timer_start(&resume_timer_, onResume_cb, kPauseOnFdExhaustionMs, 0);
}

void Acceptor::onResume_cb(uv_timer_t* handle) {
  auto* self = static_cast<Acceptor*>(handle->data);
  self->paused_ = false;
  if (self->open_) {
    uv_poll_start(&self->poll_, UV_READABLE, onReadable_cb);
  }
}

}  // namespace fulcrum::tcp
