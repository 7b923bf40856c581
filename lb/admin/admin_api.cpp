#include "admin/admin_api.hpp"

#include <optional>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin/metrics.hpp"
#include "admin/status_json.hpp"
#include "admin/status_page.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/endpoint.hpp"

namespace fulcrum::admin {

namespace {

using json = nlohmann::ordered_json;

constexpr std::string_view kRoutes =
    "GET /, GET /metrics, GET /api/v1/status, GET /api/v1/failovers, GET /api/v1/pools/{pool}, "
    "GET /api/v1/pools/{pool}/backends/{backend}, "
    "POST /api/v1/pools/{pool}/backends/{backend}/drain|disable|enable, "
    "PUT /api/v1/pools/{pool}/backends/{backend}/weight, POST /api/v1/reload";

// Names listed in a "not found" message; a pool of 4096 backends must not make a 100 KiB one.
constexpr size_t kMaxNamesListed = 10;

Response jsonResponse(const json& body) {
  Response response;
  response.body = dumpJson(body) + "\n";
  return response;
}

Response unauthorized(std::string_view message, bool invalid) {
  Response response = errorResponse(401, message);
  response.headers.emplace_back("WWW-Authenticate",
                                invalid ? "Bearer realm=\"fulcrum\", error=\"invalid_token\""
                                        : "Bearer realm=\"fulcrum\"");
  return response;
}

Response methodNotAllowed(const Request& request, std::string_view allow) {
  Response response = errorResponse(
      405, fmt::format("{} is not allowed on {}; use {}", request.method, request.path, allow));
  response.headers.emplace_back("Allow", std::string(allow));
  return response;
}

// Compares in time independent of where the strings first differ, so the answer's timing
// does not reveal how much of a guessed token was right.
bool sameToken(std::string_view presented, std::string_view token) {
  if (presented.size() != token.size() || token.empty()) {
    return false;
  }
  unsigned char diff = 0;
  for (size_t i = 0; i < token.size(); ++i) {
    diff |= static_cast<unsigned char>(presented[i] ^ token[i]);
  }
  return diff == 0;
}

// The value of name=... in a query string, decoded; nullopt when absent or malformed.
std::optional<std::string> queryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != name) {
      continue;
    }
    std::string value;
    if (percentDecode(pair.substr(eq + 1), value)) {
      return value;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::string listNames(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxNamesListed; ++i) {
    out += (i == 0 ? "" : ", ") + names[i];
  }
  if (names.size() > kMaxNamesListed) {
    out += fmt::format(" and {} more", names.size() - kMaxNamesListed);
  }
  return out.empty() ? "none" : out;
}

const health::PoolStatus* findPool(const StatusView& view, std::string_view name) {
  for (const health::PoolStatus& pool : view.pools) {
    if (pool.name == name) {
      return &pool;
    }
  }
  return nullptr;
}

const health::BackendStatus* findBackend(const health::PoolStatus& pool, std::string_view key) {
  for (const health::BackendStatus& backend : pool.backends) {
    if (backend.key == key) {
      return &backend;
    }
  }
  return nullptr;
}

// The pool, or a 404 naming the pools there are.
const health::PoolStatus* lookupPool(const StatusView& view, const std::string& name,
                                     Response& error) {
  const health::PoolStatus* pool = findPool(view, name);
  if (pool == nullptr) {
    std::vector<std::string> names;
    for (const health::PoolStatus& p : view.pools) {
      names.push_back(p.name);
    }
    error = errorResponse(404, fmt::format("no pool named \"{}\"; pools: {}", name,
                                           listNames(names)));
  }
  return pool;
}

// The backend's canonical key (as the status lists it), or a 400 for text that is no
// address. Canonical, so [::0:1]:7001 and [::1]:7001 name the same backend.
std::optional<std::string> canonicalKey(const std::string& text, Response& error) {
  std::string why;
  const std::optional<Endpoint> endpoint = Endpoint::parse(text, &why);
  if (!endpoint) {
    error = errorResponse(400, fmt::format("backend \"{}\" is not an address: {}; write ip:port, "
                                           "with IPv6 in brackets such as [::1]:7001",
                                           text, why));
    return std::nullopt;
  }
  return endpoint->toString();
}

const health::BackendStatus* lookupBackend(const health::PoolStatus& pool, const std::string& key,
                                           Response& error) {
  const health::BackendStatus* backend = findBackend(pool, key);
  if (backend == nullptr) {
    std::vector<std::string> keys;
    for (const health::BackendStatus& b : pool.backends) {
      keys.push_back(b.key);
    }
    error = errorResponse(404, fmt::format("pool \"{}\" has no backend {}; its backends: {}",
                                           pool.name, key, listNames(keys)));
  }
  return backend;
}

// A backend named in a path: the pool (404), the address (400), the backend (404), in that
// order. On success key holds the backend's canonical key.
const health::BackendStatus* resolveBackend(const StatusView& view, const std::string& pool,
                                            const std::string& backend, std::string& key,
                                            Response& error) {
  const health::PoolStatus* p = lookupPool(view, pool, error);
  if (p == nullptr) {
    return nullptr;
  }
  std::optional<std::string> canonical = canonicalKey(backend, error);
  if (!canonical) {
    return nullptr;
  }
  key = std::move(*canonical);
  return lookupBackend(*p, key, error);
}

std::optional<AdminState> actionState(std::string_view action) {
  if (action == "drain") {
    return AdminState::Draining;
  }
  if (action == "disable") {
    return AdminState::Disabled;
  }
  if (action == "enable") {
    return AdminState::Enabled;
  }
  return std::nullopt;
}

// The weight from a body such as {"weight": 5}, or an error response.
std::optional<uint32_t> parseWeight(const std::string& body, Response& error) {
  constexpr std::string_view kExample = "{\"weight\": 5}";
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    error = errorResponse(400, fmt::format("the body is empty; send a JSON object such as {}",
                                           kExample));
    return std::nullopt;
  }

