#include "admin/status_page.hpp"

#include <atomic>
#include <iterator>

#include <fmt/format.h>

namespace fulcrum::admin {

namespace {

constexpr std::string_view kHead = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fulcrum status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f4f6f8; }
header { background: #1d232a; color: #fff; padding: 10px 20px; display: flex; gap: 16px;
         align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
#meta, #refresh { color: #b8c2cc; font-size: 13px; }
#refresh.stale { color: #ff8a80; }
main { padding: 8px 20px 24px; }
section { background: #fff; border-radius: 6px; box-shadow: 0 1px 2px rgba(0,0,0,.12);
          margin: 14px 0; padding: 6px 14px 10px; }
h2 { font-size: 15px; margin: 8px 0; }
h2 small { color: #5f6b76; font-weight: normal; margin-left: 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e6e9ec;
         white-space: nowrap; }
th { color: #5f6b76; font-weight: 600; font-size: 12px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; min-width: 64px; text-align: center; border-radius: 10px;
         padding: 1px 8px; color: #fff; font-weight: 600; font-size: 12px; }
.state-up .badge { background: #2e7d32; }
.state-down .badge { background: #c62828; }
.state-draining .badge { background: #ef8f00; }
.state-disabled .badge { background: #78848f; }
tr.state-down td { background: #fdecea; }
.checks span { display: inline-block; width: 9px; height: 9px; margin-right: 2px;
               border-radius: 2px; }
.checks .ok { background: #2e7d32; }
.checks .fail { background: #c62828; }
.muted { color: #8a949d; }
</style>
</head>
<body>
)html";

// The script redraws #content with the same markup renderContent() writes, from the JSON of
// /api/v1/status. Text goes in through textContent only, so nothing the API returns is ever
// parsed as HTML.
constexpr std::string_view kScript = R"js(<script>
(function () {
  "use strict";
  var token = new URLSearchParams(window.location.search).get("token");
  var headers = token ? { "Authorization": "Bearer " + token } : {};
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = String(text); }
    return e;
  }
  function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }
  function row(cells, attrs) {
    var tr = el("tr", attrs || {});
    cells.forEach(function (c) { tr.appendChild(c); });
    return tr;
  }
  function td(text, cls) { return el("td", cls ? { "class": cls } : {}, text); }
  function head(names) {
    var thead = el("thead", {});
    thead.appendChild(row(names.map(function (n) { return el("th", {}, n); })));
    return thead;
  }
  function listeners(list) {
    var s = el("section", { "class": "listeners" });
    s.appendChild(el("h2", {}, "Listeners"));
    var t = el("table", {});
    t.appendChild(head(["listener", "protocol", "address", "pool", "active", "sessions"]));
    var body = el("tbody", {});
    list.forEach(function (l) {
      var udp = l.protocol === "udp";
      body.appendChild(row([td(l.name), td(l.protocol), td(l.address), td(l.pool),
        td(udp ? l.udp.sessions : l.active_sessions, "num"),
        td(udp ? l.udp.sessions_total : l.accepted_total, "num")],
        { "data-listener": l.name }));
    });
    t.appendChild(body);
    s.appendChild(t);
    return s;
  }
  function backendRow(pool, b) {
    var checks = el("td", { "class": "checks" });
    if (b.recent_checks.length === 0) { checks.appendChild(el("span", { "class": "none" })); }
    b.recent_checks.forEach(function (c) {
      checks.appendChild(el("span", { "class": c.ok ? "ok" : "fail",
                                      "title": c.latency_ms + " ms " + c.detail }));
    });
    var state = el("td", {});
    state.appendChild(el("span", { "class": "badge" }, b.state));
    var weight = b.effective_weight === b.weight ? String(b.weight)
               : b.effective_weight + " / " + b.weight;
    return row([td(b.address + (b.backup ? " (backup)" : "")), state, td(b.admin),
                td(b.checked ? b.health : b.health + " (unchecked)"), td(weight, "num"),
                td(b.active_sessions, "num"), td(b.sessions_total, "num"),
                td(bytes(b.bytes_to_backend_total), "num"),
                td(bytes(b.bytes_from_backend_total), "num"),
                td(b.connect_failures_total, "num"), checks],
               { "class": "backend state-" + b.state, "data-pool": pool,
                 "data-backend": b.address, "data-state": b.state });
  }
  function pool(p) {
    var s = el("section", { "class": "pool", "data-pool": p.name });
    var h = el("h2", {}, "pool " + p.name);
    h.appendChild(el("small", {}, p.algorithm + " \u00b7 check " + p.check + " \u00b7 " +
      p.backends_up + "/" + p.backends.length + " up" +
      (p.all_down_fallback ? " \u00b7 all-down fallback" : "")));
    s.appendChild(h);
    var t = el("table", {});
    t.appendChild(head(["backend", "state", "admin", "health", "weight", "active", "sessions",
                        "sent", "received", "connect failures", "recent checks"]));
    var body = el("tbody", {});
    p.backends.forEach(function (b) { body.appendChild(backendRow(p.name, b)); });
    t.appendChild(body);
    s.appendChild(t);
    return s;
  }
  function draw(status) {
    var main = document.getElementById("content");
    var fresh = el("main", { "id": "content" });
    fresh.appendChild(listeners(status.listeners));
    status.pools.forEach(function (p) { fresh.appendChild(pool(p)); });
    main.replaceWith(fresh);
    document.getElementById("meta").textContent = "version " + status.version + " \u00b7 up " +
      Math.floor(status.uptime_seconds) + " s" + (status.draining ? " \u00b7 draining" : "");
    var r = document.getElementById("refresh");
    r.textContent = "updated " + new Date().toLocaleTimeString();
    r.className = "";
  }
  function tick() {
    fetch("/api/v1/status", { headers: headers, cache: "no-store" })
      .then(function (res) {
        if (!res.ok) { throw new Error("HTTP " + res.status); }
        return res.json();
      })
      .then(draw)
      .catch(function (err) {
        var r = document.getElementById("refresh");
        r.textContent = "refresh failed: " + err.message;
        r.className = "stale";
      })
      .finally(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
</script>
)js";

template <typename T>
uint64_t get(const std::atomic<T>& counter) {
  return counter.load(std::memory_order_relaxed);
}

using Out = std::back_insert_iterator<std::string>;

void renderListeners(Out out, const StatusView& view) {
  fmt::format_to(out, "<section class=\"listeners\"><h2>Listeners</h2><table><thead><tr>"
                      "<th>listener</th><th>protocol</th><th>address</th><th>pool</th>"
                      "<th>active</th><th>sessions</th></tr></thead><tbody>\n");
  for (const runtime::ListenerState* l : view.listeners) {
    const bool udp = l->config.protocol == Protocol::Udp;
    fmt::format_to(out,
                   "<tr data-listener=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td>"
                   "<td class=\"num\">{4}</td><td class=\"num\">{5}</td></tr>\n",
                   escapeHtml(l->config.name), toString(l->config.protocol),
                   escapeHtml(l->address.toString()), escapeHtml(l->config.pool),
                   udp ? get(l->udp.sessions) : get(l->active),
                   udp ? get(l->udp.sessions_total) : get(l->accepted_total));
  }
  fmt::format_to(out, "</tbody></table></section>\n");
}

void renderChecks(Out out, const health::BackendStatus& b) {
  fmt::format_to(out, "<td class=\"checks\">");
  if (b.recent.empty()) {
    fmt::format_to(out, "<span class=\"none\"></span>");
  }
  for (const health::ProbeRecord& probe : b.recent) {
    fmt::format_to(out, "<span class=\"{}\" title=\"{} ms {}\"></span>",
                   probe.ok ? "ok" : "fail", probe.latency_ms, escapeHtml(probe.detail));
  }
  fmt::format_to(out, "</td>");
}

void renderBackend(Out out, const std::string& pool, const health::BackendStatus& b) {
  const char* state = pool::toString(b.state);
  const std::string key = escapeHtml(b.key);
  const std::string weight = b.effective_weight == b.weight
                                 ? fmt::format("{}", b.weight)
                                 : fmt::format("{} / {}", b.effective_weight, b.weight);
  fmt::format_to(out,
                 "<tr class=\"backend state-{0}\" data-pool=\"{1}\" data-backend=\"{2}\" "
                 "data-state=\"{0}\"><td>{2}{3}</td><td><span class=\"badge\">{0}</span></td>"
                 "<td>{4}</td><td>{5}{6}</td><td class=\"num\">{7}</td>",
                 state, escapeHtml(pool), key, b.backup ? " (backup)" : "", toString(b.admin),
                 b.health_up ? "up" : "down", b.checked ? "" : " (unchecked)", weight);
  if (b.stats) {
    const pool::BackendStats& s = *b.stats;
    fmt::format_to(out,
                   "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
                   "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                   get(s.active), get(s.sessions_total), humanBytes(get(s.bytes_to_backend_total)),
                   humanBytes(get(s.bytes_from_backend_total)), get(s.connect_fail_total));
  } else {
    fmt::format_to(out, "<td></td><td></td><td></td><td></td><td></td>");
  }
  renderChecks(out, b);
  fmt::format_to(out, "</tr>\n");
}

void renderPool(Out out, const health::PoolStatus& pool) {
  fmt::format_to(out,
                 "<section class=\"pool\" data-pool=\"{0}\"><h2>pool {0}<small>{1} &middot; "
                 "check {2} &middot; {3}/{4} up{5}</small></h2>\n",
                 escapeHtml(pool.name), toString(pool.algorithm), toString(pool.check), pool.up,
                 pool.backends.size(), pool.fallback ? " &middot; all-down fallback" : "");
  fmt::format_to(out, "<table><thead><tr><th>backend</th><th>state</th><th>admin</th>"
                      "<th>health</th><th>weight</th><th>active</th><th>sessions</th>"
                      "<th>sent</th><th>received</th><th>connect failures</th>"
                      "<th>recent checks</th></tr></thead><tbody>\n");
  for (const health::BackendStatus& backend : pool.backends) {
    renderBackend(out, pool.name, backend);
  }
  fmt::format_to(out, "</tbody></table></section>\n");
}

}  // namespace

std::string escapeHtml(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string humanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) {
    return fmt::format("{} B", bytes);
  }
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string renderStatusPage(const StatusView& view) {
  std::string page(kHead);
  Out out(page);
  fmt::format_to(out,
                 "<header><h1>Fulcrum</h1><span id=\"meta\">version {} &middot; up {} s{}</span>"
                 "<span id=\"refresh\">refreshing every 2 s</span></header>\n"
                 "<main id=\"content\">\n",
                 escapeHtml(view.version), view.uptime_ms / 1000,
                 view.draining ? " &middot; draining" : "");
  renderListeners(out, view);
  for (const health::PoolStatus& pool : view.pools) {
    renderPool(out, pool);
  }
  page += "</main>\n";
  page += kScript;
  page += "</body>\n</html>\n";
  return page;
}

}  // namespace fulcrum::admin
