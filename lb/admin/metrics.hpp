#pragma once

// GET /metrics: the Prometheus text exposition format (version 0.0.4). Every family has HELP
// and TYPE lines and its samples together; counters end in _total, units are seconds and
// bytes, as `promtool check metrics` asks. README's Operations section lists the families.

#include <string>

#include "admin/status_view.hpp"

namespace fulcrum::admin {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string renderMetrics(const StatusView& view);

// A label value with backslash, double quote and newline escaped as the format requires.
std::string escapeLabel(std::string_view value);

}  // namespace fulcrum::admin
