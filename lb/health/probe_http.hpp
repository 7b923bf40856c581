#pragma once

// The HTTP side of the http probe, without sockets: builds the request and judges the
// response bytes as they arrive (parsed by Node's http-parser, the Debian libhttp-parser).
// Private to lb/health/probe*.cpp; unit-tested on its own.

#include <http_parser.h>

#include <cstddef>
#include <string>

#include "fulcrum/config.hpp"

namespace fulcrum::health::detail {

// Bytes of body kept to look for the expected substring; a longer body is judged on this
// prefix.
inline constexpr size_t kHttpBodyCap = 64 * 1024;
// Bytes of response read at most, status line, headers and framing included, so a peer
// that streams forever cannot keep a probe busy or growing.
inline constexpr size_t kHttpResponseCap = kHttpBodyCap + 96 * 1024;

enum class Verdict { Undecided, Pass, Fail };

// "GET /path HTTP/1.1" with Host (http_host, or the target address with its port unless
// 80), Connection: close and User-Agent: fulcrum-health.
std::string buildHttpRequest(const HealthCheckConfig& config);

// Judges one response. Details: "status_N" (pass, or a status outside config.http_status),
// "body_not_found", "http_parse_error", "response_too_long", "closed_before_response".
class HttpResponseCheck {
 public:
  explicit HttpResponseCheck(const HealthCheckConfig& config);

  HttpResponseCheck(const HttpResponseCheck&) = delete;
  HttpResponseCheck& operator=(const HttpResponseCheck&) = delete;

  // Feeds the next bytes of the response; returns the verdict once one is reached, after
  // which further bytes are ignored.
  Verdict feed(const char* data, size_t len);
  // The peer closed: a body delimited by the close ends here.
  Verdict finishAtEof();

  Verdict verdict() const { return verdict_; }
  const std::string& detail() const { return detail_; }
  // Whether a status line and headers arrived (for the timeout's detail).
  bool sawStatus() const { return status_ != 0; }

 private:
  static int onHeadersComplete_cb(http_parser* parser);
  static int onBody_cb(http_parser* parser, const char* at, size_t len);
  static int onMessageComplete_cb(http_parser* parser);

  int onHeadersComplete();
  void onBody(const char* at, size_t len);
  void onMessageComplete();
  void decide(Verdict verdict, std::string detail);
  bool statusAccepted(unsigned status) const;

  const HealthCheckConfig& config_;
  http_parser parser_;
  http_parser_settings settings_;
  Verdict verdict_ = Verdict::Undecided;
  std::string detail_;
  unsigned status_ = 0;  // Final status; 0 before it arrives.
  std::string body_;     // At most kHttpBodyCap bytes.
  size_t fed_bytes_ = 0;
  bool head_ = false;  // HEAD requests get no body even when Content-Length says otherwise.
};

}  // namespace fulcrum::health::detail
