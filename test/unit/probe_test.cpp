#include <catch2/catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <uv.h>

#include "fulcrum/config.hpp"
#include "fulcrum/endpoint.hpp"
#include "health/probe.hpp"
#include "health/probe_http.hpp"

using fulcrum::Endpoint;
using fulcrum::ExpectMatch;
using fulcrum::HealthCheckConfig;
using fulcrum::HealthCheckType;
using fulcrum::StatusRange;
using fulcrum::health::expectMatches;
using fulcrum::health::Probe;
using fulcrum::health::ProbeResult;
using fulcrum::health::detail::buildHttpRequest;
using fulcrum::health::detail::HttpResponseCheck;
using fulcrum::health::detail::kHttpBodyCap;
using fulcrum::health::detail::Verdict;
using namespace std::chrono_literals;

namespace {

// The servers here write to clients that may have hung up, as Fulcrum's own main does;
// the default SIGPIPE action would end the test binary.
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

// libuv's timers run on a millisecond clock that truncates, so a timeout can fire up to a
// millisecond early as steady_clock measures it.
constexpr std::chrono::milliseconds kTimerSlack{5};

// A private loop per test. The destructor closes whatever a failed test left open and
// requires the loop to end empty, so a leaked handle fails the test (and ASan sees it).
class TestLoop {
 public:
  TestLoop() { uv_loop_init(&loop_); }
  ~TestLoop() {
    uv_walk(
        &loop_,
        [](uv_handle_t* handle, void*) {
          if (uv_is_closing(handle) == 0) {
            uv_close(handle, nullptr);
          }
        },
        nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  uv_loop_t* get() { return &loop_; }

  // Turns the loop until done() holds or limit passes; returns done().
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(&loop_, &guard);
    guard.data = &expired;
    uv_timer_start(
        &guard, [](uv_timer_t* timer) { *static_cast<bool*>(timer->data) = true; },
        static_cast<uint64_t>(limit.count()), 0);

    while (!done() && !expired) {
      uv_run(&loop_, UV_RUN_ONCE);
    }

    uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return done();
  }

  // Closes every handle still open, as the end of a test does.
  void drain() { uv_run(&loop_, UV_RUN_DEFAULT); }

 private:
  uv_loop_t loop_;
};

Endpoint boundAddress(const uv_handle_t* handle, bool tcp) {
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (tcp) {
    uv_tcp_getsockname(reinterpret_cast<const uv_tcp_t*>(handle),
                       reinterpret_cast<sockaddr*>(&ss), &len);
  } else {
    uv_udp_getsockname(reinterpret_cast<const uv_udp_t*>(handle),
                       reinterpret_cast<sockaddr*>(&ss), &len);
  }
  return Endpoint::fromSockaddr(reinterpret_cast<sockaddr*>(&ss));
}

// What a TcpServer does with each connection.
struct TcpBehaviour {
  std::string greeting;      // Sent as soon as the connection is accepted.
  std::string request_end;   // reply goes out once the bytes received contain this
                             // (empty: after the first bytes).
  std::string reply;         // Empty: stay silent.
  bool close_after_reply = false;
  size_t flood_bytes = 0;    // Filler bytes sent after the reply.
};

// A TCP server on the test loop that answers every connection per its behaviour and keeps
// the bytes the last client sent.
class TcpServer {
 public:
  TcpServer(uv_loop_t* loop, TcpBehaviour behaviour, const char* bind = "127.0.0.1:0")
      : loop_(loop), behaviour_(std::move(behaviour)) {
    uv_tcp_init(loop_, &listener_);
    listener_.data = this;
    const auto address = Endpoint::parse(bind);
    REQUIRE(uv_tcp_bind(&listener_, address->sa(), 0) == 0);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 16, onConnection_cb) == 0);
    address_ = boundAddress(reinterpret_cast<uv_handle_t*>(&listener_), true);
  }

  ~TcpServer() { close(); }

  void close() {
    if (closed_) {
      return;
    }
    closed_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    for (auto& conn : conns_) {
      if (!conn->closed) {
        conn->closed = true;
        uv_close(reinterpret_cast<uv_handle_t*>(&conn->tcp), onConnClosed_cb);
      }
    }
  }

  const Endpoint& address() const { return address_; }
  const std::string& received() const { return received_; }
  int accepted() const { return accepted_; }
  TcpBehaviour& behaviour() { return behaviour_; }

 private:
  struct Conn {
    TcpServer* server;
    uv_tcp_t tcp;
    bool closed = false;
    bool replied = false;
    std::string in;
    std::vector<std::unique_ptr<std::string>> out;  // Alive until the loop ends.
    std::vector<std::unique_ptr<uv_write_t>> writes;
  };

