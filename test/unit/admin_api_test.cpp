// The admin API without sockets: routes, authentication, backend keys, the weight body, and
// the renderers' escaping, on a status view built by hand and hooks that record calls.

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "admin/admin_api.hpp"
#include "admin/metrics.hpp"
#include "admin/status_page.hpp"

using namespace fulcrum;
using namespace fulcrum::admin;

namespace {

constexpr const char* kToken = "0123456789abcdef0123";

// One pool "web" with an IPv4 and an IPv6 backend; actions are recorded and applied to it.
struct Fixture {
  std::vector<health::PoolStatus> pools;
  std::vector<std::string> calls;
  std::string reload_error;
  AdminApi api;

  Fixture()
      : api(kToken, ApiHooks{[this] { return view(); },
                             [this](std::string_view pool, std::string_view key, AdminState s) {
                               calls.push_back(fmt::format("state {} {} {}", pool, key,
                                                           toString(s)));
                               backend(key).admin = s;
                               return std::string();
                             },
                             [this](std::string_view pool, std::string_view key, uint32_t w) {
                               calls.push_back(fmt::format("weight {} {} {}", pool, key, w));
                               backend(key).weight = w;
                               return std::string();
                             },
                             [this] {
                               calls.push_back("reload");
                               return reload_error;
                             }}) {
    health::PoolStatus pool;
    pool.name = "web";
    for (const char* key : {"127.0.0.1:7001", "[::1]:7002"}) {
      health::BackendStatus b;
      b.key = key;
      b.stats = std::make_shared<pool::BackendStats>();
      pool.backends.push_back(b);
    }
    pools.push_back(pool);
  }

  StatusView view() const {
    StatusView v;
    v.version = "test";
    v.pools = pools;
    return v;
  }

  health::BackendStatus& backend(std::string_view key) {
    for (auto& b : pools[0].backends) {
      if (b.key == key) {
        return b;
      }
    }
    FAIL("no backend " << key);
    return pools[0].backends[0];
  }

  Response call(std::string method, std::string target, std::string body = {},
                bool with_token = true, Transport transport = Transport::Tcp) {
    Request r;
    r.method = std::move(method);
    r.target = target;
    const size_t q = target.find('?');
    r.path = target.substr(0, q);
    r.query = q == std::string::npos ? "" : target.substr(q + 1);
    r.body = std::move(body);
    r.transport = transport;
    if (with_token) {
      r.headers.emplace_back("authorization", std::string("bearer ") + kToken);
    }
    return api.handle(r);
  }
};

}  // namespace

// Over TCP the token is required (header, or the query for GET / only); the unix socket
// skips it.
TEST_CASE("admin api: token checks by transport", "[admin]") {
  Fixture f;
  CHECK(f.call("GET", "/api/v1/status").status == 200);
  const Response missing = f.call("GET", "/api/v1/status", {}, false);
  CHECK(missing.status == 401);
  CHECK(missing.body.find("missing token") != std::string::npos);
  CHECK(f.call("GET", std::string("/?x=1&token=") + kToken, {}, false).status == 200);
  CHECK(f.call("GET", "/?token=0123456789abcdef0124", {}, false).status == 401);
  CHECK(f.call("GET", std::string("/api/v1/status?token=") + kToken, {}, false).status == 401);
  CHECK(f.call("GET", "/api/v1/status", {}, false, Transport::Unix).status == 200);
  // Refused before routing: an unknown path does not reveal itself without the token.
  CHECK(f.call("GET", "/nope", {}, false).status == 401);
}

// IPv6 keys work raw or percent-encoded, and are matched in canonical form.
TEST_CASE("admin api: backend keys raw, encoded and canonical", "[admin]") {
  Fixture f;
  CHECK(f.call("POST", "/api/v1/pools/web/backends/[::1]:7002/drain").status == 200);
  CHECK(f.call("POST", "/api/v1/pools/web/backends/%5B%3A%3A1%5D%3A7002/disable").status ==
        200);
  CHECK(f.call("POST", "/api/v1/pools/web/backends/[0:0::1]:7002/enable").status == 200);
  CHECK(f.calls == std::vector<std::string>{"state web [::1]:7002 draining",
                                            "state web [::1]:7002 disabled",
                                            "state web [::1]:7002 enabled"});
  CHECK(f.call("POST", "/api/v1/pools/web/backends/[::1]/drain").status == 400);
  CHECK(f.call("POST", "/api/v1/pools/web/backends/127.0.0.1%2F7001/drain").status == 400);
  CHECK(f.call("POST", "/api/v1/pools/web/backends/127.0.0.1:7009/drain").status == 404);
  CHECK(f.calls.size() == 3);  // Refused actions never reach the checker.
}

