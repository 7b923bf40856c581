#include "admin/metrics.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "udp/udp_stats.hpp"

namespace fulcrum::admin {

namespace {

using Label = std::pair<std::string_view, std::string_view>;

template <typename T>
uint64_t get(const std::atomic<T>& counter) {
  return counter.load(std::memory_order_relaxed);
}

// Appends families to one text. Callers write each family's samples right after its
// header, which is what the format requires.
class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }

  void sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value) {
    writeName(name, labels);
    fmt::format_to(std::back_inserter(out_), " {}\n", value);
  }

  void sampleDouble(std::string_view name, std::initializer_list<Label> labels, double value) {
    writeName(name, labels);
    fmt::format_to(std::back_inserter(out_), " {}\n", value);
  }

  // One histogram's samples: cumulative buckets, +Inf, _sum and _count. counts holds one
  // non-cumulative count per bound plus the overflow; _count is their sum, so it always
  // equals the +Inf bucket even while workers record concurrently.
  void histogram(std::string_view name, const Label& a, const Label& b,
                 const pool::LatencyHistogram& h) {
    uint64_t cumulative = 0;
    const std::string bucket = fmt::format("{}_bucket", name);
    for (size_t i = 0; i < pool::kConnectBucketsUs.size(); ++i) {
      cumulative += get(h.buckets[i]);
      const std::string le =
          fmt::format("{}", static_cast<double>(pool::kConnectBucketsUs[i]) / 1e6);
      sample(bucket, {a, b, {"le", le}}, cumulative);
    }
    cumulative += get(h.buckets[pool::kConnectBucketsUs.size()]);
    sample(bucket, {a, b, {"le", "+Inf"}}, cumulative);
    sampleDouble(fmt::format("{}_sum", name), {a, b}, static_cast<double>(get(h.sum_us)) / 1e6);
    sample(fmt::format("{}_count", name), {a, b}, cumulative);
  }

  // The same for a failover histogram, labelled by pool only.
  void failoverHistogram(std::string_view name, const Label& pool,
                         const health::FailoverHistogram& h) {
    uint64_t cumulative = 0;
    const std::string bucket = fmt::format("{}_bucket", name);
    for (size_t i = 0; i < health::kFailoverBucketsUs.size(); ++i) {
      cumulative += h.counts[i];
      const std::string le =
          fmt::format("{}", static_cast<double>(health::kFailoverBucketsUs[i]) / 1e6);
      sample(bucket, {pool, {"le", le}}, cumulative);
    }
    cumulative += h.counts[health::kFailoverBucketsUs.size()];
    sample(bucket, {pool, {"le", "+Inf"}}, cumulative);
    sampleDouble(fmt::format("{}_sum", name), {pool}, static_cast<double>(h.sum_us) / 1e6);
    sample(fmt::format("{}_count", name), {pool}, cumulative);
  }

  std::string take() { return std::move(out_); }

 private:
  void writeName(std::string_view name, std::initializer_list<Label> labels) {
    out_ += name;
    if (labels.size() == 0) {
      return;
    }
    out_ += '{';
    bool first = true;
    for (const auto& [key, value] : labels) {
      if (!first) {
        out_ += ',';
      }
      first = false;
      fmt::format_to(std::back_inserter(out_), "{}=\"{}\"", key, escapeLabel(value));
    }
    out_ += '}';
  }

  std::string out_;
};

using BackendFn = std::function<void(Writer&, const Label&, const Label&,
                                     const health::BackendStatus&)>;

// One family over every backend of every pool.
void backendFamily(Writer& w, const StatusView& view, std::string_view name,
                   std::string_view type, std::string_view help, const BackendFn& fn) {
  w.family(name, type, help);
  for (const health::PoolStatus& pool : view.pools) {
    for (const health::BackendStatus& backend : pool.backends) {
      fn(w, {"pool", pool.name}, {"backend", backend.key}, backend);
    }
  }
}

