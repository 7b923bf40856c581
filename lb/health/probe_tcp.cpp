// The TCP probe kinds: tcp (the connect succeeds), tcp_expect (send, then read until the
// answer matches) and http (one request, judged by HttpResponseCheck).

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <utility>

#include "health/probe_attempt.hpp"
#include "health/probe_http.hpp"

namespace fulcrum::health::detail {

namespace {

// Bytes of a tcp_expect answer kept for matching. A banner or a status reply fits many
// times over; a peer that sends more without matching has failed.
constexpr size_t kExpectAnswerCap = 16 * 1024;
// Bytes handed to one read callback.
constexpr size_t kReadChunk = 16 * 1024;

// Where a tcp_expect answer stands. Contains can only fail at the end of the answer;
// prefix and exact fail as soon as a byte differs, so a wrong server is reported at once
// instead of at the timeout.
Verdict judgeExpect(std::string_view answer, std::string_view expect, ExpectMatch match,
                    size_t cap) {
  if (expectMatches(answer, expect, match)) {
    return Verdict::Pass;
  }

  switch (match) {
    case ExpectMatch::Contains:
      break;
    case ExpectMatch::Prefix:
    case ExpectMatch::Exact: {
      // Undecided while the answer is still a prefix of what is expected.
      const bool diverged = answer.size() >= expect.size() ||
                            expect.substr(0, answer.size()) != answer;
      if (diverged) {
        return Verdict::Fail;
      }
      break;
    }
  }
  return answer.size() >= cap ? Verdict::Fail : Verdict::Undecided;
}

class TcpAttempt final : public Attempt {
 public:
  TcpAttempt(uv_loop_t* loop, const HealthCheckConfig& config,
             std::shared_ptr<ProbeHandles> handles, Report report)
      : Attempt(loop, config, std::move(handles), std::move(report)),
        answer_cap_(std::max(kExpectAnswerCap, config.expect.size())) {}

 protected:
  int startIo() override;
  void closeIo() override;
  std::string timeoutDetail() const override;

 private:
  static TcpAttempt* from(void* data);
  static void onConnect_cb(uv_connect_t* req, int status);
  static void onAlloc_cb(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void onRead_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void onWrite_cb(uv_write_t* req, int status);

  void onConnect(int status);
  void onRead(ssize_t nread, const char* data);
  void onEof();
  void onWrite(int status);
  void judgeAnswer();

  uv_tcp_t tcp_;
  uv_connect_t connect_req_;
  uv_write_t write_req_;
  bool tcp_open_ = false;
  bool connected_ = false;
  bool sent_ = false;  // The request (if any) is fully written.

  std::string request_;  // Bytes sent after the connect; alive until the write completes.
  const size_t answer_cap_;
  std::string answer_;  // tcp_expect: what the peer sent, at most answer_cap_ bytes.
  size_t bytes_read_ = 0;
  std::optional<HttpResponseCheck> http_;
  std::array<char, kReadChunk> read_buf_;
};

TcpAttempt* TcpAttempt::from(void* data) {
  return static_cast<TcpAttempt*>(static_cast<Attempt*>(data));
}

int TcpAttempt::startIo() {
  const Endpoint& target = config_.target;
  if (!target.isV4() && !target.isV6()) {
    return UV_EINVAL;
  }

  const int init = uv_tcp_init(loop_, &tcp_);
  if (init < 0) {
    return init;
  }
  trackHandle(reinterpret_cast<uv_handle_t*>(&tcp_));
  tcp_open_ = true;

  // Disabling Nagle sends the request in one segment right away; a probe is latency-bound.
  uv_tcp_nodelay(&tcp_, 1);

  connect_req_.data = tcp_.data;
  return uv_tcp_connect(&connect_req_, &tcp_, target.sa(), onConnect_cb);
}

void TcpAttempt::closeIo() {
  if (tcp_open_) {
    // Pending connect and write requests complete with UV_ECANCELED before the close
    // callback; finished() makes them no-ops.
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onHandleClosed_cb);
  }
}

std::string TcpAttempt::timeoutDetail() const {
  if (!connected_) {
    return config_.type == HealthCheckType::Tcp ? "timeout" : "connect_timeout";
  }
  if (bytes_read_ == 0) {
    return "timeout";
  }
  if (http_) {
    return http_->sawStatus() ? "body_timeout" : "timeout_in_headers";
  }
  return "expect_not_found";
}

void TcpAttempt::onConnect_cb(uv_connect_t* req, int status) {
  from(req->data)->onConnect(status);
}

void TcpAttempt::onConnect(int status) {
  if (finished()) {
    return;
  }
  if (status < 0) {
    finish(false, errorDetail("connect", status));
    return;
  }
  connected_ = true;

  if (config_.type == HealthCheckType::Tcp) {
    finish(true, "connected");
    return;
  }

  if (config_.type == HealthCheckType::Http) {
    http_.emplace(config_);
    request_ = buildHttpRequest(config_);
  } else {
    request_ = config_.send;
  }

  const int read = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc_cb, onRead_cb);
  if (read < 0) {
    finish(false, errorDetail("read", read));
    return;
  }