  static void onConnection_cb(uv_stream_t* listener, int status) {
    static_cast<TcpServer*>(listener->data)->onConnection(status);
  }

  void onConnection(int status) {
    if (status < 0) {
      return;
    }
    auto conn = std::make_unique<Conn>();
    conn->server = this;
    uv_tcp_init(loop_, &conn->tcp);
    conn->tcp.data = conn.get();
    if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_),
                  reinterpret_cast<uv_stream_t*>(&conn->tcp)) != 0) {
      conn->closed = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&conn->tcp), onConnClosed_cb);
      conns_.push_back(std::move(conn));
      return;
    }
    accepted_++;
    received_.clear();
    Conn* c = conn.get();
    conns_.push_back(std::move(conn));

    uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), onAlloc_cb, onRead_cb);
    if (!behaviour_.greeting.empty()) {
      send(c, behaviour_.greeting);
    }
  }

  static void onAlloc_cb(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    *buf = uv_buf_init(new char[suggested], static_cast<unsigned>(suggested));
  }

  static void onRead_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    std::unique_ptr<char[]> owned(buf->base);
    auto* conn = static_cast<Conn*>(stream->data);
    if (conn->closed) {
      return;
    }
    if (nread < 0) {
      conn->closed = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&conn->tcp), onConnClosed_cb);
      return;
    }
    conn->in.append(buf->base, static_cast<size_t>(nread));
    conn->server->received_ = conn->in;
    conn->server->maybeReply(conn);
  }

  void maybeReply(Conn* conn) {
    if (conn->replied || behaviour_.reply.empty() || conn->in.empty()) {
      return;
    }
    if (!behaviour_.request_end.empty() &&
        conn->in.find(behaviour_.request_end) == std::string::npos) {
      return;
    }
    conn->replied = true;
    send(conn, behaviour_.reply);
    if (behaviour_.flood_bytes > 0) {
      send(conn, std::string(behaviour_.flood_bytes, 'x'));
    }
    if (behaviour_.close_after_reply) {
      // uv_close would drop queued writes; shutdown sends them, then FIN.
      auto* req = new uv_shutdown_t;
      uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&conn->tcp),
                  [](uv_shutdown_t* r, int) { delete r; });
    }
  }

  void send(Conn* conn, const std::string& bytes) {
    conn->out.push_back(std::make_unique<std::string>(bytes));
    conn->writes.push_back(std::make_unique<uv_write_t>());
    uv_buf_t buf = uv_buf_init(conn->out.back()->data(),
                               static_cast<unsigned>(conn->out.back()->size()));
    uv_write(conn->writes.back().get(), reinterpret_cast<uv_stream_t*>(&conn->tcp), &buf, 1,
             [](uv_write_t*, int) {});
  }

  static void onConnClosed_cb(uv_handle_t*) {}

  uv_loop_t* loop_;
  TcpBehaviour behaviour_;
  uv_tcp_t listener_;
  Endpoint address_;
  bool closed_ = false;
  int accepted_ = 0;
  std::string received_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

// A UDP server on the test loop that answers each datagram with reply (or stays silent).
class UdpServer {
 public:
  UdpServer(uv_loop_t* loop, std::string reply, const char* bind = "127.0.0.1:0")
      : reply_(std::move(reply)) {
    uv_udp_init(loop, &udp_);
    udp_.data = this;
    const auto address = Endpoint::parse(bind);
    REQUIRE(uv_udp_bind(&udp_, address->sa(), 0) == 0);
    address_ = boundAddress(reinterpret_cast<uv_handle_t*>(&udp_), false);
    uv_udp_recv_start(&udp_, onAlloc_cb, onRecv_cb);
  }
  ~UdpServer() { close(); }

  void close() {
    if (!closed_) {
      closed_ = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&udp_), nullptr);
    }
  }

  const Endpoint& address() const { return address_; }
  const std::string& received() const { return received_; }
  int datagrams() const { return datagrams_; }

 private:
  static void onAlloc_cb(uv_handle_t* handle, size_t, uv_buf_t* buf) {
    auto* self = static_cast<UdpServer*>(handle->data);
    *buf = uv_buf_init(self->buf_, sizeof(self->buf_));
  }

  static void onRecv_cb(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf,
                        const sockaddr* addr, unsigned) {
    auto* self = static_cast<UdpServer*>(udp->data);
    if (nread < 0 || addr == nullptr) {
      return;
    }
    self->datagrams_++;
    self->received_.assign(buf->base, static_cast<size_t>(nread));
    if (!self->reply_.empty()) {
      uv_buf_t out = uv_buf_init(self->reply_.data(), static_cast<unsigned>(self->reply_.size()));
      uv_udp_try_send(udp, &out, 1, addr);
    }
  }

  uv_udp_t udp_;
  Endpoint address_;
  std::string reply_;
  std::string received_;
  int datagrams_ = 0;
  bool closed_ = false;
  char buf_[2048];
};

