// The udp_expect probe: one datagram out on a connected UDP socket, the first datagram back
// must match. Connecting the socket matters twice: the kernel drops datagrams from any
// other source, and it reports an ICMP port unreachable for our datagram as ECONNREFUSED on
// the socket, so a closed port fails at once instead of at the timeout.

#include <memory>
#include <string>
#include <utility>

#include "health/probe_attempt.hpp"

namespace fulcrum::health::detail {

namespace {

// Large enough for any UDP payload over IPv4 or IPv6 without jumbograms, so a reply is
// never judged on a truncated copy.
constexpr size_t kDatagramCap = 65536;

class UdpAttempt final : public Attempt {
 public:
  using Attempt::Attempt;

 protected:
  int startIo() override;
  void closeIo() override;

 private:
  static UdpAttempt* from(void* data);
  static void onSend_cb(uv_udp_send_t* req, int status);
  static void onAlloc_cb(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void onRecv_cb(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf,
                        const sockaddr* addr, unsigned flags);

  void onSend(int status);
  void onRecv(ssize_t nread, const char* data, const sockaddr* addr);

  uv_udp_t udp_;
  uv_udp_send_t send_req_;
  bool udp_open_ = false;
  std::string datagram_;  // Alive until the send completes.
  // Allocated only for the attempt's lifetime, once per probe interval.
  std::unique_ptr<char[]> recv_buf_;
};

UdpAttempt* UdpAttempt::from(void* data) {
  return static_cast<UdpAttempt*>(static_cast<Attempt*>(data));
}

int UdpAttempt::startIo() {
  const Endpoint& target = config_.target;
  if (!target.isV4() && !target.isV6()) {
    return UV_EINVAL;
  }

  const int init = uv_udp_init(loop_, &udp_);
  if (init < 0) {
    return init;
  }
  trackHandle(reinterpret_cast<uv_handle_t*>(&udp_));
  udp_open_ = true;

  const int connect = uv_udp_connect(&udp_, target.sa());
  if (connect < 0) {
    return connect;
  }

  recv_buf_ = std::make_unique<char[]>(kDatagramCap);
  const int recv = uv_udp_recv_start(&udp_, onAlloc_cb, onRecv_cb);
  if (recv < 0) {
    return recv;
  }

  datagram_ = config_.send;
  send_req_.data = udp_.data;
  uv_buf_t buf = uv_buf_init(datagram_.data(), static_cast<unsigned>(datagram_.size()));
  return uv_udp_send(&send_req_, &udp_, &buf, 1, nullptr, onSend_cb);
}

void UdpAttempt::closeIo() {
  if (udp_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&udp_), onHandleClosed_cb);
  }
}

void UdpAttempt::onSend_cb(uv_udp_send_t* req, int status) {
  from(req->data)->onSend(status);
}

void UdpAttempt::onSend(int status) {
  if (finished() || status >= 0) {
    return;
  }
  // An earlier ICMP error still queued on the socket can surface here instead of on recv.
  if (status == UV_ECONNREFUSED) {
    finish(false, "icmp_unreachable");
    return;
  }
  finish(false, errorDetail("send", status));
}

void UdpAttempt::onAlloc_cb(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  UdpAttempt* self = from(handle->data);
  *buf = uv_buf_init(self->recv_buf_.get(), static_cast<unsigned>(kDatagramCap));
}

void UdpAttempt::onRecv_cb(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf,
                           const sockaddr* addr, unsigned) {
  from(udp->data)->onRecv(nread, buf->base, addr);
}

void UdpAttempt::onRecv(ssize_t nread, const char* data, const sockaddr* addr) {
  if (finished()) {
    return;
  }
  if (nread == UV_ECONNREFUSED) {
    finish(false, "icmp_unreachable");
    return;
  }
  if (nread < 0) {
    finish(false, errorDetail("recv", static_cast<int>(nread)));
    return;
  }
  if (addr == nullptr) {
    return;  // Nothing more to read this turn; an empty datagram comes with an address.
  }

  const std::string_view reply(data, static_cast<size_t>(nread));
  if (expectMatches(reply, config_.expect, config_.match)) {
    finish(true, "expect_found");
    return;
  }
  finish(false, "expect_not_found");
}

}  // namespace

Attempt* newUdpAttempt(uv_loop_t* loop, const HealthCheckConfig& config,
                       std::shared_ptr<ProbeHandles> handles, Attempt::Report report) {
  return new UdpAttempt(loop, config, std::move(handles), std::move(report));
}

}  // namespace fulcrum::health::detail
