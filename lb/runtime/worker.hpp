#pragma once

// A data-plane worker: one thread, one libuv loop, one listening socket per listener
// (SO_REUSEPORT, so the kernel spreads new connections across workers) and the sessions it
// accepted. Nothing here is shared with other workers except the ListenerState counters and
// the pool snapshots, both read without locks.
//
// Control-plane calls (stopAccepting, shutdown) are thread-safe: they post a command and
// wake the loop with a uv_async_t.

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/buffer_pool.hpp"
#include "runtime/io_set.hpp"
#include "runtime/pipe_pool.hpp"
#include "runtime/listener_state.hpp"

namespace fulcrum::tcp {
class Session;
class Acceptor;
}  // namespace fulcrum::tcp

namespace fulcrum::udp {
class Listener;
}  // namespace fulcrum::udp

namespace fulcrum::runtime {

// One listening socket handed to a worker: the shared state and the worker's own fd.
struct ListenSocket {
  ListenerState* state = nullptr;
  int fd = -1;
};

class Worker {
 public:
  static constexpr size_t kScratchBytes = BufferPool::kBlockBytes;

  Worker(unsigned id, std::vector<ListenSocket> sockets);
  ~Worker();

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread. The worker owns the fds in sockets from here on.
  void start();
  void join();

  // Thread-safe. Closes the listening sockets; open sessions carry on.
  void stopAccepting();
  // Thread-safe. Closes every session (reason "shutdown") and ends the loop.
  void shutdown();
  // Thread-safe. Closes the sessions whose backend the control plane took down under
  // on_down = "close" (see BackendStats::close_generation).
  void closeDownedSessions();

  // Thread-safe reload steps, applied on the worker thread in the order posted:
  // start accepting on new sockets (the worker owns their fds), hand a listener's socket to
  // a new state (new sessions use it; open ones keep theirs), and stop accepting for a
  // listener that is gone (its open sessions carry on).
  void addSockets(std::vector<ListenSocket> sockets);
  void replaceState(const ListenerState* old_state, ListenerState* new_state);
  void retireListener(const ListenerState* state);

  unsigned id() const { return id_; }
  uint32_t activeSessions() const { return active_sessions_.load(std::memory_order_relaxed); }

  // For sessions and acceptors, on the worker thread only.
  uv_loop_t* loop() { return &loop_; }
  uint8_t* scratch() { return scratch_.get(); }
  BufferPool& buffers() { return buffers_; }
  IoSet& ioSet() { return io_set_; }
  PipePool& pipes() { return pipes_; }
  void linkSession(tcp::Session* session);
  void unlinkSession(tcp::Session* session);

  // For UDP listeners, on the worker thread: a UDP session opened or ended. UDP sessions
  // count in activeSessions() like TCP ones, so a drain waits for them too.
  void udpSessionOpened() { active_sessions_.fetch_add(1, std::memory_order_relaxed); }
  void udpSessionClosed() { active_sessions_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  enum Command : uint32_t { kStopAccepting = 1, kShutdown = 2, kCloseDowned = 4, kTasks = 8 };

  static void onAsync_cb(uv_async_t* handle);
  void onAsync();
  void run();
  void closeAcceptors();
  void closeDownedTcpSessions();
  void post(std::function<void()> task);
  void runTasks();

  unsigned id_;
  uv_loop_t loop_;
  uv_async_t async_;
  std::thread thread_;
  std::atomic<uint32_t> commands_{0};
  std::mutex tasks_mutex_;
  std::vector<std::function<void()>> tasks_;  // Guarded by tasks_mutex_.
  std::atomic<uint32_t> active_sessions_{0};
  std::vector<ListenSocket> sockets_;
  std::vector<std::unique_ptr<tcp::Acceptor>> acceptors_;
  std::vector<std::unique_ptr<udp::Listener>> udp_listeners_;
  std::unique_ptr<uint8_t[]> scratch_;
  BufferPool buffers_;
  IoSet io_set_;  // Session sockets; see io_set.hpp.
  PipePool pipes_;
  tcp::Session* sessions_head_ = nullptr;  // Intrusive list for shutdown.
  bool shutting_down_ = false;
};

}  // namespace fulcrum::runtime
