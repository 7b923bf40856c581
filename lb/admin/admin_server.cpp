#include "admin/admin_server.hpp"

#include "fulcrum/log.hpp"
#include "health/checker.hpp"
#include "runtime/listener_state.hpp"

namespace fulcrum::admin {

namespace {

HttpLimits limitsOf(const AdminConfig& config) {
  HttpLimits limits;
  limits.max_body_bytes = config.max_body;
  limits.max_connections = config.max_connections;
  limits.request_timeout = config.request_timeout;
  return limits;
}

bool isLoopback(const Endpoint& address) {
  const std::string ip = address.ipString();
  return ip == "::1" || ip.rfind("127.", 0) == 0;
}

}  // namespace

AdminServer::AdminServer(uv_loop_t* loop, const AdminConfig& config, AdminSources sources)
    : loop_(loop),
      config_(config),
      sources_(std::move(sources)),
      api_(config.token,
           ApiHooks{
               [this] { return view(); },
               [this](std::string_view pool, std::string_view backend, AdminState state) {
                 return sources_.checker()->setAdminState(pool, backend, state);
               },
               [this](std::string_view pool, std::string_view backend, uint32_t weight) {
                 return sources_.checker()->setWeight(pool, backend, weight);
               },
               [this] { return sources_.reload(); }}),
      http_(loop, limitsOf(config), [this](const Request& request) {
        return api_.handle(request);
      }) {}

void AdminServer::start() {
  started_ms_ = uv_now(loop_);
  if (config_.listen) {
    const Endpoint bound = http_.listenTcp(*config_.listen);
    spdlog::info("admin listening address={} transport=tcp token=required", bound.toString());
    if (!isLoopback(bound)) {
      // Allowed (a management network), but the token is then all that guards the
      // operator actions: say so once.
      spdlog::warn("admin listening on a non-loopback address address={} "
                   "hint=\"prefer 127.0.0.1 or a unix socket\"",
                   bound.toString());
    }
  }
  if (!config_.socket.empty()) {
    http_.listenUnix(config_.socket);
    spdlog::info("admin listening socket={} transport=unix mode=0600", config_.socket);
  }
}

void AdminServer::close() {
  http_.close();
}

StatusView AdminServer::view() const {
  StatusView view;
  view.version = FULCRUM_VERSION;
  view.uptime_ms = uv_now(loop_) - started_ms_;
  view.draining = sources_.draining();
  view.listeners = sources_.listeners();
  view.pools = sources_.checker()->status();
  return view;
}

}  // namespace fulcrum::admin
