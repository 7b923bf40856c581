#pragma once

// The control plane of a running Fulcrum: binds the listeners, builds the pools, starts the
// workers and owns the process lifecycle (signals, drain, exit). Runs on the main thread
// with its own libuv loop and never touches client bytes.

#include <uv.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "fulcrum/config.hpp"
#include "pool/pool.hpp"
#include "runtime/listener_state.hpp"
#include "runtime/worker.hpp"

namespace fulcrum::health {
class Checker;
}

namespace fulcrum::runtime {

// A failure to start (a listener that cannot bind, ...). The message is complete and
// meant for the operator.
class StartupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Server {
 public:
  explicit Server(Config config);
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener and starts the workers. Throws StartupError.
  void start();

  // Runs until SIGTERM/SIGINT and the drain that follows. Returns the process exit code.
  int run();

 private:
  static void onSignal_cb(uv_signal_t* handle, int signum);
  static void onSighup_cb(uv_signal_t* handle, int signum);
  static void onDrainTick_cb(uv_timer_t* handle);
  static void onDrainDeadline_cb(uv_timer_t* handle);

  void bindListeners(std::vector<std::vector<ListenSocket>>& per_worker);
  void startHealth();
  void onSignal(int signum);
  void onDrainTick();
  void stopWorkers(const char* why);
  void closeHandles();
  uint32_t activeSessions() const;

  Config config_;
  unsigned worker_count_;
  uv_loop_t loop_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_signal_t sighup_;
  uv_timer_t drain_tick_;
  uv_timer_t drain_deadline_;
  std::vector<std::unique_ptr<pool::Pool>> pools_;
  std::vector<std::unique_ptr<ListenerState>> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<health::Checker> checker_;
  bool draining_ = false;
  bool stopped_ = false;
  bool handles_open_ = false;
};

}  // namespace fulcrum::runtime