// A socket bound to a kernel-chosen port. TCP: bound but not listening, so a connect is
// refused and no other process can take the port meanwhile. UDP: closed again at once, so
// a datagram to the port draws an ICMP port unreachable.
class DeadPort {
 public:
  DeadPort(int type, const char* bind = "127.0.0.1:0") {
    auto address = Endpoint::parse(bind);
    fd_ = ::socket(address->family(), type | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    REQUIRE(::bind(fd_, address->sa(), address->len()) == 0);
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    address_ = Endpoint::fromSockaddr(reinterpret_cast<sockaddr*>(&ss));
    if (type == SOCK_DGRAM) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~DeadPort() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  const Endpoint& address() const { return address_; }

 private:
  int fd_ = -1;
  Endpoint address_;
};

// A listener whose accept queue is full and never drained: the kernel drops further SYNs,
// so a new connect neither succeeds nor fails until the client gives up.
class FullBacklog {
 public:
  FullBacklog() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const auto bind = Endpoint::parse("127.0.0.1:0");
    REQUIRE(::bind(listener_, bind->sa(), bind->len()) == 0);
    REQUIRE(::listen(listener_, 0) == 0);
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&ss), &len);
    address_ = Endpoint::fromSockaddr(reinterpret_cast<sockaddr*>(&ss));

    // A backlog of 0 holds one established connection; three fillers leave no doubt.
    for (int i = 0; i < 3; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      ::connect(fd, address_.sa(), address_.len());
      fillers_.push_back(fd);
    }
    ::usleep(50 * 1000);
  }
  ~FullBacklog() {
    for (const int fd : fillers_) {
      ::close(fd);
    }
    ::close(listener_);
  }
  const Endpoint& address() const { return address_; }

 private:
  int listener_ = -1;
  std::vector<int> fillers_;
  Endpoint address_;
};

HealthCheckConfig checkConfig(HealthCheckType type, const Endpoint& target,
                              std::chrono::milliseconds timeout = 2s) {
  HealthCheckConfig config;
  config.type = type;
  config.target = target;
  config.timeout = timeout;
  config.interval = std::max(timeout, config.interval);
  return config;
}

// Runs one probe to its verdict and closes it; fails the test if no verdict comes.
ProbeResult probeOnce(TestLoop& loop, const HealthCheckConfig& config) {
  Probe probe(loop.get(), config);
  std::optional<ProbeResult> result;
  int calls = 0;
  probe.start([&](const ProbeResult& r) {
    calls++;
    result = r;
  });
  CHECK(probe.running());
  loop.runUntil([&] { return result.has_value(); }, config.timeout + 3s);
  CHECK(calls == 1);
  CHECK_FALSE(probe.running());

  bool closed = false;
  probe.close([&] { closed = true; });
  loop.runUntil([&] { return closed; });
  REQUIRE(closed);
  REQUIRE(result);
  return *result;
}

std::string httpResponse(int status, const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

TcpBehaviour httpServer(std::string response) {
  TcpBehaviour behaviour;
  behaviour.request_end = "\r\n\r\n";
  behaviour.reply = std::move(response);
  behaviour.close_after_reply = true;
  return behaviour;
}

}  // namespace

// --- expectMatches -------------------------------------------------------------------------

// Each match mode compares the whole answer its own way, binary bytes included.
TEST_CASE("expectMatches compares per match mode", "[probe]") {
  CHECK(expectMatches("+PONG\r\n", "PONG", ExpectMatch::Contains));
  CHECK_FALSE(expectMatches("+PONG\r\n", "PONG", ExpectMatch::Prefix));
  CHECK(expectMatches("+PONG\r\n", "+PONG", ExpectMatch::Prefix));
  CHECK_FALSE(expectMatches("+PONG\r\n", "+PONG", ExpectMatch::Exact));
  CHECK(expectMatches("+PONG\r\n", "+PONG\r\n", ExpectMatch::Exact));

  CHECK_FALSE(expectMatches("+PO", "+PONG", ExpectMatch::Prefix));
  CHECK_FALSE(expectMatches("+PO", "+PONG", ExpectMatch::Contains));
  CHECK_FALSE(expectMatches("+PONG+", "+PONG", ExpectMatch::Exact));

  // An empty expectation is met by any answer, and exactly only by an empty one.
  CHECK(expectMatches("anything", "", ExpectMatch::Contains));
  CHECK(expectMatches("anything", "", ExpectMatch::Prefix));
  CHECK_FALSE(expectMatches("anything", "", ExpectMatch::Exact));
  CHECK(expectMatches("", "", ExpectMatch::Exact));

  const std::string binary("\x00\x01\x80\xff", 4);
  CHECK(expectMatches(std::string("\x7f") + binary, binary, ExpectMatch::Contains));
  CHECK(expectMatches(binary, std::string("\x00\x01", 2), ExpectMatch::Prefix));
  CHECK_FALSE(expectMatches(binary, std::string("\x00\x02", 2), ExpectMatch::Prefix));
}

