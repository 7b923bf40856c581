#pragma once

// Accepts connections on one worker's listening socket and starts a Session for each.
// Enforces the listener's max_connections across all workers and survives running out of
// file descriptors without spinning.

#include <uv.h>

#include "runtime/worker.hpp"

namespace fulcrum::tcp {

class Acceptor {
 public:
  Acceptor(runtime::Worker& worker, runtime::ListenSocket socket);
  ~Acceptor();

  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  void start();
  // Stops accepting and closes the listening socket. Idempotent.
  void close();

  // On reload: sessions accepted from now on belong to state; those already open keep the
  // state they started with. Worker thread only.
  void setState(runtime::ListenerState* state) { state_ = state; }
  const runtime::ListenerState* state() const { return state_; }

 private:
  static void onReadable_cb(uv_poll_t* handle, int status, int events);
  void onReadable();
  void admit(int fd, const sockaddr_storage& peer);
  void shedOneConnection();
  void pause();
  static void onResume_cb(uv_timer_t* handle);

  runtime::Worker& worker_;
  runtime::ListenerState* state_;
  int fd_;
  uv_poll_t poll_;
  uv_timer_t resume_timer_;
  bool open_ = false;
  bool paused_ = false;
  bool started_ = false;
  // A descriptor held in reserve: when accept() fails with EMFILE, releasing it lets us
  // accept and immediately close one pending connection so the client gets an answer and
  // the level-triggered poll does not spin on a queue we cannot drain.
  int spare_fd_ = -1;
  uint64_t last_fd_warning_ms_ = 0;
};

}  // namespace fulcrum::tcp