  if (request_.empty()) {
    // Server-first protocols (SSH, SMTP, MySQL greet first): only listen.
    sent_ = true;
    judgeAnswer();
    return;
  }

  write_req_.data = tcp_.data;
  uv_buf_t buf = uv_buf_init(request_.data(), static_cast<unsigned>(request_.size()));
  const int write = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1,
                             onWrite_cb);
  if (write < 0) {
    finish(false, errorDetail("send", write));
  }
}

void TcpAttempt::onWrite_cb(uv_write_t* req, int status) {
  from(req->data)->onWrite(status);
}

void TcpAttempt::onWrite(int status) {
  if (finished()) {
    return;
  }
  if (status < 0) {
    finish(false, errorDetail("send", status));
    return;
  }
  sent_ = true;
  // An empty expect passes once the bytes are out.
  judgeAnswer();
}

void TcpAttempt::onAlloc_cb(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  TcpAttempt* self = from(handle->data);
  *buf = uv_buf_init(self->read_buf_.data(), static_cast<unsigned>(self->read_buf_.size()));
}

void TcpAttempt::onRead_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  from(stream->data)->onRead(nread, buf->base);
}

void TcpAttempt::onRead(ssize_t nread, const char* data) {
  if (finished() || nread == 0) {
    return;
  }
  if (nread == UV_EOF) {
    onEof();
    return;
  }
  if (nread < 0) {
    finish(false, errorDetail("read", static_cast<int>(nread)));
    return;
  }
  const auto len = static_cast<size_t>(nread);
  bytes_read_ += len;

  if (http_) {
    const Verdict verdict = http_->feed(data, len);
    if (verdict != Verdict::Undecided) {
      finish(verdict == Verdict::Pass, http_->detail());
    }
    return;
  }

  answer_.append(data, std::min(len, answer_cap_ - answer_.size()));
  judgeAnswer();
}

void TcpAttempt::onEof() {
  if (http_) {
    const Verdict verdict = http_->finishAtEof();
    finish(verdict == Verdict::Pass, http_->detail());
    return;
  }

  // A match would have finished the check already.
  if (answer_.empty()) {
    finish(false, "closed_without_answer");
    return;
  }
  finish(false, "closed_after_" + std::to_string(bytes_read_) + "_bytes");
}

void TcpAttempt::judgeAnswer() {
  // A match before the request is out would pass a server that never read it.
  if (!sent_ || http_) {
    return;
  }

  switch (judgeExpect(answer_, config_.expect, config_.match, answer_cap_)) {
    case Verdict::Pass:
      finish(true, "expect_found");
      return;
    case Verdict::Fail:
      finish(false, "expect_not_found");
      return;
    case Verdict::Undecided:
      return;
  }
}

}  // namespace

Attempt* newTcpAttempt(uv_loop_t* loop, const HealthCheckConfig& config,
                       std::shared_ptr<ProbeHandles> handles, Attempt::Report report) {
  return new TcpAttempt(loop, config, std::move(handles), std::move(report));
}

}  // namespace fulcrum::health::detail
