#include "runtime/io_set.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace fulcrum::runtime {

namespace {

// Events taken per epoll_wait, and rounds per wakeup: bounded work, so a burst on the
// sessions cannot starve the acceptors and UDP listeners sharing the loop.
constexpr int kMaxEvents = 256;
constexpr int kMaxRounds = 4;

uint32_t toEpoll(int events) {
  uint32_t out = 0;
  if (events & UV_READABLE) {
    out |= EPOLLIN;
  }
  if (events & UV_WRITABLE) {
    out |= EPOLLOUT;
  }
  return out;
}

}  // namespace

void IoSet::open(uv_loop_t* loop) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "epoll_create1 for sessions");
  }
  uv_poll_init(loop, &poll_, epfd_);
  poll_.data = this;
  uv_poll_start(&poll_, UV_READABLE, onReadable_cb);
  uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
  open_ = true;
}

void IoSet::close() {
  if (!open_) {
    return;
  }
  open_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
  ::close(epfd_);
  epfd_ = -1;
}

int IoSet::update(IoWatch& watch, int events) {
  if (events == watch.events) {
    return 0;
  }
  epoll_event ev{};
  ev.events = toEpoll(events);
  ev.data.ptr = &watch;
  const int op = events == 0 ? EPOLL_CTL_DEL
                 : watch.events == 0 ? EPOLL_CTL_ADD
                                     : EPOLL_CTL_MOD;
  if (::epoll_ctl(epfd_, op, watch.fd, &ev) != 0) {
    return -errno;
  }
  watch.events = events;
  return 0;
}

void IoSet::onReadable_cb(uv_poll_t* handle, int status, int /*events*/) {
  if (status < 0) {
    return;
  }
  static_cast<IoSet*>(handle->data)->dispatch();
}

void IoSet::dispatch() {
  epoll_event events[kMaxEvents];
  for (int round = 0; round < kMaxRounds && open_; ++round) {
    const int n = ::epoll_wait(epfd_, events, kMaxEvents, 0);
    for (int i = 0; i < n; ++i) {
      auto& watch = *static_cast<IoWatch*>(events[i].data.ptr);
      uint32_t got = events[i].events;
      // As libuv does: an error or hang-up wakes whatever the watch waits for, so the read
      // or write that follows finds the end-of-stream or the error itself.
      if (got & (EPOLLERR | EPOLLHUP)) {
        got |= toEpoll(watch.events);
      }
      int uv_events = 0;
      if (got & EPOLLIN) {
        uv_events |= UV_READABLE;
      }
      if (got & EPOLLOUT) {
        uv_events |= UV_WRITABLE;
      }
      uv_events &= watch.events;
      const int status = (got & EPOLLERR) ? UV_EBADF : 0;
      if (status == 0 && uv_events == 0) {
        continue;
      }
      watch.callback(watch, status, uv_events);
    }
    if (n < kMaxEvents) {
      return;
    }
  }
}

}  // namespace fulcrum::runtime
