#pragma once

// The control plane of a running Fulcrum: binds the listeners, builds the pools, starts the
// workers and owns the process lifecycle (signals, drain, exit). Runs on the main thread
// with its own libuv loop and never touches client bytes.

#include <uv.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/config.hpp"
#include "pool/pool.hpp"
#include "runtime/listener_state.hpp"
#include "runtime/worker.hpp"

namespace fulcrum::health {
class Checker;
}

namespace fulcrum::admin {
class AdminServer;
}

namespace fulcrum::runtime {

class AccessLog;

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

  // Re-reads the config file and applies it without dropping sessions: pools and backends
  // are updated in place (health, counters and operator changes stay), new listeners are
  // bound before anything changes, removed ones stop accepting while their sessions
  // finish. An invalid config or a failed bind changes nothing. Control-plane thread only.
  // Returns an empty string on success, else the reason.
  std::string reload(std::string_view trigger);

 private:
  static void onSignal_cb(uv_signal_t* handle, int signum);
  static void onSighup_cb(uv_signal_t* handle, int signum);
  static void onSigusr1_cb(uv_signal_t* handle, int signum);
  static void onDrainTick_cb(uv_timer_t* handle);
  static void onDrainDeadline_cb(uv_timer_t* handle);

  void bindListeners(std::vector<std::vector<ListenSocket>>& per_worker);
  std::unique_ptr<ListenerState> bindListener(const ListenerConfig& config, pool::Pool* pool,
                                              std::vector<std::vector<ListenSocket>>& per_worker);
  pool::Pool* findPool(std::string_view name) const;
  // mode = "xdp": loads the program once, attaches it to the listener's interface and
  // returns true, or, when XDP is unavailable, says so in one line and returns false to let
  // the splicer serve the VIP (xdp_fallback = "splicer"); with xdp_fallback = "none" throws
  // StartupError. The VIP itself is programmed later by addXdpVips, once pools are final.
  bool attachXdp(ListenerState& state);
  // Programs the VIP of every attached XDP listener not yet in the maps. Throws StartupError.
  void addXdpVips();
  // Detaches from interfaces no XDP listener uses any more.
  void detachUnusedXdp();
  void startHealth();
  void startWatchdog();
  void startAdmin();
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
  uv_signal_t sigusr1_;
  uv_timer_t watchdog_;
  bool watchdog_open_ = false;
  uv_timer_t drain_tick_;
  uv_timer_t drain_deadline_;
  std::vector<std::unique_ptr<pool::Pool>> pools_;
  std::vector<std::unique_ptr<ListenerState>> listeners_;
  // Replaced by reloads but possibly still used by open sessions; freed at exit.
  std::vector<std::unique_ptr<ListenerState>> retired_listeners_;
  std::vector<std::unique_ptr<pool::Pool>> retired_pools_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<health::Checker> checker_;
  std::unique_ptr<AccessLog> access_log_;
  std::unique_ptr<admin::AdminServer> admin_;  // Null unless [admin] is configured.
  std::unique_ptr<xdp::XdpManager> xdp_;       // Null until an XDP listener attaches.
  bool draining_ = false;
  bool stopped_ = false;
  bool handles_open_ = false;
};

}  // namespace fulcrum::runtime
