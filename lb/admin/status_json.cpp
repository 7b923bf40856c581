#include "admin/status_json.hpp"

#include <algorithm>
#include <atomic>

namespace fulcrum::admin {

namespace {

using json = nlohmann::ordered_json;

template <typename T>
T get(const std::atomic<T>& counter) {
  return counter.load(std::memory_order_relaxed);
}

json udpJson(const udp::UdpListenerStats& udp) {
  json drops = json::object();
  for (size_t i = 0; i < udp::kDropReasons; ++i) {
    drops[toString(static_cast<udp::Drop>(i))] = get(udp.drops_total[i]);
  }
  json ended = json::object();
  for (size_t i = 0; i < udp::kEndReasons; ++i) {
    ended[toString(static_cast<udp::EndReason>(i))] = get(udp.sessions_ended_total[i]);
  }
  return {
      {"sessions", get(udp.sessions)},
      {"sessions_total", get(udp.sessions_total)},
      {"sessions_ended_total", std::move(ended)},
      {"datagrams_from_client_total", get(udp.datagrams_from_client_total)},
      {"datagrams_to_backend_total", get(udp.datagrams_to_backend_total)},
      {"datagrams_from_backend_total", get(udp.datagrams_from_backend_total)},
      {"datagrams_to_client_total", get(udp.datagrams_to_client_total)},
      {"bytes_from_client_total", get(udp.bytes_from_client_total)},
      {"bytes_from_backend_total", get(udp.bytes_from_backend_total)},
      {"drops_total", std::move(drops)},
  };
}

// mode = "xdp" listeners: how the VIP is served and the kernel's counters for it.
json xdpJson(const runtime::ListenerState& listener) {
  json out = {
      {"interface", listener.config.interface},
      {"attach", listener.xdp_attach.empty() ? "splicer_fallback" : listener.xdp_attach},
  };
  if (!listener.xdp_fallback_reason.empty()) {
    out["fallback_reason"] = listener.xdp_fallback_reason;
  }
  if (listener.xdp == nullptr || !listener.xdp_vip_added) {
    return out;
  }
  const xdp::XdpCounter vip = listener.xdp->vipCounter(listener.xdp_vip_id);
  out["packets_total"] = vip.packets;
  out["bytes_total"] = vip.bytes;
  json backends = json::array();
  for (const xdp::XdpBackendView& b : listener.xdp->backends(listener.xdp_vip_id)) {
    backends.push_back({{"address", b.key},
                        {"up", b.up},
                        {"packets_total", b.counter.packets},
                        {"bytes_total", b.counter.bytes}});
  }
  out["backends"] = std::move(backends);
  json events = json::object();
  for (uint32_t stat = 0; stat < FULCRUM_XDP_STAT_COUNT; ++stat) {
    events[xdp::statName(stat)] = listener.xdp->program().stat(stat);
  }
  out["program_events_total"] = std::move(events);
  return out;
}

json listenerJson(const runtime::ListenerState& listener) {
  json out = {
      {"name", listener.config.name},
      {"protocol", toString(listener.config.protocol)},
      {"address", listener.address.toString()},
      {"pool", listener.config.pool},
      {"mode", toString(listener.config.mode)},
  };
  if (listener.config.mode == ListenerMode::Xdp) {
    out["xdp"] = xdpJson(listener);
  }
  if (listener.config.protocol == Protocol::Udp) {
    out["udp"] = udpJson(listener.udp);
    return out;
  }
  out["active_sessions"] = get(listener.active);
  out["max_connections"] = listener.config.max_connections;
  out["accepted_total"] = get(listener.accepted_total);
  out["rejected_total"] = {
      {"max_connections", get(listener.rejected_max_connections_total)},
      {"no_backend", get(listener.no_backend_total)},
      {"accept_error", get(listener.accept_error_total)},
      {"backend_socket_error", get(listener.backend_socket_error_total)},
  };
  return out;
}

json probeJson(const health::ProbeRecord& probe) {
  return {
      {"unix_ms", probe.unix_ms},
      {"ok", probe.ok},
      {"latency_ms", probe.latency_ms},
      {"detail", probe.detail},
  };
}

// Milliseconds from a to b, or null while b is not known.
json spanMs(uint64_t a, uint64_t b) {
  if (a == 0 || b == 0) {
    return nullptr;
  }
  return b >= a ? static_cast<double>(b - a) / 1e6 : -static_cast<double>(a - b) / 1e6;
}

json failoverJson(const health::FailoverRecord& r, int64_t unix_offset_ms) {
  json out = {
      {"id", r.id},
      {"pool", r.pool},
      {"backend", r.backend},
      {"reason", r.reason},
      {"signal", r.signal},
      {"detail", r.detail},
      {"sessions_at_down", r.sessions_at_down},
      {"sessions_action", r.sessions_action},
      {"up_reason", r.up_reason.empty() ? json(nullptr) : json(r.up_reason)},
  };
  const std::pair<const char*, uint64_t> stamps[] = {
      {"first_signal", r.first_signal_ns}, {"down", r.down_ns},
      {"last_flow", r.last_flow_ns},       {"first_moved", r.first_moved_ns},
      {"up", r.up_ns},
  };
  for (const auto& [name, ns] : stamps) {
    out[fmt::format("{}_mono_ns", name)] = ns == 0 ? json(nullptr) : json(ns);
    out[fmt::format("{}_unix_ms", name)] =
        ns == 0 ? json(nullptr) : json(static_cast<int64_t>(ns / 1'000'000) + unix_offset_ms);
  }
  out["detection_ms"] = spanMs(r.first_signal_ns, r.down_ns);
  out["reroute_ms"] = spanMs(r.down_ns, r.first_moved_ns);
  out["down_for_ms"] = spanMs(r.down_ns, r.up_ns);
  return out;
}

}  // namespace

json failoversJson(const StatusView& view) {
  const int64_t offset = health::monotonicToUnixMsOffset();
  std::vector<const health::FailoverRecord*> records;
  for (const health::PoolStatus& pool : view.pools) {
    for (const health::BackendStatus& backend : pool.backends) {
      for (const health::FailoverRecord& record : backend.failovers) {
        records.push_back(&record);
      }
    }
  }
  std::sort(records.begin(), records.end(),
            [](const auto* a, const auto* b) { return a->id < b->id; });
  json list = json::array();
  for (const health::FailoverRecord* record : records) {
    list.push_back(failoverJson(*record, offset));
  }
  const uint64_t now = pool::monotonicNs();
  return {
      {"now_mono_ns", now},
      {"now_unix_ms", static_cast<int64_t>(now / 1'000'000) + offset},
      {"failovers", std::move(list)},
  };
}

json backendJson(const health::BackendStatus& backend) {
  json out = {
      {"address", backend.key},
      {"backup", backend.backup},
      {"state", pool::toString(backend.state)},
      {"admin", toString(backend.admin)},
      {"health", backend.health_up ? "up" : "down"},
      {"checked", backend.checked},
      {"weight", backend.weight},
      {"effective_weight", backend.effective_weight},
      {"slow_starting", backend.slow_starting},
  };

  json recent = json::array();
  for (const health::ProbeRecord& probe : backend.recent) {
    recent.push_back(probeJson(probe));
  }
  out["recent_checks"] = std::move(recent);

  if (!backend.stats) {
    return out;
  }
  const pool::BackendStats& s = *backend.stats;
  json failures = json::object();
  for (size_t i = 0; i < pool::kConnectFailReasons; ++i) {
    failures[toString(static_cast<pool::ConnectFail>(i))] = get(s.connect_fail_by_reason_total[i]);
  }
  out["active_sessions"] = get(s.active);
  out["sessions_total"] = get(s.sessions_total);
  out["connect_failures_total"] = get(s.connect_fail_total);
  out["connect_failures_by_reason_total"] = std::move(failures);
  out["bytes_to_backend_total"] = get(s.bytes_to_backend_total);
  out["bytes_from_backend_total"] = get(s.bytes_from_backend_total);
  out["probes_total"] = get(s.probes_total);
  out["probe_failures_total"] = get(s.probe_failures_total);
  out["went_down_total"] = get(s.went_down_total);
  out["went_up_total"] = get(s.went_up_total);
  out["passive_downs_total"] = get(s.passive_downs_total);
  return out;
}

json statusJson(const StatusView& view) {
  json listeners = json::array();
  for (const runtime::ListenerState* listener : view.listeners) {
    listeners.push_back(listenerJson(*listener));
  }

  json pools = json::array();
  for (const health::PoolStatus& pool : view.pools) {
    json backends = json::array();
    for (const health::BackendStatus& backend : pool.backends) {
      backends.push_back(backendJson(backend));
    }
    pools.push_back({
        {"name", pool.name},
        {"algorithm", toString(pool.algorithm)},
        {"check", toString(pool.check)},
        {"backends_up", pool.up},
        {"all_down_fallback", pool.fallback},
        {"backends", std::move(backends)},
    });
  }

  return {
      {"version", view.version},
      {"uptime_seconds", static_cast<double>(view.uptime_ms) / 1000.0},
      {"draining", view.draining},
      {"listeners", std::move(listeners)},
      {"pools", std::move(pools)},
  };
}

std::string dumpJson(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace fulcrum::admin
