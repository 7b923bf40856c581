#pragma once

// GET /: one self-contained HTML page (inline style and script, no external assets) showing
// listeners, pools and backends with their state in colour. The server renders the current
// state into the page, so it is complete without JavaScript; the inline script then fetches
// /api/v1/status every 2 s and redraws the same markup. A token given in the page's query
// (?token=...) is sent by the script in an Authorization header.
//
// Every backend row carries data-pool, data-backend and data-state attributes, a stable hook
// for scripts and tests.

#include <string>
#include <string_view>

#include "admin/status_view.hpp"

namespace fulcrum::admin {

// The Content-Security-Policy the page is served with: nothing may load from elsewhere.
inline constexpr const char* kStatusPagePolicy =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

std::string renderStatusPage(const StatusView& view);

// &, <, >, " and ' as character references.
std::string escapeHtml(std::string_view text);

// "512 B", "1.5 KiB", "3.2 GiB".
std::string humanBytes(uint64_t bytes);

}  // namespace fulcrum::admin