// --- HTTP request and response judging -----------------------------------------------------

// The request names the method and path, a Host the server can route on, and closes.
TEST_CASE("http probe request carries host, agent and close", "[probe]") {
  HealthCheckConfig config;
  config.target = *Endpoint::parse("127.0.0.1:8008");
  config.http_path = "/primary";
  CHECK(buildHttpRequest(config) ==
        "GET /primary HTTP/1.1\r\nHost: 127.0.0.1:8008\r\nUser-Agent: fulcrum-health\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n");

  config.target = *Endpoint::parse("[::1]:80");
  config.http_method = "HEAD";
  config.http_path = "/";
  CHECK(buildHttpRequest(config).rfind("HEAD / HTTP/1.1\r\nHost: [::1]\r\n", 0) == 0);

  config.http_host = "db.internal";
  CHECK(buildHttpRequest(config).find("\r\nHost: db.internal\r\n") != std::string::npos);
}

// A status inside any configured range passes; one outside fails naming the code.
TEST_CASE("http response status is checked against the ranges", "[probe]") {
  HealthCheckConfig config;
  config.http_status = {StatusRange{200, 299}, StatusRange{503, 503}};

  for (const int status : {200, 204, 299, 503}) {
    HttpResponseCheck check(config);
    CHECK(check.feed(httpResponse(status, "").data(), httpResponse(status, "").size()) ==
          Verdict::Pass);
    CHECK(check.detail() == "status_" + std::to_string(status));
  }
  for (const int status : {300, 400, 404, 500, 502}) {
    HttpResponseCheck check(config);
    const std::string response = httpResponse(status, "");
    CHECK(check.feed(response.data(), response.size()) == Verdict::Fail);
    CHECK(check.detail() == "status_" + std::to_string(status));
  }
}

// The body check finds its substring even when it straddles reads or chunks.
TEST_CASE("http response body substring spans reads and chunks", "[probe]") {
  HealthCheckConfig config;
  config.http_body = "\"role\":\"master\"";

  const std::string chunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "7\r\n{\"role\"\r\n"
      "a\r\n:\"master\"}\r\n"
      "0\r\n\r\n";
  HttpResponseCheck by_byte(config);
  Verdict verdict = Verdict::Undecided;
  for (const char c : chunked) {
    verdict = by_byte.feed(&c, 1);
    if (verdict != Verdict::Undecided) {
      break;
    }
  }
  CHECK(verdict == Verdict::Pass);
  CHECK(by_byte.detail() == "status_200");

  HttpResponseCheck missing(config);
  const std::string replica = httpResponse(200, "{\"role\":\"replica\"}");
  CHECK(missing.feed(replica.data(), replica.size()) == Verdict::Fail);
  CHECK(missing.detail() == "body_not_found");

  // A body delimited by the close is judged at the end of the stream.
  HttpResponseCheck until_close(config);
  const std::string open_ended = "HTTP/1.0 200 OK\r\n\r\n{\"role\":\"replica\"}";
  CHECK(until_close.feed(open_ended.data(), open_ended.size()) == Verdict::Undecided);
  CHECK(until_close.finishAtEof() == Verdict::Fail);
  CHECK(until_close.detail() == "body_not_found");
}