void writeProcess(Writer& w, const StatusView& view) {
  w.family("fulcrum_build_info", "gauge", "Always 1; the version label names the build.");
  w.sample("fulcrum_build_info", {{"version", view.version}}, 1);
  w.family("fulcrum_uptime_seconds", "gauge", "Seconds since Fulcrum finished starting.");
  w.sampleDouble("fulcrum_uptime_seconds", {}, static_cast<double>(view.uptime_ms) / 1000.0);
  w.family("fulcrum_draining", "gauge",
           "1 while Fulcrum drains after a shutdown signal (no new sessions), else 0.");
  w.sample("fulcrum_draining", {}, view.draining ? 1 : 0);
}

void writeListeners(Writer& w, const StatusView& view) {
  w.family("fulcrum_listener_info", "gauge",
           "Always 1; labels give each listener's protocol, bound address and pool.");
  for (const runtime::ListenerState* l : view.listeners) {
    const std::string address = l->address.toString();
    w.sample("fulcrum_listener_info",
             {{"listener", l->config.name}, {"protocol", toString(l->config.protocol)},
              {"address", address}, {"pool", l->config.pool}},
             1);
  }

  w.family("fulcrum_listener_sessions_active", "gauge",
           "Sessions open now (TCP connections or UDP client sessions).");
  for (const runtime::ListenerState* l : view.listeners) {
    const bool udp = l->config.protocol == Protocol::Udp;
    w.sample("fulcrum_listener_sessions_active",
             {{"listener", l->config.name}, {"protocol", toString(l->config.protocol)}},
             udp ? get(l->udp.sessions) : get(l->active));
  }

  w.family("fulcrum_listener_sessions_total", "counter",
           "Sessions started: TCP connections accepted, UDP client sessions opened.");
  for (const runtime::ListenerState* l : view.listeners) {
    const bool udp = l->config.protocol == Protocol::Udp;
    w.sample("fulcrum_listener_sessions_total",
             {{"listener", l->config.name}, {"protocol", toString(l->config.protocol)}},
             udp ? get(l->udp.sessions_total) : get(l->accepted_total));
  }

  w.family("fulcrum_listener_errors_total", "counter",
           "TCP connections that failed before reaching a backend, by reason.");
  for (const runtime::ListenerState* l : view.listeners) {
    if (l->config.protocol == Protocol::Udp) {
      continue;
    }
    const Label name{"listener", l->config.name};
    w.sample("fulcrum_listener_errors_total", {name, {"reason", "max_connections"}},
             get(l->rejected_max_connections_total));
    w.sample("fulcrum_listener_errors_total", {name, {"reason", "no_backend"}},
             get(l->no_backend_total));
    w.sample("fulcrum_listener_errors_total", {name, {"reason", "accept_error"}},
             get(l->accept_error_total));
    w.sample("fulcrum_listener_errors_total", {name, {"reason", "backend_socket_error"}},
             get(l->backend_socket_error_total));
  }
}

