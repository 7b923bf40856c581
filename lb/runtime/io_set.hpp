#pragma once

// The worker's own epoll set for TCP session sockets, nested in its libuv loop through one
// uv_poll_t on the epoll descriptor.
//
// Why not one uv_poll_t per socket: libuv 1.44 spends three syscalls in every uv_poll_init
// (an epoll ADD and DEL to test the descriptor, and FIONBIO), turns interest changes into
// DEL + ADD pairs and removes watchers again at uv_close, so a short proxied connection cost
// 13 epoll_ctl and 2 ioctl calls out of about 38 syscalls. Here a session's socket costs one
// ADD, an occasional MOD or DEL when its interest changes, and nothing at close (closing the
// descriptor takes it out of the set, as we never duplicate session descriptors).
//
// Runs on the worker thread only. Events are level-triggered and dispatched in bounded
// batches; a watch whose owner was closed earlier in the same batch still gets its event,
// so owners must ignore events once closing (sessions are freed only in a later loop phase,
// when their timer's close callback runs).

#include <uv.h>

#include <cstdint>

namespace fulcrum::runtime {

struct IoWatch {
  // status is 0, or UV_EBADF when the socket reported an error (as uv_poll does); events is
  // UV_READABLE | UV_WRITABLE, limited to what the watch asked for.
  using Callback = void (*)(IoWatch& watch, int status, int events);

  int fd = -1;
  int events = 0;  // UV_READABLE | UV_WRITABLE currently in the set; 0 = not in the set.
  Callback callback = nullptr;
  void* owner = nullptr;
};

class IoSet {
 public:
  IoSet() = default;
  IoSet(const IoSet&) = delete;
  IoSet& operator=(const IoSet&) = delete;

  // Creates the epoll set and registers it (unreferenced: session timers keep the loop
  // alive, this does not). Throws std::system_error when epoll_create1 fails.
  void open(uv_loop_t* loop);
  // Stops the handle; the owner must run the loop once more before freeing this object.
  void close();

  // Sets the interest of watch.fd to events (0 = leave the set). A failed epoll_ctl leaves
  // the watch as it was and returns -errno; the caller treats it like a failed socket.
  int update(IoWatch& watch, int events);

  // The descriptor of watch is about to be closed, which removes it from the set by itself.
  static void forget(IoWatch& watch) { watch.events = 0; }

 private:
  static void onReadable_cb(uv_poll_t* handle, int status, int events);
  void dispatch();

  int epfd_ = -1;
  uv_poll_t poll_{};
  bool open_ = false;
};

}  // namespace fulcrum::runtime