// Garbage, truncation, interim answers and endless bodies all end in a bounded verdict.
TEST_CASE("http response judging is robust to hostile peers", "[probe]") {
  HealthCheckConfig config;

  HttpResponseCheck garbage(config);
  const std::string junk = "SSH-2.0-OpenSSH_9.2\r\n";
  CHECK(garbage.feed(junk.data(), junk.size()) == Verdict::Fail);
  CHECK(garbage.detail() == "http_parse_error");

  HttpResponseCheck truncated(config);
  const std::string partial = "HTTP/1.1 200 O";
  CHECK(truncated.feed(partial.data(), partial.size()) == Verdict::Undecided);
  CHECK(truncated.finishAtEof() == Verdict::Fail);
  CHECK(truncated.detail() == "closed_after_14_bytes");

  HttpResponseCheck nothing(config);
  CHECK(nothing.finishAtEof() == Verdict::Fail);
  CHECK(nothing.detail() == "closed_before_response");

  HttpResponseCheck interim(config);
  const std::string continued = "HTTP/1.1 100 Continue\r\n\r\n" + httpResponse(503, "");
  CHECK(interim.feed(continued.data(), continued.size()) == Verdict::Fail);
  CHECK(interim.detail() == "status_503");

  // A body that never contains the substring is judged on its first kHttpBodyCap bytes.
  config.http_body = "ok";
  HttpResponseCheck endless(config);
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n";
  CHECK(endless.feed(head.data(), head.size()) == Verdict::Undecided);
  const std::string filler(4096, 'x');
  size_t fed = 0;
  Verdict verdict = Verdict::Undecided;
  while (verdict == Verdict::Undecided && fed < 100 * kHttpBodyCap) {
    verdict = endless.feed(filler.data(), filler.size());
    fed += filler.size();
  }
  CHECK(verdict == Verdict::Fail);
  CHECK(endless.detail() == "body_not_found");
  CHECK(fed <= kHttpBodyCap + filler.size());

  // Endless headers stop at the parser's header limit or at our response cap.
  HttpResponseCheck headers(config);
  const std::string start = "HTTP/1.1 200 OK\r\n";
  headers.feed(start.data(), start.size());
  const std::string header = "X-Filler: " + std::string(1000, 'y') + "\r\n";
  fed = 0;
  verdict = Verdict::Undecided;
  while (verdict == Verdict::Undecided && fed < 10 * 1024 * 1024) {
    verdict = headers.feed(header.data(), header.size());
    fed += header.size();
  }
  CHECK(verdict == Verdict::Fail);
  CHECK(fed < 1024 * 1024);
}

// --- tcp -------------------------------------------------------------------------------------

// A listening port passes; a bound but closed port is refused at once.
TEST_CASE("tcp probe passes on connect and fails on refusal", "[probe]") {
  TestLoop loop;
  TcpServer server(loop.get(), TcpBehaviour{});
  const ProbeResult up = probeOnce(loop, checkConfig(HealthCheckType::Tcp, server.address()));
  CHECK(up.ok);
  CHECK(up.detail == "connected");

  DeadPort dead(SOCK_STREAM);
  const ProbeResult refused =
      probeOnce(loop, checkConfig(HealthCheckType::Tcp, dead.address()));
  CHECK_FALSE(refused.ok);
  CHECK(refused.detail == "refused");
  CHECK(refused.latency < 1000ms);
}

// A connect that gets no answer at all (SYN dropped) fails at the timeout.
TEST_CASE("tcp probe times out when the handshake never completes", "[probe]") {
  TestLoop loop;
  FullBacklog full;
  const ProbeResult result =
      probeOnce(loop, checkConfig(HealthCheckType::Tcp, full.address(), 300ms));
  CHECK_FALSE(result.ok);
  CHECK(result.detail == "timeout");
  CHECK(result.latency >= 300ms - kTimerSlack);
  CHECK(result.latency < 1000ms);
}

// IPv6 targets work the same as IPv4 ones.
TEST_CASE("tcp probe reaches an IPv6 target", "[probe]") {
  TestLoop loop;
  TcpServer server(loop.get(), TcpBehaviour{}, "[::1]:0");
  REQUIRE(server.address().isV6());
  const ProbeResult result =
      probeOnce(loop, checkConfig(HealthCheckType::Tcp, server.address()));
  CHECK(result.ok);

  DeadPort dead(SOCK_STREAM, "[::1]:0");
  CHECK(probeOnce(loop, checkConfig(HealthCheckType::Tcp, dead.address())).detail ==
        "refused");
}

// --- tcp_expect -----------------------------------------------------------------------------

// The probe sends its bytes and passes on the expected answer.
TEST_CASE("tcp_expect passes when the answer matches", "[probe]") {
  TestLoop loop;
  TcpBehaviour behaviour;
  behaviour.request_end = "\r\n";
  behaviour.reply = "+PONG\r\n";
  TcpServer server(loop.get(), behaviour);

  auto config = checkConfig(HealthCheckType::TcpExpect, server.address());
  config.send = "PING\r\n";
  config.expect = "+PONG";
  config.match = ExpectMatch::Prefix;
  const ProbeResult result = probeOnce(loop, config);
  CHECK(result.ok);
  CHECK(result.detail == "expect_found");
  CHECK(server.received() == "PING\r\n");
}

