#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "balance/ring_hash.hpp"
#include "config/prescan.hpp"
#include "config_test_util.hpp"
#include "fulcrum/config.hpp"

using namespace fulcrum;
using fulcrum::config_testing::errorOf;
using fulcrum::config_testing::toml;

namespace {

// A valid listener and pool, appended after the part under test so that part keeps its line
// numbers.
constexpr std::string_view kRest = R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:9001" }]
)";

std::string withRest(std::string_view text) { return toml(text) + std::string(kRest); }

}  // namespace

// ---- Bad inputs: each asserts the whole message, including line and column. ----

// A misspelt key is refused at its value, with the nearest allowed key suggested.
TEST_CASE("config refuses an unknown key in [global]", "[config]") {
  CHECK(errorOf(withRest(R"(
[global]
workers = 2
wrokers = 4
)")) == "x.toml:3:11: unknown key \"wrokers\" in [global]; did you mean \"workers\"? "
        "allowed keys: workers, log_level, drain_timeout");
}

// With nothing close, the message lists the allowed keys without guessing.
TEST_CASE("config refuses an unknown key without a close match", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
colour = "blue"
backends = [{ address = "127.0.0.1:9001" }]
)") == "x.toml:7:10: unknown key \"colour\" in pool \"web\"; allowed keys: algorithm, "
       "hash_key, retries, proxy_protocol, maglev_table_size, ring_hash_vnodes, slow_start, "
       "on_down, all_down, health, backends");
}

// [[listeners]] is a top-level key like any other, located at its header.
TEST_CASE("config refuses an unknown top-level table", "[config]") {
  CHECK(errorOf(R"(
[[listeners]]
name = "web"
)") == "x.toml:1:1: unknown key \"listeners\" in the top level; did you mean \"listener\"? "
       "allowed keys: global, listener, pool, access_log, admin");
}

// Sub-tables that this version does not know are refused by name, with the nearest key.
TEST_CASE("config refuses an unknown sub-table in a pool", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:9001" }]

[pool.web.helth]
interval = "1s"
)") == "x.toml:9:1: unknown key \"helth\" in pool \"web\"; did you mean \"health\"? allowed "
       "keys: algorithm, hash_key, retries, proxy_protocol, maglev_table_size, ring_hash_vnodes, "
       "slow_start, on_down, all_down, health, backends");
}

// Type errors say what was found and which type is expected.
TEST_CASE("config refuses a string where an integer is expected", "[config]") {
  CHECK(errorOf(withRest(R"(
[global]
workers = "4"
)")) == "x.toml:2:11: [global]: workers is a string; expected an integer from 0 to 256 "
        "(0 = one per CPU)");
}

// Out-of-range integers quote the literal as written.
TEST_CASE("config refuses an out-of-range integer", "[config]") {
  CHECK(errorOf(withRest(R"(
[global]
workers = 300
)")) == "x.toml:2:11: [global]: workers = 300 is out of range; expected an integer from 0 to "
        "256 (0 = one per CPU)");
}

// toml11 clamps a literal beyond int64 to INT64_MAX; the message still shows what was typed.
TEST_CASE("config quotes an int64 overflow as written", "[config]") {
  CHECK(errorOf(withRest(R"(
[global]
workers = 99999999999999999999
)")) == "x.toml:2:11: [global]: workers = 99999999999999999999 is out of range; expected an "
        "integer from 0 to 256 (0 = one per CPU)");
}

// An enum value that is a prefix of an allowed one gets that one suggested.
TEST_CASE("config refuses an unknown log level", "[config]") {
  CHECK(errorOf(withRest(R"(
[global]
log_level = "warning"
)")) == "x.toml:2:13: [global]: log_level \"warning\" is not supported; did you mean "
        "\"warn\"? expected one of trace, debug, info, warn, error");
}

// A duration without a unit is refused with the allowed units.
TEST_CASE("config refuses a duration without unit", "[config]") {
  CHECK(errorOf(withRest(R"(
[global]
drain_timeout = "30"
)")) == "x.toml:2:17: [global]: drain_timeout \"30\" has no unit; write an integer followed "
        "by ms, s, m or h, such as \"150ms\", \"2s\" or \"5m\"");
}

// A bare number is a type error that shows the string form.
TEST_CASE("config refuses a duration written as a number", "[config]") {
  CHECK(errorOf(withRest(R"(
[global]
drain_timeout = 30
)")) == "x.toml:2:17: [global]: drain_timeout is an integer; expected a duration string such "
        "as \"30s\"");
}

// Timeouts must be positive; the example is the default.
TEST_CASE("config refuses a zero connect timeout", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"
connect_timeout = "0ms"

[pool.web]
backends = [{ address = "127.0.0.1:9001" }]
)") == "x.toml:5:19: listener \"web\": connect_timeout \"0ms\" is zero; it must be greater "
       "than zero, such as \"2s\"");
}

// Fractions are refused with the exact alternative.
TEST_CASE("config refuses a fractional idle timeout", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"
idle_timeout = "1.5s"

[pool.web]
backends = [{ address = "127.0.0.1:9001" }]
)") == "x.toml:5:16: listener \"web\": idle_timeout \"1.5s\" has a fraction, which is not "
       "supported; use a smaller unit, such as \"1500ms\" for 1.5 seconds");
}

// A config with no listener cannot serve; the error points at the start of the file.
TEST_CASE("config refuses a file without listeners", "[config]") {
  CHECK(errorOf("") == "x.toml:1:1: no listener is defined; add at least one [[listener]] table "
                       "with name, bind and pool");
  CHECK(errorOf("# only a comment\n") == "x.toml:1:1: no listener is defined; add at least one "
                                         "[[listener]] table with name, bind and pool");
  CHECK(errorOf(R"(
[global]
workers = 1
)") == "x.toml:1:1: no listener is defined; add at least one [[listener]] table with name, "
       "bind and pool");
}

// [listener] with one bracket is a table, not an array of tables.
TEST_CASE("config refuses [listener] with one bracket", "[config]") {
  CHECK(errorOf(R"(
[listener]
name = "web"
)") == "x.toml:1:1: the top level: listener is a table; expected an array of tables, "
       "written [[listener]] with two brackets");
}

// A missing key is reported at the table that lacks it; the entry is named by position.
TEST_CASE("config refuses a listener without a name", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[[listener]]
bind = "127.0.0.1:8081"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:9001" }]
)") == "x.toml:6:1: [[listener]] #2: missing required key \"name\"; add it, such as "
       "name = \"web\"");
}