void writeUdp(Writer& w, const StatusView& view) {
  w.family("fulcrum_udp_datagrams_total", "counter",
           "UDP datagrams forwarded, by direction (from_client, to_backend, from_backend, "
           "to_client).");
  for (const runtime::ListenerState* l : view.listeners) {
    if (l->config.protocol != Protocol::Udp) {
      continue;
    }
    const Label name{"listener", l->config.name};
    const udp::UdpListenerStats& u = l->udp;
    w.sample("fulcrum_udp_datagrams_total", {name, {"direction", "from_client"}},
             get(u.datagrams_from_client_total));
    w.sample("fulcrum_udp_datagrams_total", {name, {"direction", "to_backend"}},
             get(u.datagrams_to_backend_total));
    w.sample("fulcrum_udp_datagrams_total", {name, {"direction", "from_backend"}},
             get(u.datagrams_from_backend_total));
    w.sample("fulcrum_udp_datagrams_total", {name, {"direction", "to_client"}},
             get(u.datagrams_to_client_total));
  }

  w.family("fulcrum_udp_received_bytes_total", "counter",
           "UDP payload bytes read, by source (client or backend).");
  for (const runtime::ListenerState* l : view.listeners) {
    if (l->config.protocol != Protocol::Udp) {
      continue;
    }
    const Label name{"listener", l->config.name};
    w.sample("fulcrum_udp_received_bytes_total", {name, {"source", "client"}},
             get(l->udp.bytes_from_client_total));
    w.sample("fulcrum_udp_received_bytes_total", {name, {"source", "backend"}},
             get(l->udp.bytes_from_backend_total));
  }

  w.family("fulcrum_udp_datagrams_dropped_total", "counter",
           "UDP datagrams read and not delivered, by reason.");
  for (const runtime::ListenerState* l : view.listeners) {
    if (l->config.protocol != Protocol::Udp) {
      continue;
    }
    for (size_t i = 0; i < udp::kDropReasons; ++i) {
      w.sample("fulcrum_udp_datagrams_dropped_total",
               {{"listener", l->config.name}, {"reason", toString(static_cast<udp::Drop>(i))}},
               get(l->udp.drops_total[i]));
    }
  }

  w.family("fulcrum_udp_sessions_ended_total", "counter", "UDP sessions ended, by reason.");
  for (const runtime::ListenerState* l : view.listeners) {
    if (l->config.protocol != Protocol::Udp) {
      continue;
    }
    for (size_t i = 0; i < udp::kEndReasons; ++i) {
      w.sample("fulcrum_udp_sessions_ended_total",
               {{"listener", l->config.name},
                {"reason", toString(static_cast<udp::EndReason>(i))}},
               get(l->udp.sessions_ended_total[i]));
    }
  }
}

void writePools(Writer& w, const StatusView& view) {
  w.family("fulcrum_pool_backends_up", "gauge", "Backends of the pool taking new flows.");
  for (const health::PoolStatus& pool : view.pools) {
    w.sample("fulcrum_pool_backends_up", {{"pool", pool.name}}, pool.up);
  }
  w.family("fulcrum_pool_all_down_fallback", "gauge",
           "1 while no backend is up and all_down = \"all\" spreads flows over every "
           "enabled backend.");
  for (const health::PoolStatus& pool : view.pools) {
    w.sample("fulcrum_pool_all_down_fallback", {{"pool", pool.name}}, pool.fallback ? 1 : 0);
  }
  w.family("fulcrum_failover_detection_seconds", "histogram",
           "Per backend that went down: time from the first failed signal (probe or connect) "
           "to the backend being marked down.");
  for (const health::PoolStatus& pool : view.pools) {
    w.failoverHistogram("fulcrum_failover_detection_seconds", {"pool", pool.name},
                        pool.failover.detection);
  }
  w.family("fulcrum_failover_reroute_seconds", "histogram",
           "Per backend that went down: time from the down to the first new flow the pool "
           "sent elsewhere (observed when the admin endpoint is read or the backend returns).");
  for (const health::PoolStatus& pool : view.pools) {
    w.failoverHistogram("fulcrum_failover_reroute_seconds", {"pool", pool.name},
                        pool.failover.reroute);
  }
}

void writeBackendState(Writer& w, const StatusView& view) {
  backendFamily(w, view, "fulcrum_backend_state", "gauge",
                "1 for the backend's current state (up, down, draining, disabled), else 0.",
                [](Writer& w, const Label& p, const Label& b, const health::BackendStatus& s) {
                  for (auto state : {pool::BackendState::Up, pool::BackendState::Down,
                                     pool::BackendState::Draining,
                                     pool::BackendState::Disabled}) {
                    w.sample("fulcrum_backend_state", {p, b, {"state", pool::toString(state)}},
                             s.state == state ? 1 : 0);
                  }
                });
  backendFamily(w, view, "fulcrum_backend_health_up", "gauge",
                "1 while health checks (active or passive) find the backend up, else 0.",
                [](Writer& w, const Label& p, const Label& b, const health::BackendStatus& s) {
                  w.sample("fulcrum_backend_health_up", {p, b}, s.health_up ? 1 : 0);
                });
  backendFamily(w, view, "fulcrum_backend_weight", "gauge", "Configured or operator-set weight.",
                [](Writer& w, const Label& p, const Label& b, const health::BackendStatus& s) {
                  w.sample("fulcrum_backend_weight", {p, b}, s.weight);
                });
  backendFamily(w, view, "fulcrum_backend_effective_weight", "gauge",
                "Weight pickers use now; below weight during slow start.",
                [](Writer& w, const Label& p, const Label& b, const health::BackendStatus& s) {
                  w.sample("fulcrum_backend_effective_weight", {p, b}, s.effective_weight);
                });
}