// A wrong answer fails as soon as it cannot match (prefix) or at the timeout (contains).
TEST_CASE("tcp_expect fails on a wrong answer", "[probe]") {
  TestLoop loop;
  TcpBehaviour behaviour;
  behaviour.reply = "# Replication\r\nrole:slave\r\n";
  TcpServer server(loop.get(), behaviour);

  auto config = checkConfig(HealthCheckType::TcpExpect, server.address(), 400ms);
  config.send = "INFO replication\r\n";
  config.expect = "# Replication\r\nrole:master";
  config.match = ExpectMatch::Prefix;
  const ProbeResult early = probeOnce(loop, config);
  CHECK_FALSE(early.ok);
  CHECK(early.detail == "expect_not_found");
  CHECK(early.latency < 400ms);

  config.expect = "role:master";
  config.match = ExpectMatch::Contains;
  const ProbeResult late = probeOnce(loop, config);
  CHECK_FALSE(late.ok);
  CHECK(late.detail == "expect_not_found");
  CHECK(late.latency >= 400ms - kTimerSlack);
}

// A peer that closes without the expected bytes fails, saying how much it sent.
TEST_CASE("tcp_expect fails when the peer closes first", "[probe]") {
  TestLoop loop;
  TcpBehaviour behaviour;
  behaviour.reply = "-ERR unknown\r\n";
  behaviour.close_after_reply = true;
  TcpServer server(loop.get(), behaviour);

  auto config = checkConfig(HealthCheckType::TcpExpect, server.address());
  config.send = "PING\r\n";
  config.expect = "+PONG";
  const ProbeResult result = probeOnce(loop, config);
  CHECK_FALSE(result.ok);
  CHECK(result.detail == "closed_after_14_bytes");
}

// A server that accepts and stays silent fails at the timeout; a refused port at once.
TEST_CASE("tcp_expect times out on a silent server and fails on refusal", "[probe]") {
  TestLoop loop;
  TcpServer silent(loop.get(), TcpBehaviour{});
  auto config = checkConfig(HealthCheckType::TcpExpect, silent.address(), 300ms);
  config.send = "PING\r\n";
  config.expect = "+PONG";
  const ProbeResult result = probeOnce(loop, config);
  CHECK_FALSE(result.ok);
  CHECK(result.detail == "timeout");
  CHECK(result.latency >= 300ms - kTimerSlack);
  CHECK(silent.accepted() == 1);

  DeadPort dead(SOCK_STREAM);
  config.target = dead.address();
  CHECK(probeOnce(loop, config).detail == "refused");

  FullBacklog full;
  config.target = full.address();
  CHECK(probeOnce(loop, config).detail == "connect_timeout");
}

// A server-first protocol is checked by its banner alone, with nothing sent.
TEST_CASE("tcp_expect with nothing to send reads the banner", "[probe]") {
  TestLoop loop;
  TcpBehaviour behaviour;
  behaviour.greeting = "SSH-2.0-test\r\n";
  TcpServer server(loop.get(), behaviour);

  auto config = checkConfig(HealthCheckType::TcpExpect, server.address());
  config.expect = "SSH-2.0-";
  config.match = ExpectMatch::Prefix;
  CHECK(probeOnce(loop, config).ok);
  CHECK(server.received().empty());
}

// A flood that never matches is cut at the answer cap, long before the timeout.
TEST_CASE("tcp_expect stops reading a flood at the cap", "[probe]") {
  TestLoop loop;
  TcpBehaviour behaviour;
  behaviour.reply = "+";
  behaviour.flood_bytes = 4 * 1024 * 1024;
  TcpServer server(loop.get(), behaviour);

  auto config = checkConfig(HealthCheckType::TcpExpect, server.address(), 5s);
  config.send = "PING\r\n";
  config.expect = "+PONG";
  config.match = ExpectMatch::Contains;
  const ProbeResult result = probeOnce(loop, config);
  CHECK_FALSE(result.ok);
  CHECK(result.detail == "expect_not_found");
  CHECK(result.latency < 2s);
}

// --- http -----------------------------------------------------------------------------------

// A 200 passes; the server saw a well-formed request with our headers.
TEST_CASE("http probe passes on an accepted status", "[probe]") {
  TestLoop loop;
  TcpServer server(loop.get(), httpServer(httpResponse(200, "ok")));

  auto config = checkConfig(HealthCheckType::Http, server.address());
  config.http_path = "/health";
  const ProbeResult result = probeOnce(loop, config);
  CHECK(result.ok);
  CHECK(result.detail == "status_200");
  CHECK(server.received().rfind("GET /health HTTP/1.1\r\n", 0) == 0);
  CHECK(server.received().find("\r\nHost: " + server.address().toString() + "\r\n") !=
        std::string::npos);
  CHECK(server.received().find("\r\nConnection: close\r\n") != std::string::npos);
  CHECK(server.received().find("\r\nUser-Agent: fulcrum-health\r\n") != std::string::npos);
}

