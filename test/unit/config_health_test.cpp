// Health-check and UDP keys of the config: what they resolve to, and how bad values are
// refused.

#include <catch2/catch.hpp>

#include <string>

#include "fulcrum/config.hpp"

using namespace fulcrum;

namespace {

constexpr std::string_view kHead = R"([[listener]]
name = "db"
bind = "127.0.0.1:5432"
pool = "db"

)";

Config parse(std::string_view pool_text) {
  return parseConfig(std::string(kHead) + std::string(pool_text), "h.toml");
}

std::string errorOf(std::string_view pool_text) {
  try {
    parse(pool_text);
    return "(accepted)";
  } catch (const ConfigError& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("health: pool defaults and per-backend overrides resolve per backend", "[config]") {
  const Config config = parse(R"([pool.db]
on_down = "close"
all_down = "all"
slow_start = "20s"
backends = [
  { address = "127.0.0.1:5433" },
  { address = "127.0.0.1:5434", state = "draining", health = { port = 8009, interval = "1s" } },
  { address = "[::1]:5435", health = { address = "::1", fall = 5 } },
]

[pool.db.health]
type = "http"
interval = "3s"
timeout = "500ms"
rise = 3
fall = 2
port = 8008
path = "/primary"
status = ["200-204", 302]
body = "running"
passive_failures = 0
)");
  const PoolConfig& pool = config.pools.at(0);
  CHECK(pool.on_down == OnDown::Close);
  CHECK(pool.all_down == AllDownPolicy::All);
  CHECK(pool.slow_start == Millis{20000});

  const HealthCheckConfig& a = pool.backends[0].health;
  CHECK(a.type == HealthCheckType::Http);
  CHECK(a.interval == Millis{3000});
  CHECK(a.fast_interval == Millis{3000});  // Follows interval when not written.
  CHECK(a.timeout == Millis{500});
  CHECK(a.rise == 3);
  CHECK(a.fall == 2);
  CHECK(a.target.toString() == "127.0.0.1:8008");  // Patroni-style REST port.
  CHECK(a.http_path == "/primary");
  REQUIRE(a.http_status.size() == 2);
  CHECK(a.http_status[0].low == 200);
  CHECK(a.http_status[0].high == 204);
  CHECK(a.http_status[1].low == 302);
  CHECK(a.http_status[1].high == 302);
  CHECK(a.http_body == "running");
  CHECK(a.passive_failures == 0);

  const BackendConfig& b = pool.backends[1];
  CHECK(b.state == AdminState::Draining);
  CHECK(b.health.interval == Millis{1000});
  CHECK(b.health.fast_interval == Millis{1000});
  CHECK(b.health.target.toString() == "127.0.0.1:8009");
  CHECK(b.health.rise == 3);

  const HealthCheckConfig& c = pool.backends[2].health;
  CHECK(c.target.toString() == "[::1]:8008");
  CHECK(c.fall == 5);
  CHECK(c.interval == Millis{3000});
}

TEST_CASE("health: payloads in text and hex", "[config]") {
  const Config config = parse(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]

[pool.db.health]
type = "tcp_expect"
send = "INFO replication\r\n"
expect_hex = "72 6f 6c 65 3a 6d 61 73 74 65 72"
match = "contains"
fast_interval = "200ms"
)");
  const HealthCheckConfig& h = config.pools[0].backends[0].health;
  CHECK(h.send == "INFO replication\r\n");
  CHECK(h.expect == "role:master");
  CHECK(h.fast_interval == Millis{200});
  CHECK(h.interval == Millis{2000});
  CHECK(h.target.toString() == "127.0.0.1:6379");
}

TEST_CASE("health: no table means no active check and passive defaults", "[config]") {
  const Config config = parse(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]
)");
  const PoolConfig& pool = config.pools[0];
  CHECK(pool.health.type == HealthCheckType::None);
  CHECK(pool.backends[0].health.passive_failures == 3);
  CHECK(pool.backends[0].state == AdminState::Enabled);
  CHECK(pool.on_down == OnDown::Continue);
  CHECK(pool.all_down == AllDownPolicy::Refuse);
}

TEST_CASE("health: bad values are refused at their place with a fix", "[config]") {
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]
[pool.db.health]
type = "tcp_expect"
expect_hex = "72 6"
)") == "h.toml:10:14: [pool.db.health]: expect_hex is not hex: it has an odd number of hex "
       "digits; write pairs of digits such as \"50494e470d0a\"");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]