  json value;
  try {
    value = json::parse(body);
  } catch (const json::parse_error& e) {
    // e.what() starts with the library's "[json.exception.parse_error.101] " tag.
    std::string what = e.what();
    const size_t tag_end = what.find("] ");
    if (tag_end != std::string::npos) {
      what = what.substr(tag_end + 2);
    }
    error = errorResponse(400, fmt::format("the body is not valid JSON: {}", what));
    return std::nullopt;
  }

  if (!value.is_object()) {
    error = errorResponse(422, fmt::format("the body is a JSON {}; send an object such as {}",
                                           value.type_name(), kExample));
    return std::nullopt;
  }
  for (const auto& [key, unused] : value.items()) {
    if (key != "weight") {
      error = errorResponse(422, fmt::format("unknown key \"{}\" in the body; the only key is "
                                             "weight, as in {}",
                                             key, kExample));
      return std::nullopt;
    }
  }
  const auto it = value.find("weight");
  if (it == value.end()) {
    error = errorResponse(422, fmt::format("the body has no \"weight\"; send {}", kExample));
    return std::nullopt;
  }

  const std::string expected = fmt::format("an integer from 0 to {} (0 = takes no new flows)",
                                           kMaxWeight);
  if (!it->is_number_integer()) {
    error = errorResponse(422, fmt::format("weight is {}; expected {}", dumpJson(*it), expected));
    return std::nullopt;
  }
  if (it->is_number_unsigned() ? it->get<uint64_t>() > kMaxWeight : it->get<int64_t>() < 0) {
    error = errorResponse(422, fmt::format("weight {} is out of range; expected {}",
                                           dumpJson(*it), expected));
    return std::nullopt;
  }
  return static_cast<uint32_t>(it->get<int64_t>());
}

// The answer to an action: the backend as it is now.
Response actionResult(const StatusView& view, const std::string& pool, const std::string& key,
                      bool changed) {
  const health::PoolStatus* p = findPool(view, pool);
  const health::BackendStatus* b = p == nullptr ? nullptr : findBackend(*p, key);
  if (b == nullptr) {
    return errorResponse(500, fmt::format("backend {} of pool \"{}\" vanished during the action",
                                          key, pool));
  }
  return jsonResponse(json{{"pool", pool}, {"changed", changed}, {"backend", backendJson(*b)}});
}

}  // namespace

