#pragma once

// The little HTTP/1.x the demo backend speaks: enough to find request heads in a byte stream,
// tell keep-alive from close and skip Content-Length bodies. Pure functions, no I/O.

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

namespace fulcrum::demo {

// A request body larger than this is refused rather than skipped.
inline constexpr uint64_t kMaxBodyBytes = uint64_t{1} << 30;

// What the HTTP side needs to know about one request head.
struct HttpRequest {
  bool valid = false;
  bool head_only = false;   // HEAD: same headers, no body.
  bool keep_alive = false;  // After the defaults of the version and the Connection header.
  uint64_t body_bytes = 0;  // Content-Length, to be skipped before the next request.
};

// Parses a complete head: request line and header lines, without the blank line that ends it.
// Returns valid == false for anything but HTTP/1.0 or HTTP/1.1, a header line without a colon,
// a bad or too large Content-Length, and any Transfer-Encoding.
HttpRequest parseHttpHead(std::string_view head);

// Finds the blank line ("\r\n" or "\n") that ends a head whose request line starts at pos.
// Returns the offset where the head text ends and the offset of the first byte after the blank
// line, or nullopt while the head is incomplete.
std::optional<std::pair<size_t, size_t>> findHeadEnd(std::string_view buf, size_t pos);

}  // namespace fulcrum::demo