// A misspelt name is a typo, not a missing name; the entry is then named by position.
TEST_CASE("config refuses a misspelt listener key before requiring the name", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
nmae = "web"
bind = "127.0.0.1:8080"
pool = "web"
)") == "x.toml:2:8: unknown key \"nmae\" in [[listener]] #1; did you mean \"name\"? allowed "
       "keys: name, bind, protocol, pool, connect_timeout, idle_timeout, max_connections, "
       "backlog, replies, max_sessions, table_full, mode, interface, xdp_attach, "
       "xdp_fallback");
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bnd = "127.0.0.1:8080"
pool = "web"
)") == "x.toml:3:7: unknown key \"bnd\" in listener \"web\"; did you mean \"bind\"? allowed "
       "keys: name, bind, protocol, pool, connect_timeout, idle_timeout, max_connections, "
       "backlog, replies, max_sessions, table_full, mode, interface, xdp_attach, "
       "xdp_fallback");
}

// Names end up in log fields and metric labels, so their characters are limited.
TEST_CASE("config refuses a listener name with a space", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "my web"
bind = "127.0.0.1:8080"
pool = "web"
)") == "x.toml:2:8: [[listener]] #1: name \"my web\" is not valid; use 1 to 64 characters "
       "from A-Z a-z 0-9 _ . -");
}

// Host names are never resolved.
TEST_CASE("config refuses a host name in bind", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "localhost:8080"
pool = "web"
)") == "x.toml:3:8: listener \"web\": bind \"localhost:8080\": \"localhost\" is not a numeric "
       "IP address and host names are not resolved; use an address such as 127.0.0.1:6379 or "
       "[::1]:6379");
}

// A bind without a port is refused with the expected form.
TEST_CASE("config refuses a bind without port", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1"
pool = "web"
)") == "x.toml:3:8: listener \"web\": bind \"127.0.0.1\": missing port; expected host:port "
       "such as 127.0.0.1:6379 or [::1]:6379");
}

// TCP-only keys on a UDP listener are refused rather than ignored, and the other way round.
TEST_CASE("config refuses keys of the other protocol", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "dns"
bind = "127.0.0.1:5353"
protocol = "udp"
pool = "dns"
connect_timeout = "1s"
)") == "x.toml:6:19: listener \"dns\": connect_timeout does not apply to UDP listeners; remove "
       "it (UDP listeners use max_sessions, replies and table_full)");
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"
replies = 1
)") == "x.toml:5:11: listener \"web\": replies does not apply to TCP listeners; remove it or "
       "set protocol = \"udp\"");
}

// A listener naming a missing pool gets the defined pools and the closest one.
TEST_CASE("config refuses a listener naming an undefined pool", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "redis"
bind = "127.0.0.1:6380"
pool = "rdis"

[pool.redis]
backends = [{ address = "127.0.0.1:7001" }]

[pool.pg]
backends = [{ address = "127.0.0.1:5432" }]
)") == "x.toml:4:8: listener \"redis\": pool \"rdis\" is not defined; did you mean \"redis\"? "
       "defined pools: redis, pg");
}

// With no pools at all the message says how to add one.
TEST_CASE("config refuses a listener when no pool exists", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"
)") == "x.toml:4:8: listener \"web\": pool \"web\" is not defined; no pools are defined, add "
       "a [pool.web] table with backends");
}

// Duplicate listener names point at the second and name the first.
TEST_CASE("config refuses duplicate listener names", "[config]") {
  CHECK(errorOf(withRest(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8081"
pool = "web"
)")) == "x.toml:7:8: listener \"web\" is defined twice, first at 2:8; listener names must be "
        "unique");
}

// Two listeners on one address would silently share its connections.
TEST_CASE("config refuses duplicate bind addresses", "[config]") {
  CHECK(errorOf(withRest(R"(
[[listener]]
name = "api"
bind = "127.0.0.1:8080"
pool = "web"
)")) == "x.toml:8:8: listener \"web\": bind \"127.0.0.1:8080\" is already used by listener "
        "\"api\" at 3:8; give each listener its own address or port");
}

// A wildcard bind takes its port on every address of the family.
TEST_CASE("config refuses a bind that overlaps a wildcard", "[config]") {
  CHECK(errorOf(withRest(R"(
[[listener]]
name = "any"
bind = "0.0.0.0:8080"
pool = "web"
)")) == "x.toml:8:8: listener \"web\": bind \"127.0.0.1:8080\" overlaps listener \"any\" on "
        "\"0.0.0.0:8080\" at 3:8; a wildcard address takes the port on every address, so use "
        "another port");
}

// An empty backend list is reported at the array.
TEST_CASE("config refuses a pool with no backends", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = []
)") == "x.toml:7:12: pool \"web\": backends is empty; list at least one, such as backends = "
       "[{ address = \"127.0.0.1:7001\" }]");
}

// A pool table without backends is reported at its header.
TEST_CASE("config refuses a pool without backends key", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
algorithm = "least_conn"
)") == "x.toml:6:1: pool \"web\": missing required key \"backends\"; add it, such as "
       "backends = [{ address = \"127.0.0.1:7001\" }]");
}

