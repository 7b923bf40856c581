#pragma once

// The admin endpoint of a running Fulcrum: the HTTP server (TCP and/or unix socket, from
// [admin]) in front of the admin API, on the control plane's loop. Owned by runtime::Server,
// started once everything else is up and closed with the server's other handles.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "admin/admin_api.hpp"
#include "admin/http_server.hpp"
#include "fulcrum/config.hpp"

namespace fulcrum::health {
class Checker;
}

namespace fulcrum::runtime {
struct ListenerState;
}

namespace fulcrum::admin {

// What the admin endpoint reads from the server, asked afresh on every request so that a
// server that replaces its checker or listeners is followed.
struct AdminSources {
  std::function<std::vector<const runtime::ListenerState*>()> listeners;
  std::function<health::Checker*()> checker;
  std::function<bool()> draining;
  std::function<std::string()> reload;  // Empty string on success, else the reason.
};

class AdminServer {
 public:
  AdminServer(uv_loop_t* loop, const AdminConfig& config, AdminSources sources);

  // Listens where [admin] says and logs "admin listening" once per address. Throws
  // HttpListenError with an operator message.
  void start();

  // Stops listening and closes admin connections; the loop must turn afterwards.
  void close();

 private:
  StatusView view() const;

  uv_loop_t* loop_;
  AdminConfig config_;
  AdminSources sources_;
  AdminApi api_;
  HttpServer http_;
  uint64_t started_ms_ = 0;
};

}  // namespace fulcrum::admin
