// Failover records without a running Fulcrum: the worker-side stamps a pick leaves, how a
// record settles its first moved flow and last flow, the histograms, and how the admin API
// serves both (GET /api/v1/failovers, the two metrics histograms).

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin/admin_api.hpp"
#include "admin/metrics.hpp"
#include "fulcrum/config.hpp"
#include "health/failover.hpp"
#include "pool/pool.hpp"

using namespace fulcrum;

namespace {

PoolConfig twoBackends() {
  PoolConfig config;
  config.name = fmt::format("p{}", 2);
  config.algorithm = Algorithm::RoundRobin;
  for (int i = 0; i < 2; ++i) {
    BackendConfig b;
    b.address = *Endpoint::parse(fmt::format("127.0.0.1:{}", 7100 + i));
    config.backends.push_back(b);
  }
  return config;
}

}  // namespace

// A pick stamps the chosen backend's last pick and the snapshot's first pick, once.
TEST_CASE("failover: picks leave cheap stamps", "[failover]") {
  pool::Pool p(twoBackends());
  const auto snapshot = p.snapshot();
  CHECK(snapshot->firstPickNs() == 0);

  const uint64_t before = pool::monotonicNs();
  const uint32_t first = snapshot->pick(1, {});
  REQUIRE(first != pool::kNoBackend);
  const uint64_t stamped = snapshot->firstPickNs();
  CHECK(stamped >= before);
  CHECK(p.backends()[first].stats->last_pick_ns.load() == stamped);

  const uint32_t second = snapshot->pick(2, {});
  CHECK(snapshot->firstPickNs() == stamped);  // Only the first pick writes it.
  CHECK(p.backends()[second].stats->last_pick_ns.load() >= stamped);
}

// A failed connect starts the run of failures and stamps when; a success clears both.
TEST_CASE("failover: passive failures stamp the first failed signal", "[failover]") {
  pool::Pool p(twoBackends());
  pool::BackendStats& stats = *p.backends()[0].stats;
  p.reportFailure(stats);
  const uint64_t first = stats.first_failure_ns.load();
  CHECK(first != 0);
  p.reportFailure(stats);
  CHECK(stats.first_failure_ns.load() == first);
  p.reportSuccess(stats);
  CHECK(stats.first_failure_ns.load() == 0);
  CHECK(stats.consecutive_failures.load() == 0);
}

// The record learns its first moved flow from the down snapshot's first pick, exactly once,
// and keeps following the backend's last pick only while it is down.
TEST_CASE("failover: a record settles once a flow moved", "[failover]") {
  pool::Pool p(twoBackends());
  p.backends()[0].state = pool::BackendState::Down;
  p.rebuild();

  health::FailoverRecord record;
  record.down_ns = pool::monotonicNs();
  record.down_snapshot = p.snapshot();
  const pool::BackendStats& stats = *p.backends()[0].stats;

  CHECK(health::settleFailover(record, stats) == -1);  // No flow yet.
  CHECK(record.first_moved_ns == 0);

  const uint32_t chosen = p.snapshot()->pick(7, {});
  CHECK(chosen == 1);  // The down backend is not picked.
  const int64_t reroute_us = health::settleFailover(record, stats);
  CHECK(reroute_us >= 0);
  CHECK(record.first_moved_ns == p.snapshot()->firstPickNs());
  CHECK_FALSE(record.down_snapshot);
  CHECK(health::settleFailover(record, stats) == -1);  // Counted once.

  p.backends()[0].stats->last_pick_ns.store(123);
  health::settleFailover(record, stats);
  CHECK(record.last_flow_ns == 123);  // Still down: follows the live stamp.
  record.up_ns = 1;
  p.backends()[0].stats->last_pick_ns.store(456);
  health::settleFailover(record, stats);
  CHECK(record.last_flow_ns == 123);  // Back up: frozen.
}

TEST_CASE("failover: histogram buckets", "[failover]") {
  health::FailoverHistogram h;
  h.record(1000);     // <= 1 ms
  h.record(1001);     // <= 2.5 ms
  h.record(90000000); // above every bound
  CHECK(h.counts[0] == 1);
  CHECK(h.counts[1] == 1);
  CHECK(h.counts.back() == 1);
  CHECK(h.sum_us == 90002001);
}

// The API serves the records in id order with monotonic and wall-clock times and derived
// durations; metrics carry both histograms per pool.
TEST_CASE("failover: admin API and metrics", "[failover][admin]") {
  health::PoolStatus pool;
  pool.name = "web";
  health::BackendStatus b;
  b.key = "127.0.0.1:7001";
  b.stats = std::make_shared<pool::BackendStats>();
  health::FailoverRecord r;
  r.id = 2;
  r.pool = "web";
  r.backend = b.key;
  r.reason = "probe";
  r.signal = "probe";
  r.first_signal_ns = 1'000'000'000;
  r.down_ns = 1'250'000'000;
  r.first_moved_ns = 1'250'500'000;
  r.sessions_at_down = 3;
  r.sessions_action = "left";
  b.failovers.push_back(r);
  r.id = 1;
  r.up_ns = 900'000'000;
  b.failovers.insert(b.failovers.begin(), r);
  pool.backends.push_back(b);
  pool.failover.detection.record(250000);
  pool.failover.reroute.record(500);

  admin::AdminApi api("", admin::ApiHooks{[&] {
                                            admin::StatusView v;
                                            v.pools = {pool};
                                            return v;
                                          },
                                          nullptr, nullptr, nullptr});
  admin::Request request;
  request.method = "GET";
  request.target = request.path = "/api/v1/failovers";
  request.transport = admin::Transport::Unix;
  const admin::Response answer = api.handle(request);
  REQUIRE(answer.status == 200);
  const auto doc = nlohmann::json::parse(answer.body);
  REQUIRE(doc["failovers"].size() == 2);
  CHECK(doc["failovers"][0]["id"] == 1);
  const auto& second = doc["failovers"][1];
  CHECK(second["detection_ms"] == 250.0);
  CHECK(second["reroute_ms"] == 0.5);
  CHECK(second["up_mono_ns"].is_null());
  CHECK(second["down_for_ms"].is_null());
  CHECK(second["down_mono_ns"] == 1'250'000'000);
  CHECK(second["down_unix_ms"].get<int64_t>() - second["first_signal_unix_ms"].get<int64_t>() ==
        250);
  CHECK(second["sessions_at_down"] == 3);

  request.method = "POST";
  CHECK(api.handle(request).status == 405);

  admin::StatusView view;
  view.pools = {pool};
  const std::string metrics = admin::renderMetrics(view);
  CHECK(metrics.find("# TYPE fulcrum_failover_detection_seconds histogram") !=
        std::string::npos);
  CHECK(metrics.find("fulcrum_failover_detection_seconds_bucket{pool=\"web\",le=\"0.25\"} 1") !=
        std::string::npos);
  CHECK(metrics.find("fulcrum_failover_detection_seconds_bucket{pool=\"web\",le=\"0.1\"} 0") !=
        std::string::npos);
  CHECK(metrics.find("fulcrum_failover_reroute_seconds_count{pool=\"web\"} 1") !=
        std::string::npos);
  CHECK(metrics.find("fulcrum_failover_reroute_seconds_sum{pool=\"web\"} 0.0005") !=
        std::string::npos);
}
