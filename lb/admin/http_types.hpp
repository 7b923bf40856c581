#pragma once

// One HTTP request as the admin server hands it over, and the response a handler returns.
// Plain data, no I/O, so the API layer can be tested without sockets.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fulcrum::admin {

// How a request arrived: the token is asked for over TCP only (see AdminConfig).
enum class Transport { Tcp, Unix };

struct Request {
  std::string method;  // "GET", "POST", ... as http-parser names it.
  std::string target;  // The request target exactly as sent, such as "/metrics?x=1".
  std::string path;    // target up to '?', still percent-encoded.
  std::string query;   // After '?', still percent-encoded; empty when absent.
  std::vector<std::pair<std::string, std::string>> headers;  // In arrival order.
  std::string body;
  Transport transport = Transport::Tcp;

  // The first header with this name (ASCII case-insensitive), or null.
  const std::string* header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // Extra, such as Allow.
};

// ASCII case-insensitive comparison, as header names and auth schemes are compared.
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// "OK", "Not Found", ... for the status line; "Unknown" for codes the server never sends.
const char* reasonPhrase(int status);

// {"error": message, "status": status} as a JSON response.
Response errorResponse(int status, std::string_view message);

}  // namespace fulcrum::admin
