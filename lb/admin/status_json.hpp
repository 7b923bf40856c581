#pragma once

// The JSON documents of the admin API (GET /api/v1/status and the answers to operator
// actions). Field names are part of the API; README's Operations section lists them.

#include <string>

#include <nlohmann/json.hpp>

#include "admin/status_view.hpp"

namespace fulcrum::admin {

// {"version", "uptime_seconds", "draining", "listeners": [...], "pools": [...]}.
nlohmann::ordered_json statusJson(const StatusView& view);

// One backend of one pool, as listed in statusJson's pools[].backends[].
nlohmann::ordered_json backendJson(const health::BackendStatus& backend);

// GET /api/v1/failovers: {"now_mono_ns", "now_unix_ms", "failovers": [...]}, every kept
// failover record of every backend, oldest first. Times are CLOCK_MONOTONIC nanoseconds
// ("*_mono_ns", 0 or absent = not yet) with Unix milliseconds beside them ("*_unix_ms"),
// and the derived durations in milliseconds.
nlohmann::ordered_json failoversJson(const StatusView& view);

// Compact text. Bytes that are not UTF-8 (a probe detail quoting a backend's answer, a path
// the client sent) become U+FFFD instead of failing the whole document.
std::string dumpJson(const nlohmann::ordered_json& value);

}  // namespace fulcrum::admin