// Families read from BackendStats; a backend without stats (never in a running Fulcrum)
// is skipped rather than shown as zeros.
void statsFamily(Writer& w, const StatusView& view, std::string_view name, std::string_view help,
                 uint64_t (*read)(const pool::BackendStats&), std::string_view type = "counter") {
  w.family(name, type, help);
  for (const health::PoolStatus& pool : view.pools) {
    for (const health::BackendStatus& backend : pool.backends) {
      if (backend.stats) {
        w.sample(name, {{"pool", pool.name}, {"backend", backend.key}}, read(*backend.stats));
      }
    }
  }
}

void writeBackendTraffic(Writer& w, const StatusView& view) {
  statsFamily(
      w, view, "fulcrum_backend_sessions_active", "Sessions open to the backend now.",
      [](const pool::BackendStats& s) { return get(s.active); }, "gauge");
  statsFamily(w, view, "fulcrum_backend_sessions_total", "Sessions that reached the backend.",
              [](const pool::BackendStats& s) { return get(s.sessions_total); });
  statsFamily(w, view, "fulcrum_backend_sent_bytes_total",
              "Bytes sent to the backend (client to backend), counted when a session ends.",
              [](const pool::BackendStats& s) { return get(s.bytes_to_backend_total); });
  statsFamily(w, view, "fulcrum_backend_received_bytes_total",
              "Bytes received from the backend, counted when a session ends.",
              [](const pool::BackendStats& s) { return get(s.bytes_from_backend_total); });

  w.family("fulcrum_backend_connect_failures_total", "counter",
           "Failed connects to the backend, by reason (refused, timeout, unreachable, other).");
  for (const health::PoolStatus& pool : view.pools) {
    for (const health::BackendStatus& backend : pool.backends) {
      if (!backend.stats) {
        continue;
      }
      for (size_t i = 0; i < pool::kConnectFailReasons; ++i) {
        w.sample("fulcrum_backend_connect_failures_total",
                 {{"pool", pool.name},
                  {"backend", backend.key},
                  {"reason", toString(static_cast<pool::ConnectFail>(i))}},
                 get(backend.stats->connect_fail_by_reason_total[i]));
      }
    }
  }

  w.family("fulcrum_backend_connect_duration_seconds", "histogram",
           "Time from connect() to an established TCP connection to the backend.");
  for (const health::PoolStatus& pool : view.pools) {
    for (const health::BackendStatus& backend : pool.backends) {
      if (backend.stats) {
        w.histogram("fulcrum_backend_connect_duration_seconds", {"pool", pool.name},
                    {"backend", backend.key}, backend.stats->connect_latency);
      }
    }
  }
}

void writeBackendHealth(Writer& w, const StatusView& view) {
  statsFamily(w, view, "fulcrum_backend_health_checks_total", "Active health probes run.",
              [](const pool::BackendStats& s) { return get(s.probes_total); });
  statsFamily(w, view, "fulcrum_backend_health_check_failures_total",
              "Active health probes that failed.",
              [](const pool::BackendStats& s) { return get(s.probe_failures_total); });
  statsFamily(w, view, "fulcrum_backend_went_down_total", "Transitions from up to down.",
              [](const pool::BackendStats& s) { return get(s.went_down_total); });
  statsFamily(w, view, "fulcrum_backend_went_up_total", "Transitions from down to up.",
              [](const pool::BackendStats& s) { return get(s.went_up_total); });
  statsFamily(w, view, "fulcrum_backend_passive_downs_total",
              "Times passive detection (failed connects in a row) took the backend down.",
              [](const pool::BackendStats& s) { return get(s.passive_downs_total); });
}

}  // namespace