// 4096 backends is the limit; one more is refused at the array.
TEST_CASE("config limits a pool to 4096 backends", "[config]") {
  const auto pool_of = [](int count) {
    std::string text = R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [
)";
    for (int i = 0; i < count; ++i) {
      text += fmt::format("  {{ address = \"127.0.{}.{}:9001\" }},\n", i / 250, i % 250 + 1);
    }
    return text + "]\n";
  };

  const Config config = parseConfig(toml(pool_of(4096)), "x.toml");
  CHECK(config.pools[0].backends.size() == 4096);
  CHECK(config.pools[0].backends[4095].address.toString() == "127.0.16.96:9001");

  CHECK(errorOf(pool_of(4097)) ==
        "x.toml:7:12: pool \"web\": backends has 4097 entries; at most 4096 are allowed in one "
        "pool");
}

// Duplicates are found by address, not by spelling.
TEST_CASE("config refuses a backend listed twice", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "[::1]:8080"
pool = "web"

[pool.web]
backends = [
  { address = "[::1]:7001" },
  { address = "[::1]:7002" },
  { address = "[0::1]:7001" },
]
)") == "x.toml:10:15: pool \"web\" backend #3: address \"[0::1]:7001\" is already used by "
       "backend #1 at 8:15; list each backend once");
}

// Weights are bounded so weighted tables stay small.
TEST_CASE("config refuses a weight above the maximum", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:9001", weight = 1001 }]
)") == "x.toml:7:52: pool \"web\" backend #1: weight = 1001 is out of range; expected an "
       "integer from 0 to 1000 (0 = takes no new flows)");
}

// A float weight is a type error, not a rounded integer.
TEST_CASE("config refuses a float weight", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:9001", weight = 1.5 }]
)") == "x.toml:7:52: pool \"web\" backend #1: weight is a float; expected an integer from 0 "
       "to 1000 (0 = takes no new flows)");
}

// Maglev needs a prime table; the message offers the next prime.
TEST_CASE("config refuses a non-prime maglev table size", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
algorithm = "maglev"
maglev_table_size = 65536
backends = [{ address = "127.0.0.1:9001" }]
)") == "x.toml:8:21: pool \"web\": maglev_table_size = 65536 is not prime; use a prime such "
       "as 65537");
}

// The table size range is checked before primality.
TEST_CASE("config refuses a maglev table size below the minimum", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
maglev_table_size = 5
backends = [{ address = "127.0.0.1:9001" }]
)") == "x.toml:7:21: pool \"web\": maglev_table_size = 5 is out of range; expected an "
       "integer from 7 to 1000003 and prime");
}

// A misspelt algorithm gets the closest real one.
TEST_CASE("config refuses an unknown algorithm", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
algorithm = "maglv"
backends = [{ address = "127.0.0.1:9001" }]
)") == "x.toml:7:13: pool \"web\": algorithm \"maglv\" is not supported; did you mean "
       "\"maglev\"? expected one of round_robin, least_conn, random_two, ring_hash, maglev");
}

// Backends are tables so they can carry a weight; a bare string is refused with the form.
TEST_CASE("config refuses a backend written as a string", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = ["127.0.0.1:9001"]
)") == "x.toml:7:13: pool \"web\": backend #1 is a string; expected an inline table such as "
       "{ address = \"127.0.0.1:7001\" }");
}

// Port 0 is fine for bind but means nothing for a backend.
TEST_CASE("config refuses backend port 0", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:0" }]
)") == "x.toml:7:25: pool \"web\" backend #1: address \"127.0.0.1:0\": port 0 cannot be "
       "connected to; use the port the backend listens on");
}

// A wildcard backend address would reach the local host by accident.
TEST_CASE("config refuses a wildcard backend address", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [{ address = "[::]:9001" }]
)") == "x.toml:7:25: pool \"web\" backend #1: address \"[::]:9001\": :: means any address and "
       "cannot be connected to; use the backend's own address");
}

// Keys inside a backend table are checked like any other table.
TEST_CASE("config refuses a misspelt backend key", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:9001", wieght = 2 }]
)") == "x.toml:7:52: unknown key \"wieght\" in pool \"web\" backend #1; did you mean "
       "\"weight\"? allowed keys: address, weight, backup, state, health");
}

// Booleans must be true or false, not strings.
TEST_CASE("config refuses a string backup flag", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:9001", backup = "yes" }]
)") == "x.toml:7:52: pool \"web\" backend #1: backup is a string; expected true or false");
}