bool percentDecode(std::string_view text, std::string& out) {
  out.clear();
  out.reserve(text.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
      return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
      return c - 'A' + 10;
    }
    return -1;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) {
      return false;
    }
    const int high = hex(text[i + 1]);
    const int low = hex(text[i + 2]);
    if (high < 0 || low < 0) {
      return false;
    }
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return true;
}

AdminApi::AdminApi(std::string token, ApiHooks hooks)
    : token_(std::move(token)), hooks_(std::move(hooks)) {}

Response AdminApi::handle(const Request& request) const {
  if (request.transport == Transport::Tcp && !token_.empty()) {
    Response refused = authorize(request);
    if (refused.status != 200) {
      return refused;
    }
  }
  return route(request);
}

// 200 (an empty response) when the request carries the token, else the 401 to send.
Response AdminApi::authorize(const Request& request) const {
  if (const std::string* header = request.header("Authorization")) {
    const std::string_view value = *header;
    const size_t space = value.find(' ');
    if (space == std::string_view::npos || !equalsIgnoreCase(value.substr(0, space), "Bearer")) {
      return unauthorized("the Authorization header must use the Bearer scheme: "
                          "Authorization: Bearer <token>",
                          true);
    }
    std::string_view presented = value.substr(space + 1);
    while (!presented.empty() && presented.front() == ' ') {
      presented.remove_prefix(1);
    }
    if (!sameToken(presented, token_)) {
      return unauthorized("the token does not match [admin] token", true);
    }
    return Response{};
  }

  // A browser opening the status page cannot set a header; the page's script sends the
  // header on its own requests. Elsewhere the token stays out of URLs (shell history,
  // proxy logs), so only GET / takes it there.
  const bool page = request.path == "/" && (request.method == "GET" || request.method == "HEAD");
  if (const std::optional<std::string> presented = queryParam(request.query, "token");
      presented && page) {
    if (!sameToken(*presented, token_)) {
      return unauthorized("the token does not match [admin] token", true);
    }
    return Response{};
  }
  return unauthorized("missing token; send the header Authorization: Bearer <token>", false);
}