// XDP listeners: attach state, packets and bytes per VIP and per backend, and the program's
// global counters (each drop reason has one), all read from the kernel's per-CPU maps.
void writeXdp(Writer& w, const StatusView& view) {
  w.family("fulcrum_xdp_listener_info", "gauge",
           "1 per mode = \"xdp\" listener; mode is native, generic or splicer_fallback.");
  const xdp::XdpManager* manager = nullptr;
  for (const runtime::ListenerState* l : view.listeners) {
    if (l->config.mode != ListenerMode::Xdp) {
      continue;
    }
    const std::string mode = l->xdp_attach.empty() ? "splicer_fallback" : l->xdp_attach;
    w.sample("fulcrum_xdp_listener_info",
             {{"listener", l->config.name}, {"interface", l->config.interface}, {"mode", mode}},
             1);
    manager = l->xdp != nullptr ? l->xdp : manager;
  }
  if (manager == nullptr) {
    return;
  }

  w.family("fulcrum_xdp_packets_total", "counter", "Packets to the VIP steered by XDP.");
  w.family("fulcrum_xdp_bytes_total", "counter", "L3 bytes to the VIP steered by XDP.");
  w.family("fulcrum_xdp_backend_packets_total", "counter",
           "Packets XDP encapsulated to each backend.");
  w.family("fulcrum_xdp_backend_bytes_total", "counter",
           "L3 bytes (before encapsulation) XDP sent to each backend.");
  for (const runtime::ListenerState* l : view.listeners) {
    if (l->xdp == nullptr || !l->xdp_vip_added) {
      continue;
    }
    const Label name{"listener", l->config.name};
    const xdp::XdpCounter vip = l->xdp->vipCounter(l->xdp_vip_id);
    w.sample("fulcrum_xdp_packets_total", {name}, vip.packets);
    w.sample("fulcrum_xdp_bytes_total", {name}, vip.bytes);
    for (const xdp::XdpBackendView& b : l->xdp->backends(l->xdp_vip_id)) {
      w.sample("fulcrum_xdp_backend_packets_total", {name, {"backend", b.key}},
               b.counter.packets);
      w.sample("fulcrum_xdp_backend_bytes_total", {name, {"backend", b.key}}, b.counter.bytes);
    }
  }

  w.family("fulcrum_xdp_tables_programmed_total", "counter",
           "Maglev tables written to the kernel and flipped in (startup, health, reload).");
  w.sample("fulcrum_xdp_tables_programmed_total", {}, manager->programmedTotal());
  w.family("fulcrum_xdp_table_program_failures_total", "counter",
           "Table updates the kernel refused; the VIP kept its previous table.");
  w.sample("fulcrum_xdp_table_program_failures_total", {}, manager->programFailTotal());

  w.family("fulcrum_xdp_events_total", "counter",
           "XDP program outcomes across all VIPs: pass, tx, redirect, conn_hit, conn_new and "
           "one drop_* per drop reason.");
  for (uint32_t stat = 0; stat < FULCRUM_XDP_STAT_COUNT; ++stat) {
    w.sample("fulcrum_xdp_events_total", {{"event", xdp::statName(stat)}},
             manager->program().stat(stat));
  }
}

std::string escapeLabel(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string renderMetrics(const StatusView& view) {
  Writer w;
  writeProcess(w, view);
  writeListeners(w, view);
  writeUdp(w, view);
  writePools(w, view);
  writeBackendState(w, view);
  writeBackendTraffic(w, view);
  writeBackendHealth(w, view);
  writeXdp(w, view);
  return w.take();
}

}  // namespace fulcrum::admin