[pool.db.health]
type = "tcp_expect"
expect = "a"
expect_hex = "61"
)") == "h.toml:11:14: [pool.db.health]: expect and expect_hex are both set; keep one");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]
[pool.db.health]
type = "udp_expect"
)") == "h.toml:8:1: [pool.db.health]: type udp_expect needs send (or send_hex): the datagram "
       "that asks the backend for an answer, such as a DNS query in send_hex");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]
[pool.db.health]
type = "http"
method = "get"
)") == "h.toml:10:10: [pool.db.health]: method \"get\" is not an HTTP method; use capitals "
       "such as \"GET\" or \"HEAD\"");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]
[pool.db.health]
type = "http"
path = "/a b"
)") == "h.toml:10:8: [pool.db.health]: path \"/a b\" must start with / and contain no spaces "
       "or control characters");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]
[pool.db.health]
type = "http"
status = [99]
)") == "h.toml:10:11: [pool.db.health]: status 99 is not an HTTP status; use 100..599");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379" }]
[pool.db.health]
type = "tcp"
rise = 0
)") == "h.toml:10:8: [pool.db.health]: rise = 0 is out of range; expected an integer from 1 "
       "to 100");
  CHECK(errorOf(R"([pool.db]
on_down = "kill"
backends = [{ address = "127.0.0.1:6379" }]
)") == "h.toml:7:11: pool \"db\": on_down \"kill\" is not supported; expected one of continue, "
       "close");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379", state = "drain" }]
)") == "h.toml:7:51: pool \"db\" backend #1: state \"drain\" is not supported; did you mean "
       "\"draining\"? expected one of enabled, draining, disabled");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379", health = { port = 1 } }]
)") == "h.toml:7:52: pool \"db\" backend #1 health: health overrides have no effect: the pool "
       "has no active check; add a [pool.NAME.health] table with a type, or remove them");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:6379", health = { path = "/" } }]
[pool.db.health]
type = "tcp"
)") == "h.toml:7:61: unknown key \"path\" in pool \"db\" backend #1 health; allowed keys: "
       "interval, fast_interval, timeout, rise, fall, jitter, address, port");
}

TEST_CASE("udp listener keys and defaults", "[config]") {
  const Config config = parseConfig(R"([[listener]]
name = "game"
bind = "[::1]:7777"
protocol = "udp"
pool = "game"
replies = 0
max_sessions = 5000
table_full = "evict_oldest"

[[listener]]
name = "game-tcp"
bind = "[::1]:7777"
pool = "game"

[pool.game]
proxy_protocol = "v2"
backends = [{ address = "[::1]:7001" }]
)",
                                    "u.toml");
  const ListenerConfig& udp = config.listeners[0];
  CHECK(udp.protocol == Protocol::Udp);
  CHECK(udp.idle_timeout == kDefaultUdpIdleTimeout);
  CHECK(udp.replies == 0);
  CHECK(udp.max_sessions == 5000);
  CHECK(udp.table_full == TableFullPolicy::EvictOldest);
  // The same address over TCP is a different socket.
  CHECK(config.listeners[1].idle_timeout == Millis{300000});
}

TEST_CASE("access_log: off by default, stderr or an absolute path, logfmt or json",
          "[config]") {
  CHECK_FALSE(parse("[pool.db]\nbackends = [{ address = \"127.0.0.1:1\" }]\n")
                  .access_log.enabled);
  const Config config = parse(R"([pool.db]
backends = [{ address = "127.0.0.1:1" }]
[access_log]
path = "/var/log/fulcrum/access.log"
format = "json"
)");
  CHECK(config.access_log.enabled);
  CHECK(config.access_log.path == "/var/log/fulcrum/access.log");
  CHECK(config.access_log.format == AccessLogFormat::Json);
  CHECK(parse("[pool.db]\nbackends = [{ address = \"127.0.0.1:1\" }]\n[access_log]\n")
            .access_log.path == "stderr");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:1" }]
[access_log]
path = "access.log"
)") == "h.toml:9:8: [access_log]: path \"access.log\" is neither stderr, stdout nor an "
       "absolute file path; write \"stderr\" or a path such as \"/var/log/fulcrum/access.log\"");
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:1" }]
[access_log]
format = "csv"
)") == "h.toml:9:10: [access_log]: format \"csv\" is not supported; expected one of logfmt, "
       "json");
}

TEST_CASE("health: passive_cooldown is refused beside an active check", "[config]") {
  CHECK(errorOf(R"([pool.db]
backends = [{ address = "127.0.0.1:1" }]
[pool.db.health]
type = "tcp"
passive_cooldown = "5s"
)") == "h.toml:10:20: [pool.db.health]: passive_cooldown applies only without an active check "
       "(type = \"none\"); with type tcp probes bring a passively downed backend back: remove "
       "it");
}