// The weight body: only {"weight": integer 0..kMaxWeight} is applied.
TEST_CASE("admin api: weight body validation", "[admin]") {
  Fixture f;
  const std::string path = "/api/v1/pools/web/backends/127.0.0.1:7001/weight";
  CHECK(f.call("PUT", path, R"({"weight": 0})").status == 200);
  CHECK(f.call("PUT", path, R"({"weight": 1000})").status == 200);
  for (const char* bad : {R"({"weight": 1001})", R"({"weight": -1})", R"({"weight": 1e3})",
                          R"({"weight": true})", R"({"weight": null})", R"({"weight": 1, "x": 2})",
                          R"({"weight": 18446744073709551616})", "[]", "7"}) {
    INFO(bad);
    CHECK(f.call("PUT", path, bad).status == 422);
  }
  for (const char* malformed : {"", "{", "{\"weight\": }", "\xff\xfe"}) {
    INFO(malformed);
    CHECK(f.call("PUT", path, malformed).status == 400);
  }
  // Deep nesting is parsed without recursion and refused like any other non-object.
  CHECK(f.call("PUT", path, std::string(20000, '[') + std::string(20000, ']')).status == 422);
  CHECK(f.calls == std::vector<std::string>{"weight web 127.0.0.1:7001 0",
                                            "weight web 127.0.0.1:7001 1000"});
}

// Routes answer with their content types; unknown paths and methods are refused.
TEST_CASE("admin api: routes and methods", "[admin]") {
  Fixture f;
  CHECK(f.call("GET", "/").content_type.rfind("text/html", 0) == 0);
  CHECK(f.call("HEAD", "/metrics").content_type == kMetricsContentType);
  CHECK(f.call("GET", "/api/v1/pools/web").status == 200);
  CHECK(f.call("GET", "/api/v1/pools/nope").status == 404);
  CHECK(f.call("GET", "/api/v1/pools/web/backends/127.0.0.1:7001").status == 200);
  CHECK(f.call("GET", "/api/v1/status/").status == 404);
  CHECK(f.call("GET", "/api/v2/status").status == 404);
  CHECK(f.call("GET", "//").status == 404);
  CHECK(f.call("DELETE", "/api/v1/status").status == 405);
  CHECK(f.call("GET", "/api/v1/pools/web/backends/127.0.0.1:7001/weight").status == 405);
  CHECK(f.call("GET", "*").status == 400);
}

// Names that need escaping cannot break out of a label or an HTML attribute.
TEST_CASE("admin api: renderers escape what they quote", "[admin]") {
  CHECK(escapeLabel("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(escapeHtml("<a href='x'>&\"") == "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
  CHECK(humanBytes(512) == "512 B");
  CHECK(humanBytes(1536) == "1.5 KiB");

  Fixture f;
  f.pools[0].backends[0].recent.push_back({0, false, 3, "expected \"+PONG\" <got> \xff"});
  const std::string page = renderStatusPage(f.view());
  CHECK(page.find("&quot;+PONG&quot; &lt;got&gt;") != std::string::npos);
  CHECK(page.find("<got>") == std::string::npos);
  const Response status = f.call("GET", "/api/v1/status");
  CHECK(status.status == 200);  // Invalid UTF-8 in a probe detail does not fail the document.
}

// percentDecode refuses truncated and non-hex escapes.
TEST_CASE("admin api: percent decoding", "[admin]") {
  std::string out;
  CHECK(percentDecode("%5B%3a%3A1%5D", out));
  CHECK(out == "[::1]");
  CHECK_FALSE(percentDecode("%", out));
  CHECK_FALSE(percentDecode("%5", out));
  CHECK_FALSE(percentDecode("%G0", out));
  CHECK(percentDecode("a+b", out));
  CHECK(out == "a+b");
}

TEST_CASE("admin api: reload is POST only and reports a refused config", "[admin]") {
  Fixture f;
  CHECK(f.call("GET", "/api/v1/reload").status == 405);
  const Response ok = f.call("POST", "/api/v1/reload");
  CHECK(ok.status == 200);
  CHECK(ok.body.find("\"reloaded\":true") != std::string::npos);
  f.reload_error = "x.toml:3:1: unknown key \"colour\"";
  const Response bad = f.call("POST", "/api/v1/reload");
  CHECK(bad.status == 422);
  CHECK(bad.body.find("reload refused, the running config stays: x.toml:3:1") !=
        std::string::npos);
  CHECK(f.calls == std::vector<std::string>{"reload", "reload"});
}
