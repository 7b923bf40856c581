#pragma once

// The admin API: authentication, routing and the operator actions, as a function from a
// parsed Request to a Response. No sockets here (see HttpServer) and no direct access to the
// checker (see ApiHooks), so every route and every refusal can be unit-tested.
//
// Routes (README's Operations section is the reference):
//   GET  /                                              status page (HTML)
//   GET  /metrics                                       Prometheus text
//   GET  /api/v1/status                                 everything, as JSON
//   GET  /api/v1/failovers                              failover records, as JSON
//   GET  /api/v1/pools/{pool}                           one pool
//   GET  /api/v1/pools/{pool}/backends/{backend}        one backend
//   POST /api/v1/pools/{pool}/backends/{backend}/drain|disable|enable
//   PUT  /api/v1/pools/{pool}/backends/{backend}/weight  body {"weight": N}
// {backend} is ip:port with IPv6 in brackets ([::1]:7001), percent-encoded or not. HEAD is
// answered like GET without the body. Errors are JSON: {"error": "...", "status": N}.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "admin/http_types.hpp"
#include "admin/status_view.hpp"
#include "fulcrum/types.hpp"

namespace fulcrum::admin {

// What the API needs from the running Fulcrum; all called on the control plane's loop.
struct ApiHooks {
  std::function<StatusView()> view;
  // Each returns an empty string on success, or a message for the operator.
  std::function<std::string(std::string_view pool, std::string_view backend, AdminState)>
      set_state;
  std::function<std::string(std::string_view pool, std::string_view backend, uint32_t weight)>
      set_weight;
  // Re-reads and applies the config file (as SIGHUP does).
  std::function<std::string()> reload;
};

class AdminApi {
 public:
  // token: what TCP requests must present (Authorization: Bearer, or ?token= for a browser
  // opening the page); empty = no check, which the config allows only without TCP.
  AdminApi(std::string token, ApiHooks hooks);

  Response handle(const Request& request) const;

 private:
  Response authorize(const Request& request) const;
  Response route(const Request& request) const;
  Response backendAction(const Request& request, const std::string& pool,
                         const std::string& backend, const std::string& action) const;
  Response setWeight(const Request& request, const std::string& pool,
                     const std::string& backend) const;

  std::string token_;
  ApiHooks hooks_;
};

// Decodes %XX escapes; returns false on a malformed escape. '+' stays '+' (paths, not forms).
bool percentDecode(std::string_view text, std::string& out);

}  // namespace fulcrum::admin