// 503 fails under the default ranges and passes when the ranges accept it.
TEST_CASE("http probe follows the configured status ranges", "[probe]") {
  TestLoop loop;
  TcpServer server(loop.get(), httpServer(httpResponse(503, "standby")));

  auto config = checkConfig(HealthCheckType::Http, server.address());
  const ProbeResult refused = probeOnce(loop, config);
  CHECK_FALSE(refused.ok);
  CHECK(refused.detail == "status_503");

  config.http_status = {StatusRange{200, 299}, StatusRange{503, 503}};
  CHECK(probeOnce(loop, config).ok);

  config.http_body = "primary";
  const ProbeResult body = probeOnce(loop, config);
  CHECK_FALSE(body.ok);
  CHECK(body.detail == "body_not_found");

  config.http_body = "standby";
  CHECK(probeOnce(loop, config).ok);
}

// Garbage, an endless body and silence all fail without hanging or growing.
TEST_CASE("http probe survives garbage and floods", "[probe]") {
  TestLoop loop;
  TcpBehaviour garbage;
  garbage.reply = std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  garbage.close_after_reply = true;
  TcpServer junk(loop.get(), garbage);
  auto config = checkConfig(HealthCheckType::Http, junk.address());
  CHECK(probeOnce(loop, config).detail == "http_parse_error");

  TcpBehaviour flood = httpServer("HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n");
  flood.flood_bytes = 4 * 1024 * 1024;
  TcpServer big(loop.get(), flood);
  config.target = big.address();
  config.http_body = "healthy";
  const ProbeResult result = probeOnce(loop, config);
  CHECK_FALSE(result.ok);
  CHECK(result.detail == "body_not_found");
  CHECK(result.latency < 1500ms);

  TcpServer silent(loop.get(), TcpBehaviour{});
  config = checkConfig(HealthCheckType::Http, silent.address(), 300ms);
  CHECK(probeOnce(loop, config).detail == "timeout");

  DeadPort dead(SOCK_STREAM);
  config.target = dead.address();
  CHECK(probeOnce(loop, config).detail == "refused");
}

// The HTTP probe reaches an IPv6 target with a bracketed Host.
TEST_CASE("http probe reaches an IPv6 target", "[probe]") {
  TestLoop loop;
  TcpServer server(loop.get(), httpServer(httpResponse(204, "")), "[::1]:0");
  const ProbeResult result =
      probeOnce(loop, checkConfig(HealthCheckType::Http, server.address()));
  CHECK(result.ok);
  CHECK(result.detail == "status_204");
  CHECK(server.received().find("\r\nHost: [::1]:") != std::string::npos);
}

// --- udp_expect -----------------------------------------------------------------------------

// One datagram out; the reply decides.
TEST_CASE("udp_expect passes on a matching reply and fails on another", "[probe]") {
  TestLoop loop;
  UdpServer server(loop.get(), std::string("\x12\x34\x81\x80", 4));

  auto config = checkConfig(HealthCheckType::UdpExpect, server.address());
  config.send = std::string("\x12\x34\x01\x00", 4);
  config.expect = std::string("\x12\x34\x81", 3);
  config.match = ExpectMatch::Prefix;
  const ProbeResult result = probeOnce(loop, config);
  CHECK(result.ok);
  CHECK(result.detail == "expect_found");
  CHECK(server.received() == config.send);

  config.expect = std::string("\x12\x34\x85", 3);
  const ProbeResult wrong = probeOnce(loop, config);
  CHECK_FALSE(wrong.ok);
  CHECK(wrong.detail == "expect_not_found");
  CHECK(server.datagrams() == 2);
}

// A closed UDP port answers with ICMP port unreachable, which fails at once.
TEST_CASE("udp_expect fails at once on ICMP port unreachable", "[probe]") {
  TestLoop loop;
  DeadPort dead(SOCK_DGRAM);
  auto config = checkConfig(HealthCheckType::UdpExpect, dead.address(), 2s);
  config.send = "ping";
  config.expect = "pong";
  const ProbeResult result = probeOnce(loop, config);
  CHECK_FALSE(result.ok);
  CHECK(result.detail == "icmp_unreachable");
  CHECK(result.latency < 1s);

  DeadPort dead6(SOCK_DGRAM, "[::1]:0");
  config.target = dead6.address();
  CHECK(probeOnce(loop, config).detail == "icmp_unreachable");
}