// Remaining integer ranges: retries, backlog, max_connections, vnodes.
TEST_CASE("config refuses out-of-range listener and pool integers", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"
backlog = 0
)") == "x.toml:5:11: listener \"web\": backlog = 0 is out of range; expected an integer from 1 "
       "to 65535");
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"
max_connections = 1000001
)") == "x.toml:5:19: listener \"web\": max_connections = 1000001 is out of range; expected an "
       "integer from 1 to 1000000");
  CHECK(errorOf(withRest(R"(
[pool.other]
retries = 17
backends = [{ address = "127.0.0.1:9001" }]
)")) == "x.toml:2:11: pool \"other\": retries = 17 is out of range; expected an integer from 0 "
        "to 16");
  CHECK(errorOf(withRest(R"(
[pool.other]
ring_hash_vnodes = -1
backends = [{ address = "127.0.0.1:9001" }]
)")) == "x.toml:2:20: pool \"other\": ring_hash_vnodes = -1 is out of range; expected an "
        "integer from 1 to 1000");
}

// Pool names follow the listener name rule; quoted keys can smuggle in anything else.
TEST_CASE("config refuses an invalid pool name", "[config]") {
  CHECK(errorOf(withRest(R"(
[pool."a b"]
backends = [{ address = "127.0.0.1:9001" }]
)")) == "x.toml:1:1: pool name \"a b\" is not valid; use 1 to 64 characters from A-Z a-z 0-9 "
        "_ . -");
}

// TOML syntax errors come out as one FILE:LINE:COLUMN line, at the spot toml11 marks.
TEST_CASE("config reports TOML syntax errors with line and column", "[config]") {
  CHECK(errorOf(R"(
[global]
workers =
)") == "x.toml:2:10: invalid TOML: missing value after key-value separator '='; expected "
       "value, but got nothing");
  CHECK(errorOf(R"(
[global]
workers = 4 5
)") == "x.toml:2:13: invalid TOML: invalid line format; expected newline, but got '5'.");
  CHECK(errorOf(R"(
[global]
workers = 4
workers = 5
)") == "x.toml:3:11: invalid TOML: value (\"workers\") already exists; value defined twice "
       "(see 2:11: value already exists here)");
  CHECK(errorOf(R"(
[global]
log_level = "info
)") == "x.toml:2:13: invalid TOML: the next token is not a valid string");
}

// An unreadable file names the path and the system's reason.
TEST_CASE("config reports an unreadable file with its reason", "[config]") {
  char dir_template[] = "/tmp/fulcrum-config-test-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  REQUIRE(dir != nullptr);
  const std::string missing = std::string(dir) + "/missing.toml";

  CHECK_THROWS_WITH(loadConfigFile(missing), missing + ": cannot read: No such file or directory");
  CHECK_THROWS_WITH(loadConfigFile(dir), std::string(dir) + ": cannot read: Is a directory");

  std::filesystem::remove_all(dir);
}

// Nesting is refused before toml11, which parses it by recursion: 10,000 levels used to
// overflow the stack. The error points at the first bracket past the limit.
TEST_CASE("config refuses arrays and inline tables nested too deep", "[config]") {
  const std::string arrays = "a = " + std::string(10000, '[') + std::string(10000, ']') + "\n";
  CHECK(errorOf(arrays) == "x.toml:1:37: arrays and inline tables nested deeper than 32 "
                           "levels; flatten the structure");

  std::string tables = "[global]\na = ";
  for (int i = 0; i < 10000; ++i) {
    tables += "{b=";
  }
  tables += "1" + std::string(10000, '}') + "\n";
  CHECK(errorOf(tables) == "x.toml:2:101: arrays and inline tables nested deeper than 32 "
                           "levels; flatten the structure");

  // 32 levels pass the pre-scan and reach the model, which names the unknown key.
  const std::string limit = "a = " + std::string(32, '[') + std::string(32, ']') + "\n";
  CHECK(errorOf(limit) == "x.toml:1:5: unknown key \"a\" in the top level; allowed keys: "
                          "global, listener, pool, access_log, admin");
}

// Dotted keys are refused past 16 parts: toml11 is quadratic in their length, and a 50,000
// part header used to take 40 s.
TEST_CASE("config refuses keys with too many dotted parts", "[config]") {
  std::string header = "[x";
  for (int i = 1; i < 50000; ++i) {
    header += ".x";
  }
  header += "]\n";
  CHECK(errorOf(header) == "x.toml:1:33: keys with more than 16 dotted parts are not "
                           "supported; use at most 16, such as pool.web.algorithm");

  // Quoted parts and spaces around the dots count the same.
  CHECK(errorOf(withRest(R"(
[global]
"a" . "b".c.d.e.f.g.h.i.j.k.l.m.n.o.p.q = 1
)")) == "x.toml:2:38: keys with more than 16 dotted parts are not supported; use at most 16, "
        "such as pool.web.algorithm");

  // 16 parts pass the pre-scan and reach the model.
  CHECK(errorOf(withRest(R"(
[global]
a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p = 1
)")) == "x.toml:2:1: unknown key \"a\" in [global]; allowed keys: workers, log_level, "
        "drain_timeout");
}

// The pre-scan never counts what is inside strings or comments, and never miscounts a value.
TEST_CASE("config pre-scan skips strings, comments and values", "[config]") {
  using fulcrum::config_detail::prescanToml;
  const std::string deep(40, '[');
  const std::string dotted = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s";

  CHECK_NOTHROW(prescanToml("# " + deep + " " + dotted + "\n", "x.toml"));
  CHECK_NOTHROW(prescanToml("a = \"" + deep + "\\\"" + deep + "\"\n", "x.toml"));
  CHECK_NOTHROW(prescanToml("\"" + dotted + "\" = '" + dotted + "'\n", "x.toml"));
  CHECK_NOTHROW(prescanToml("a = \"\"\"\n" + deep + "\\\"\"\"" + deep + "\n\"\"\"\n", "x.toml"));
  CHECK_NOTHROW(prescanToml("a = '''\n" + deep + "''\n" + dotted + "\n'''\n", "x.toml"));
  // A literal string ends at its quote even after a backslash: 'C:\' is complete.
  CHECK_NOTHROW(prescanToml("a = ['C:\\', '" + deep + "']\n", "x.toml"));
  // Up to two quotes may close a multi-line string together with its delimiter.
  CHECK_NOTHROW(prescanToml("a = [\"\"\"x\"\"\"\", \"" + deep + "\"]\n", "x.toml"));
  CHECK_NOTHROW(prescanToml("a = ['''x''''', '" + deep + "']\n", "x.toml"));

  CHECK_NOTHROW(prescanToml(R"(a = 1.5
b = 1979-05-27T07:32:00.999999Z
c = "127.0.0.1:80"
d = ["1.5s", 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5, 11.5, 12.5, 13.5, 14.5, 15.5, 16.5,
     17.5, 18.5]
e = { f.g = 1.5, h.i = 2.5, j.k = 3.5, l.m = 4.5, n.o = 5.5, p.q = 6.5, r.s = 7.5, t.u = 8.5,
      v.w = 9.5 }
x.y = 1.5 # 1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18
)",
                            "x.toml"));

  // The same text outside a string is refused, so the checks above can fail.
  CHECK_THROWS_WITH(prescanToml("a = ['C:\\', " + deep + "]]\n", "x.toml"),
                    "x.toml:1:44: arrays and inline tables nested deeper than 32 levels; "
                    "flatten the structure");
  CHECK_THROWS_WITH(prescanToml("x = 1\n" + dotted + " = 1\n", "x.toml"),
                    "x.toml:2:32: keys with more than 16 dotted parts are not supported; use "
                    "at most 16, such as pool.web.algorithm");
}

// A protocol outside the list gets the list, with the nearest word when there is one.
TEST_CASE("config offers tcp and udp as protocols", "[config]") {
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
protocol = "TCP"
pool = "web"
)") == "x.toml:4:12: listener \"web\": protocol \"TCP\" is not supported; did you mean "
       "\"tcp\"? expected one of tcp, udp");
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
protocol = "quic"
pool = "web"
)") == "x.toml:4:12: listener \"web\": protocol \"quic\" is not supported; expected one of "
       "tcp, udp");
  CHECK(errorOf(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
protocol = 17
pool = "web"
)") == "x.toml:4:12: listener \"web\": protocol is an integer; expected a string, one of tcp, "
       "udp");
}

namespace {

// A fresh temp dir, removed with everything in it when the test ends, pass or fail.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/fulcrum-config-test-XXXXXX";
    const char* made = mkdtemp(name);
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace

// Devices never end or never start: /dev/zero used to grow the process to gigabytes.
TEST_CASE("config refuses a path that is not a regular file", "[config]") {
  CHECK_THROWS_WITH(loadConfigFile("/dev/null"),
                    "/dev/null: not a regular file; give the path of a TOML file");
  CHECK_THROWS_WITH(loadConfigFile("/dev/zero"),
                    "/dev/zero: not a regular file; give the path of a TOML file");

  // A symlink is followed: to a device it is refused, to a file it loads.
  const TempDir dir;
  const std::string to_null = dir.file("null.toml");
  std::filesystem::create_symlink("/dev/null", to_null);
  CHECK_THROWS_WITH(loadConfigFile(to_null),
                    to_null + ": not a regular file; give the path of a TOML file");
  const std::string real = dir.file("real.toml");
  {
    std::FILE* f = std::fopen(real.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs(toml(kRest).c_str(), f);
    std::fclose(f);
  }
  const std::string link = dir.file("link.toml");
  std::filesystem::create_symlink(real, link);
  CHECK(loadConfigFile(link).listeners.size() == 1);
}

// A FIFO used to block the load until a writer came. The helper thread plays that writer if
// the load ever waits for one, so a regression fails the test instead of hanging it.
TEST_CASE("config refuses a FIFO without waiting for a writer", "[config]") {
  const TempDir dir;
  const std::string fifo = dir.file("fifo.toml");
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);

  std::atomic<bool> done{false};
  std::thread writer([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done && std::chrono::steady_clock::now() < deadline) {
      // Succeeds only while a reader has the FIFO open.
      const int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd >= 0) {
        close(fd);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });

  std::string error = "(accepted)";
  try {
    loadConfigFile(fifo);
  } catch (const ConfigError& e) {
    error = e.what();
  }
  done = true;
  writer.join();
  CHECK(error == fifo + ": not a regular file; give the path of a TOML file");
}

// Files over 4 MiB are refused by size before any byte is read; exactly 4 MiB still loads.
TEST_CASE("config refuses a file over 4 MiB", "[config]") {
  const TempDir dir;
  const std::string big = dir.file("big.toml");
  {
    std::FILE* f = std::fopen(big.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fclose(f);
  }
  std::filesystem::resize_file(big, 5 * 1024 * 1024);
  CHECK_THROWS_WITH(loadConfigFile(big),
                    big + ": 5242880 bytes is over the 4 MiB limit for a config file");

  std::filesystem::resize_file(big, 4 * 1024 * 1024 + 1);
  CHECK_THROWS_WITH(loadConfigFile(big),
                    big + ": 4194305 bytes is over the 4 MiB limit for a config file");

  // A valid config padded with a comment to exactly the limit.
  const std::string fits = dir.file("fits.toml");
  std::string text = toml(kRest) + "# ";
  text += std::string(4 * 1024 * 1024 - text.size() - 1, 'x') + "\n";
  REQUIRE(text.size() == 4 * 1024 * 1024);
  {
    std::FILE* f = std::fopen(fits.c_str(), "w");
    REQUIRE(f != nullptr);
    REQUIRE(std::fwrite(text.data(), 1, text.size(), f) == text.size());
    std::fclose(f);
  }
  CHECK(loadConfigFile(fits).listeners.size() == 1);
}

// ---- Good inputs. ----

// Only the required keys: every default comes from the model.
TEST_CASE("config fills defaults for a minimal file", "[config]") {
  const Config config = parseConfig(toml(kRest), "min.toml");

  CHECK(config.source == "min.toml");
  CHECK(config.global.workers == 0);
  CHECK(config.global.log_level == LogLevel::Info);
  CHECK(config.global.drain_timeout == Millis(30000));

  REQUIRE(config.listeners.size() == 1);
  const ListenerConfig& listener = config.listeners[0];
  CHECK(listener.name == "web");
  CHECK(listener.bind.toString() == "127.0.0.1:8080");
  CHECK(listener.protocol == Protocol::Tcp);
  CHECK(listener.pool == "web");
  CHECK(listener.connect_timeout == Millis(2000));
  CHECK(listener.idle_timeout == Millis(300000));
  CHECK(listener.max_connections == 10000);
  CHECK(listener.backlog == 1024);

  REQUIRE(config.pools.size() == 1);
  const PoolConfig& pool = config.pools[0];
  CHECK(pool.name == "web");
  CHECK(pool.algorithm == Algorithm::RoundRobin);
  CHECK(pool.hash_key == HashKey::SourceIp);
  CHECK(pool.retries == 2);
  CHECK(pool.proxy_protocol == ProxyProtocol::Off);
  CHECK(pool.maglev_table_size == kDefaultMaglevTableSize);
  CHECK(pool.ring_hash_vnodes == kDefaultRingHashVnodes);
  REQUIRE(pool.backends.size() == 1);
  CHECK(pool.backends[0].address.toString() == "127.0.0.1:9001");
  CHECK(pool.backends[0].weight == 1);
  CHECK_FALSE(pool.backends[0].backup);
}

// Every key set to a non-default value lands in the model; pools keep file order.
TEST_CASE("config parses every key into the model", "[config]") {
  const Config config = parseConfig(toml(R"(
[global]
workers = 3
log_level = "debug"
drain_timeout = "1500ms"

[[listener]]
name = "redis"
bind = "[::1]:6380"
protocol = "tcp"
pool = "redis"
connect_timeout = "250ms"
idle_timeout = "2h"
max_connections = 500
backlog = 128

[[listener]]
name = "pg.primary"
bind = "127.0.0.1:0"
pool = "pg-main"

[pool.redis]
algorithm = "maglev"
hash_key = "five_tuple"
retries = 0
proxy_protocol = "v2"
maglev_table_size = 1000003
ring_hash_vnodes = 1000
backends = [
  { address = "127.0.0.1:7001", weight = 0 },
  { address = "[::1]:7002", weight = 1000 },
  { address = "127.0.0.1:7003", backup = true },
]

[pool.pg-main]
algorithm = "least_conn"
backends = [{ address = "127.0.0.1:5432" }]
)"),
                                    "full.toml");

  CHECK(config.global.workers == 3);
  CHECK(config.global.log_level == LogLevel::Debug);
  CHECK(config.global.drain_timeout == Millis(1500));

  REQUIRE(config.listeners.size() == 2);
  const ListenerConfig& redis = config.listeners[0];
  CHECK(redis.name == "redis");
  CHECK(redis.bind.isV6());
  CHECK(redis.bind.toString() == "[::1]:6380");
  CHECK(redis.connect_timeout == Millis(250));
  CHECK(redis.idle_timeout == Millis(7200000));
  CHECK(redis.max_connections == 500);
  CHECK(redis.backlog == 128);
  CHECK(config.listeners[1].name == "pg.primary");
  CHECK(config.listeners[1].bind.port() == 0);

  REQUIRE(config.pools.size() == 2);
  CHECK(config.pools[0].name == "redis");
  CHECK(config.pools[1].name == "pg-main");
  const PoolConfig& pool = config.pools[0];
  CHECK(pool.algorithm == Algorithm::Maglev);
  CHECK(pool.hash_key == HashKey::FiveTuple);
  CHECK(pool.retries == 0);
  CHECK(pool.proxy_protocol == ProxyProtocol::V2);
  CHECK(pool.maglev_table_size == 1000003);
  CHECK(pool.ring_hash_vnodes == 1000);
  REQUIRE(pool.backends.size() == 3);
  CHECK(pool.backends[0].weight == 0);
  CHECK(pool.backends[1].address == *Endpoint::parse("[::1]:7002"));
  CHECK(pool.backends[1].weight == 1000);
  CHECK(pool.backends[2].backup);
  CHECK_FALSE(pool.backends[1].backup);

  CHECK(config.findPool("pg-main") == &config.pools[1]);
  CHECK(config.findPool("nope") == nullptr);
  CHECK(config.pools[1].algorithm == Algorithm::LeastConn);
}

// Port 0 asks the kernel for a fresh port, so two such binds never collide.
TEST_CASE("config allows several listeners on port 0", "[config]") {
  const Config config = parseConfig(toml(R"(
[[listener]]
name = "a"
bind = "127.0.0.1:0"
pool = "p"

[[listener]]
name = "b"
bind = "127.0.0.1:0"
pool = "p"

[pool.p]
backends = [{ address = "127.0.0.1:9001" }]
)"),
                                    "zero.toml");
  CHECK(config.listeners.size() == 2);
}

// The config spelling round-trips through toString for every enum value.
TEST_CASE("config spellings round-trip through toString", "[config]") {
  for (const char* algorithm : {"round_robin", "least_conn", "random_two", "ring_hash",
                                "maglev"}) {
    for (const char* hash_key : {"source_ip", "source_ip_port", "five_tuple"}) {
      for (const char* proxy : {"off", "v1", "v2"}) {
        const std::string text = std::string(R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
algorithm = ")") + algorithm + "\"\nhash_key = \"" + hash_key +
                                 "\"\nproxy_protocol = \"" + proxy +
                                 "\"\nbackends = [{ address = \"127.0.0.1:9001\" }]\n";
        const Config config = parseConfig(toml(text), "x.toml");
        CHECK(std::string(toString(config.pools[0].algorithm)) == algorithm);
        CHECK(std::string(toString(config.pools[0].hash_key)) == hash_key);
        CHECK(std::string(toString(config.pools[0].proxy_protocol)) == proxy);
      }
    }
  }

  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    const Config config =
        parseConfig("[global]\nlog_level = \"" + std::string(level) + "\"\n" + toml(kRest),
                    "x.toml");
    CHECK(std::string(toString(config.global.log_level)) == level);
  }
  CHECK(std::string(toString(Protocol::Tcp)) == "tcp");
  CHECK(std::string(toString(Protocol::Udp)) == "udp");
}

// workers = 0 follows the CPUs this process may run on; anything else is taken as given.
TEST_CASE("effective workers follow the config or the CPU count", "[config]") {
  GlobalConfig global;
  global.workers = 7;
  CHECK(effectiveWorkers(global) == 7);

  global.workers = 0;
  const unsigned workers = effectiveWorkers(global);
  CHECK(workers >= 1);
  CHECK(workers <= std::max(1u, std::thread::hardware_concurrency()));
}

// The summary counts, describes each listener and flags legal but suspicious pools.
TEST_CASE("summarize describes listeners and notes odd pools", "[config]") {
  const Config config = parseConfig(toml(R"(
[global]
workers = 2

[[listener]]
name = "redis"
bind = "127.0.0.1:6380"
pool = "redis"

[pool.redis]
algorithm = "maglev"
backends = [
  { address = "127.0.0.1:7001" },
  { address = "127.0.0.1:7002" },
  { address = "127.0.0.1:7003", backup = true },
]

[pool.spare]
algorithm = "least_conn"
proxy_protocol = "v1"
backends = [{ address = "127.0.0.1:7101", weight = 0 }]
)"),
                                    "x.toml");

  CHECK(summarize(config) ==
        "config ok: 1 listener, 2 pools, 4 backends, 2 workers\n"
        "listener redis tcp 127.0.0.1:6380 -> pool redis (maglev, hash source_ip, 3 backends of "
        "which 1 backup)\n"
        "note: pool spare is not used by any listener\n"
        "note: pool spare: every backend has weight 0, so it takes no new connections\n");
}

// hash_key is remembered as written, and noted where the algorithm ignores it.
TEST_CASE("summarize notes a hash_key the algorithm ignores", "[config]") {
  const Config config = parseConfig(toml(R"(
[[listener]]
name = "a"
bind = "127.0.0.1:0"
pool = "rr"

[[listener]]
name = "b"
bind = "127.0.0.1:0"
pool = "mg"

[[listener]]
name = "c"
bind = "127.0.0.1:0"
pool = "lc"

[pool.rr]
hash_key = "five_tuple"
backends = [{ address = "127.0.0.1:7001" }]

[pool.mg]
algorithm = "maglev"
hash_key = "source_ip_port"
backends = [{ address = "127.0.0.1:7002" }]

[pool.lc]
algorithm = "least_conn"
backends = [{ address = "127.0.0.1:7003" }]
)"),
                                    "x.toml");
  REQUIRE(config.pools.size() == 3);
  CHECK(config.pools[0].hash_key_set);
  CHECK(config.pools[1].hash_key_set);
  CHECK_FALSE(config.pools[2].hash_key_set);

  CHECK(summarize(config) ==
        "config ok: 3 listeners, 3 pools, 3 backends, " +
            fmt::format("{} {} (one per CPU)\n", effectiveWorkers(config.global),
                        effectiveWorkers(config.global) == 1 ? "worker" : "workers") +
            "listener a tcp 127.0.0.1:0 -> pool rr (round_robin, 1 backend)\n"
            "listener b tcp 127.0.0.1:0 -> pool mg (maglev, hash source_ip_port, 1 backend)\n"
            "listener c tcp 127.0.0.1:0 -> pool lc (least_conn, 1 backend)\n"
            "note: pool rr: hash_key has no effect with algorithm round_robin; only ring_hash "
            "and maglev use it\n");
}

namespace {

// A ring_hash pool whose backends have the given weights, with the given vnodes.
Config ringPool(const std::vector<std::pair<uint32_t, bool>>& backends, uint32_t vnodes) {
  std::string text = fmt::format(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[global]
workers = 1

[pool.web]
algorithm = "ring_hash"
ring_hash_vnodes = {}
backends = [
)",
                                 vnodes);
  for (size_t i = 0; i < backends.size(); ++i) {
    text += fmt::format("  {{ address = \"127.0.0.1:{}\", weight = {}, backup = {} }},\n",
                        7001 + i, backends[i].first, backends[i].second);
  }
  return parseConfig(text + "]\n", "x.toml");
}

// Points the real picker puts on the ring for the primaries of a pool.
size_t primaryRingPoints(const PoolConfig& pool) {
  std::vector<balance::Candidate> candidates;
  for (const BackendConfig& b : pool.backends) {
    if (!b.backup) {
      candidates.push_back({b.address.toString(), b.weight, nullptr});
    }
  }
  return balance::RingHashPicker(std::move(candidates), pool.ring_hash_vnodes).pointCount();
}

}  // namespace

// The ring picker caps its points and scales down silently; check says so, per ring, from
// the same constant the picker uses.
TEST_CASE("summarize notes a ring_hash pool over the ring's point limit", "[config]") {
  const std::string head =
      "config ok: 1 listener, 1 pool, 3 backends, 1 worker\n"
      "listener web tcp 127.0.0.1:8080 -> pool web (ring_hash, hash source_ip, 3 backends";

  // 2048 x 512 is exactly 2^20: the ring is full but nothing is scaled.
  const Config at_cap = ringPool({{1000, false}, {1000, false}, {48, false}}, 512);
  CHECK(primaryRingPoints(at_cap.pools[0]) == balance::RingHashPicker::kMaxPoints);
  CHECK(summarize(at_cap) == head + ")\n");

  const Config over = ringPool({{1000, false}, {1000, false}, {49, false}}, 512);
  CHECK(primaryRingPoints(over.pools[0]) < 2049u * 512u);
  CHECK(summarize(over) ==
        head + ")\n"
               "note: pool web: the primary ring would have 1049088 points (weight 2049 x "
               "ring_hash_vnodes 512), over the limit of 1048576; each backend's points are "
               "scaled down to fit, so shares are less even\n");

  // Backups have a ring of their own, so only the backup ring is over here.
  const Config backups = ringPool({{1000, false}, {1000, true}, {1000, true}}, 1000);
  CHECK(summarize(backups) ==
        head + " of which 2 backup)\n"
               "note: pool web: the backup ring would have 2000000 points (weight 2000 x "
               "ring_hash_vnodes 1000), over the limit of 1048576; each backend's points are "
               "scaled down to fit, so shares are less even\n");
}

// ---- Shipped configs. ----

// Every conf/*.toml loads as shipped and stays on loopback.
TEST_CASE("every shipped config loads and stays on loopback", "[config]") {
  const std::filesystem::path dir = std::filesystem::path(FULCRUM_SOURCE_DIR) / "conf";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".toml") {
      files.push_back(entry.path());
    }
  }
  CHECK(files.size() >= 4);

  const auto loopback = [](const Endpoint& e) {
    return e.ipString().rfind("127.", 0) == 0 || e.ipString() == "::1";
  };
  for (const auto& file : files) {
    INFO(file.string());
    const Config config = loadConfigFile(file.string());
    CHECK_FALSE(config.listeners.empty());
    for (const ListenerConfig& listener : config.listeners) {
      CHECK(loopback(listener.bind));
    }
    for (const PoolConfig& pool : config.pools) {
      for (const BackendConfig& backend : pool.backends) {
        CHECK(loopback(backend.address));
      }
    }
  }
}

// The default config matches what the README's first command starts.
TEST_CASE("the default config balances the three demo backends", "[config]") {
  const Config config =
      loadConfigFile((std::filesystem::path(FULCRUM_SOURCE_DIR) / "conf/fulcrum.toml").string());
  REQUIRE(config.listeners.size() == 1);
  CHECK(config.listeners[0].name == "demo");
  CHECK(config.listeners[0].bind.toString() == "127.0.0.1:8080");

  const PoolConfig* pool = config.findPool(config.listeners[0].pool);
  REQUIRE(pool != nullptr);
  CHECK(pool->algorithm == Algorithm::RoundRobin);
  REQUIRE(pool->backends.size() == 3);
  CHECK(pool->backends[0].address.toString() == "127.0.0.1:9001");
  CHECK(pool->backends[1].address.toString() == "127.0.0.1:9002");
  CHECK(pool->backends[2].address.toString() == "127.0.0.1:9003");
}

// The Redis example: Maglev on the client address, three backends, one of them a backup.
TEST_CASE("the redis config uses maglev with one backup", "[config]") {
  const Config config =
      loadConfigFile((std::filesystem::path(FULCRUM_SOURCE_DIR) / "conf/redis.toml").string());
  REQUIRE(config.listeners.size() == 1);
  CHECK(config.listeners[0].bind.toString() == "127.0.0.1:6380");

  const PoolConfig* pool = config.findPool(config.listeners[0].pool);
  REQUIRE(pool != nullptr);
  CHECK(pool->algorithm == Algorithm::Maglev);
  CHECK(pool->hash_key == HashKey::SourceIp);
  REQUIRE(pool->backends.size() == 3);
  CHECK(pool->backends[0].address.toString() == "127.0.0.1:7001");
  CHECK(pool->backends[2].address.toString() == "127.0.0.1:7003");
  const auto backups = std::count_if(pool->backends.begin(), pool->backends.end(),
                                     [](const BackendConfig& b) { return b.backup; });
  CHECK(backups == 1);
}
