#include "health/probe_http.hpp"

#include <algorithm>
#include <utility>

namespace fulcrum::health::detail {

namespace {

constexpr uint16_t kDefaultHttpPort = 80;

std::string hostHeader(const HealthCheckConfig& config) {
  if (!config.http_host.empty()) {
    return config.http_host;
  }
  if (config.target.port() != kDefaultHttpPort) {
    return config.target.toString();
  }
  if (config.target.isV6()) {
    // Appending, not "[" + ip: GCC 12 warns falsely (-Wrestrict) on that operator+.
    std::string host(1, '[');
    host += config.target.ipString();
    host += ']';
    return host;
  }
  return config.target.ipString();
}

}  // namespace

std::string buildHttpRequest(const HealthCheckConfig& config) {
  std::string request;
  request.reserve(128 + config.http_path.size() + config.http_host.size());

  request += config.http_method.empty() ? "GET" : config.http_method;
  request += ' ';
  request += config.http_path.empty() ? "/" : config.http_path;
  request += " HTTP/1.1\r\nHost: ";
  request += hostHeader(config);
  request += "\r\nUser-Agent: fulcrum-health\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  return request;
}

HttpResponseCheck::HttpResponseCheck(const HealthCheckConfig& config) : config_(config) {
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;

  http_parser_settings_init(&settings_);
  settings_.on_headers_complete = onHeadersComplete_cb;
  settings_.on_body = onBody_cb;
  settings_.on_message_complete = onMessageComplete_cb;

  head_ = config.http_method == "HEAD";
}

Verdict HttpResponseCheck::feed(const char* data, size_t len) {
  if (verdict_ != Verdict::Undecided || len == 0) {
    return verdict_;
  }

  // Only the bytes under the cap are parsed; the verdict must come from them.
  const size_t room = kHttpResponseCap - fed_bytes_;
  const size_t take = std::min(len, room);
  fed_bytes_ += take;

  http_parser_execute(&parser_, &settings_, data, take);
  if (verdict_ != Verdict::Undecided) {
    return verdict_;
  }

  if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK) {
    decide(Verdict::Fail, "http_parse_error");
    return verdict_;
  }
  if (parser_.upgrade != 0) {
    // The server switched protocols (101 with Upgrade): no body follows in HTTP terms.
    decide(Verdict::Fail, "body_not_found");
    return verdict_;
  }
  if (fed_bytes_ >= kHttpResponseCap) {
    decide(Verdict::Fail, "response_too_long");
  }
  return verdict_;
}

Verdict HttpResponseCheck::finishAtEof() {
  if (verdict_ != Verdict::Undecided) {
    return verdict_;
  }

  // A zero-length execute tells the parser the stream ended, completing a body that runs
  // until the close.
  http_parser_execute(&parser_, &settings_, nullptr, 0);
  if (verdict_ != Verdict::Undecided) {
    return verdict_;
  }

  if (status_ != 0) {
    decide(Verdict::Fail, "body_not_found");
  } else if (fed_bytes_ == 0) {
    decide(Verdict::Fail, "closed_before_response");
  } else {
    decide(Verdict::Fail, "closed_after_" + std::to_string(fed_bytes_) + "_bytes");
  }
  return verdict_;
}

int HttpResponseCheck::onHeadersComplete_cb(http_parser* parser) {
  return static_cast<HttpResponseCheck*>(parser->data)->onHeadersComplete();
}

int HttpResponseCheck::onBody_cb(http_parser* parser, const char* at, size_t len) {
  static_cast<HttpResponseCheck*>(parser->data)->onBody(at, len);
  return 0;
}

int HttpResponseCheck::onMessageComplete_cb(http_parser* parser) {
  static_cast<HttpResponseCheck*>(parser->data)->onMessageComplete();
  return 0;
}

int HttpResponseCheck::onHeadersComplete() {
  // The parser signals "skip the body" with 1; a HEAD answer has none whatever it declares.
  const int skip_body = head_ ? 1 : 0;

  const unsigned status = parser_.status_code;
  if (status >= 100 && status < 200 && status != 101) {
    // An interim answer (100 Continue, 103 Early Hints): the final one follows.
    return skip_body;
  }

  status_ = status;
  if (!statusAccepted(status)) {
    decide(Verdict::Fail, "status_" + std::to_string(status));
    return skip_body;
  }
  if (config_.http_body.empty()) {
    decide(Verdict::Pass, "status_" + std::to_string(status));
  }
  return skip_body;
}

void HttpResponseCheck::onBody(const char* at, size_t len) {
  if (verdict_ != Verdict::Undecided || status_ == 0) {
    return;
  }

  const std::string& needle = config_.http_body;
  const size_t kept = body_.size();
  body_.append(at, std::min(len, kHttpBodyCap - kept));

  // Only the tail that could complete a match spanning the previous chunk is searched again.
  const size_t from = kept >= needle.size() ? kept - needle.size() + 1 : 0;
  if (body_.find(needle, from) != std::string::npos) {
    decide(Verdict::Pass, "status_" + std::to_string(status_));
    return;
  }
  if (body_.size() >= kHttpBodyCap) {
    decide(Verdict::Fail, "body_not_found");
  }
}

void HttpResponseCheck::onMessageComplete() {
  if (verdict_ != Verdict::Undecided) {
    return;
  }
  if (status_ == 0) {
    return;  // The end of an interim answer.
  }
  decide(Verdict::Fail, "body_not_found");
}

void HttpResponseCheck::decide(Verdict verdict, std::string detail) {
  verdict_ = verdict;
  detail_ = std::move(detail);
  // Stops the parser at this byte: nothing after the verdict is worth parsing. A parser
  // already in error has stopped, and pausing it would trip http-parser's assertion.
  if (HTTP_PARSER_ERRNO(&parser_) == HPE_OK) {
    http_parser_pause(&parser_, 1);
  }
}

bool HttpResponseCheck::statusAccepted(unsigned status) const {
  for (const StatusRange& range : config_.http_status) {
    if (status >= range.low && status <= range.high) {
      return true;
    }
  }
  return false;
}

}  // namespace fulcrum::health::detail