Response AdminApi::route(const Request& request) const {
  if (request.path.empty() || request.path[0] != '/') {
    return errorResponse(400, fmt::format("request target \"{}\" is not a path; use one of: {}",
                                          request.target, kRoutes));
  }

  // Split first, decode each segment after, so an encoded "/" (%2F) stays inside its segment.
  std::vector<std::string> parts;
  std::string_view rest = std::string_view(request.path).substr(1);
  while (!rest.empty()) {
    const size_t slash = rest.find('/');
    std::string decoded;
    if (!percentDecode(rest.substr(0, slash), decoded)) {
      return errorResponse(400, fmt::format("malformed percent-encoding in path \"{}\"",
                                            request.path));
    }
    parts.push_back(std::move(decoded));
    if (slash == std::string_view::npos) {
      break;
    }
    rest = rest.substr(slash + 1);
    if (rest.empty()) {
      parts.emplace_back();  // A trailing slash is an empty last segment: no route has one.
    }
  }

  const bool get = request.method == "GET" || request.method == "HEAD";
  const auto notFound = [&] {
    return errorResponse(404, fmt::format("no such path: {}; paths are {}", request.path,
                                          kRoutes));
  };

  if (parts.empty()) {
    if (!get) {
      return methodNotAllowed(request, "GET, HEAD");
    }
    Response page;
    page.content_type = "text/html; charset=utf-8";
    page.body = renderStatusPage(hooks_.view());
    page.headers.emplace_back("Content-Security-Policy", kStatusPagePolicy);
    return page;
  }
  if (parts.size() == 1 && parts[0] == "metrics") {
    if (!get) {
      return methodNotAllowed(request, "GET, HEAD");
    }
    Response metrics;
    metrics.content_type = kMetricsContentType;
    metrics.body = renderMetrics(hooks_.view());
    return metrics;
  }
  if (parts.size() < 3 || parts[0] != "api" || parts[1] != "v1") {
    return notFound();
  }

  if (parts.size() == 3 && parts[2] == "reload") {
    if (request.method != "POST") {
      return methodNotAllowed(request, "POST");
    }
    const std::string error = hooks_.reload();
    if (!error.empty()) {
      // The running config stays; the message names the file, line and fix.
      return errorResponse(422, fmt::format("reload refused, the running config stays: {}",
                                            error));
    }
    return jsonResponse(json{{"reloaded", true}});
  }
  if (parts.size() == 3 && parts[2] == "status") {
    if (!get) {
      return methodNotAllowed(request, "GET, HEAD");
    }
    return jsonResponse(statusJson(hooks_.view()));
  }
  if (parts.size() == 3 && parts[2] == "failovers") {
    if (!get) {
      return methodNotAllowed(request, "GET, HEAD");
    }
    return jsonResponse(failoversJson(hooks_.view()));
  }
  if (parts[2] != "pools" || parts.size() == 3 || parts.size() == 5 || parts.size() > 7 ||
      (parts.size() >= 5 && parts[4] != "backends")) {
    return notFound();
  }

  const std::string& pool = parts[3];
  if (parts.size() == 4 || parts.size() == 6) {
    if (!get) {
      return methodNotAllowed(request, "GET, HEAD");
    }
    const StatusView view = hooks_.view();
    Response error;
    const health::PoolStatus* p = lookupPool(view, pool, error);
    if (p == nullptr) {
      return error;
    }
    const json full = statusJson(StatusView{view.version, view.uptime_ms, view.draining, {},
                                            {*p}});
    if (parts.size() == 4) {
      return jsonResponse(full["pools"][0]);
    }
    const std::optional<std::string> key = canonicalKey(parts[5], error);
    if (!key) {
      return error;
    }
    const health::BackendStatus* b = lookupBackend(*p, *key, error);
    if (b == nullptr) {
      return error;
    }
    return jsonResponse(json{{"pool", pool}, {"backend", backendJson(*b)}});
  }

  const std::string& action = parts[6];
  if (action == "weight") {
    if (request.method != "PUT") {
      return methodNotAllowed(request, "PUT");
    }
    return setWeight(request, pool, parts[5]);
  }
  if (!actionState(action)) {
    return errorResponse(404, fmt::format("no backend action \"{}\"; actions are drain, disable, "
                                          "enable (POST) and weight (PUT)",
                                          action));
  }
  if (request.method != "POST") {
    return methodNotAllowed(request, "POST");
  }
  return backendAction(request, pool, parts[5], action);
}

Response AdminApi::backendAction(const Request& /*request*/, const std::string& pool,
                                 const std::string& backend, const std::string& action) const {
  const AdminState target = *actionState(action);
  Response error;
  std::string key;
  const StatusView before = hooks_.view();
  const health::BackendStatus* b = resolveBackend(before, pool, backend, key, error);
  if (b == nullptr) {
    return error;
  }
  const bool changed = b->admin != target;

  const std::string refused = hooks_.set_state(pool, key, target);
  if (!refused.empty()) {
    return errorResponse(409, refused);
  }

  return actionResult(hooks_.view(), pool, key, changed);
}

Response AdminApi::setWeight(const Request& request, const std::string& pool,
                             const std::string& backend) const {
  Response error;
  std::string key;
  const StatusView before = hooks_.view();
  const health::BackendStatus* b = resolveBackend(before, pool, backend, key, error);
  if (b == nullptr) {
    return error;
  }
  const std::optional<uint32_t> weight = parseWeight(request.body, error);
  if (!weight) {
    return error;
  }
  const bool changed = b->weight != *weight;

  const std::string refused = hooks_.set_weight(pool, key, *weight);
  if (!refused.empty()) {
    return errorResponse(409, refused);
  }

  return actionResult(hooks_.view(), pool, key, changed);
}

}  // namespace fulcrum::admin