// A server that swallows the datagram fails at the timeout; IPv6 works.
TEST_CASE("udp_expect times out on silence and reaches IPv6", "[probe]") {
  TestLoop loop;
  UdpServer silent(loop.get(), "");
  auto config = checkConfig(HealthCheckType::UdpExpect, silent.address(), 300ms);
  config.send = "ping";
  config.expect = "pong";
  const ProbeResult result = probeOnce(loop, config);
  CHECK_FALSE(result.ok);
  CHECK(result.detail == "timeout");
  CHECK(result.latency >= 300ms - kTimerSlack);
  CHECK(silent.datagrams() == 1);

  UdpServer server6(loop.get(), "pong", "[::1]:0");
  config.target = server6.address();
  CHECK(probeOnce(loop, config).ok);
}

// --- lifecycle ------------------------------------------------------------------------------

// A probe reports once per start, can start again from its own callback, and follows the
// backend's changes between starts.
TEST_CASE("probe restarts after each result", "[probe]") {
  TestLoop loop;
  TcpBehaviour behaviour;
  behaviour.reply = "+PONG\r\n";
  TcpServer server(loop.get(), behaviour);

  auto config = checkConfig(HealthCheckType::TcpExpect, server.address());
  config.send = "PING\r\n";
  config.expect = "+PONG";
  config.match = ExpectMatch::Prefix;
  Probe probe(loop.get(), config);

  std::vector<ProbeResult> results;
  std::function<void(const ProbeResult&)> again = [&](const ProbeResult& result) {
    results.push_back(result);
    if (results.size() < 5) {
      CHECK_FALSE(probe.running());
      probe.start(again);
      CHECK(probe.running());
    }
  };
  probe.start(again);
  REQUIRE(loop.runUntil([&] { return results.size() == 5; }));
  for (const auto& result : results) {
    CHECK(result.ok);
  }
  CHECK(server.accepted() == 5);

  server.behaviour().reply = "-LOADING\r\n";
  std::optional<ProbeResult> after;
  probe.start([&](const ProbeResult& result) { after = result; });
  REQUIRE(loop.runUntil([&] { return after.has_value(); }));
  CHECK_FALSE(after->ok);

  bool closed = false;
  probe.close([&] { closed = true; });
  CHECK_FALSE(closed);
  REQUIRE(loop.runUntil([&] { return closed; }));
}

// close() cancels a running probe of every kind: no result, every handle released.
TEST_CASE("probe close cancels without a result", "[probe]") {
  TestLoop loop;
  TcpServer silent(loop.get(), TcpBehaviour{});
  UdpServer quiet(loop.get(), "");
  FullBacklog full;

  std::vector<HealthCheckConfig> configs = {
      checkConfig(HealthCheckType::Tcp, full.address()),
      checkConfig(HealthCheckType::TcpExpect, silent.address()),
      checkConfig(HealthCheckType::Http, silent.address()),
      checkConfig(HealthCheckType::UdpExpect, quiet.address()),
  };
  configs[1].send = "PING\r\n";
  configs[1].expect = "+PONG";
  configs[3].send = "ping";

  for (const auto& config : configs) {
    INFO("probe type " << fulcrum::toString(config.type));
    auto probe = std::make_unique<Probe>(loop.get(), config);
    int results = 0;
    std::string detail;
    probe->start([&](const ProbeResult& result) {
      results++;
      detail = result.detail;
    });

    // Let the connect or the send get under way before cancelling.
    loop.runUntil([] { return false; }, 50ms);
    INFO("early result " << detail);
    REQUIRE(probe->running());

    int closed = 0;
    probe->close([&] {
      closed++;
      probe.reset();  // Destroying the probe from its close callback is allowed.
    });
    CHECK_FALSE(probe->running());
    REQUIRE(loop.runUntil([&] { return closed == 1; }));
    loop.runUntil([] { return false; }, 50ms);
    CHECK(results == 0);
    CHECK(closed == 1);
  }
}

// A probe's first failure found inside start() is still reported on a later loop turn.
TEST_CASE("probe never reports from inside start", "[probe]") {
  TestLoop loop;
  HealthCheckConfig config;  // No target: fails at once.
  config.type = HealthCheckType::Tcp;
  Probe probe(loop.get(), config);

  std::optional<ProbeResult> result;
  probe.start([&](const ProbeResult& r) { result = r; });
  CHECK_FALSE(result.has_value());
  REQUIRE(loop.runUntil([&] { return result.has_value(); }));
  CHECK_FALSE(result->ok);
  CHECK(result->detail == "connect_error_einval");

  bool closed = false;
  probe.close([&] { closed = true; });
  REQUIRE(loop.runUntil([&] { return closed; }));
}
