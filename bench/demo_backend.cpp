// fulcrum-demo-backend: a small named server used as a backend in demos and integration tests.
//
//   fulcrum-demo-backend --name NAME [--tcp HOST:PORT]... [--udp HOST:PORT]...
//
// TCP: a connection whose first bytes look like an HTTP request line ("GET ", "POST ", ...)
// is served as HTTP/1.x: every request is answered with 200 and the body "NAME\n", honouring
// keep-alive, "Connection: close" and pipelining. Any other connection is in line mode: each
// line received ("\n"-terminated, a trailing "\r" dropped) is answered with "NAME <line>\n".
// When the client half-closes, a final unterminated line is answered too, then the backend
// closes its side.
//
// UDP: every datagram is answered with one datagram "NAME\n" sent back to its sender.
//
// Port 0 asks the kernel for a port; the ready line printed on stdout gives the real addresses:
//   demo backend NAME listening tcp=127.0.0.1:40213,[::1]:40214 udp=127.0.0.1:40215
// ("-" when a protocol has no address). SIGTERM and SIGINT close everything and exit 0.
// SIGUSR1 closes the TCP listeners but keeps open connections (new connects are refused, as
// when a server stops accepting); SIGUSR2 listens again on the same addresses. The failover
// bench uses the pair for its "refuse" fault.
//
// Peers are untrusted: input never crashes the server, and each connection buffers at most
// kMaxBufferedBytes of unprocessed input and kMaxQueuedWriteBytes of unsent output (reading
// pauses while the client does not read its replies).

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <uv.h>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "demo_http.hpp"

namespace {

using fulcrum::demo::findHeadEnd;
using fulcrum::demo::HttpRequest;
using fulcrum::demo::parseHttpHead;

// A longer line or HTTP head than this closes the connection (HTTP gets a 431 first).
constexpr size_t kMaxBufferedBytes = 64 * 1024;
// Reading stops while more than this is waiting to be sent, and resumes below half of it.
constexpr size_t kMaxQueuedWriteBytes = 1024 * 1024;
constexpr int kBacklog = 511;

constexpr std::string_view kBadRequest =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr std::string_view kHeadTooLarge =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
    "Connection: close\r\n\r\n";

// Request methods whose first bytes switch a connection to HTTP mode.
constexpr std::array<std::string_view, 9> kHttpMethods = {
    "GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "};

// One read buffer for the whole (single-threaded) process: every read callback consumes its
// bytes before the loop can allocate the next buffer, so sharing is safe and nothing is
// allocated per read.
char shared_read_buffer[64 * 1024];

void alloc_cb(uv_handle_t* /*handle*/, size_t /*suggested*/, uv_buf_t* buf) {
  *buf = uv_buf_init(shared_read_buffer, sizeof(shared_read_buffer));
}

// Parses "1.2.3.4:80" or "[::1]:80" (numeric only). Returns nullopt with a reason on failure.
std::optional<sockaddr_storage> parseAddress(const std::string& text, std::string* error) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    *error = "missing port: expected HOST:PORT such as 127.0.0.1:7001 or [::1]:7001";
    return std::nullopt;
  }

  const std::string port_text = text.substr(colon + 1);
  if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port_text) > 65535) {
    *error = fmt::format("bad port '{}': expected a number 0..65535", port_text);
    return std::nullopt;
  }
  const int port = static_cast<int>(std::stoul(port_text));

  std::string host = text.substr(0, colon);
  sockaddr_storage ss{};
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0) {
      *error = fmt::format("bad IPv6 address '{}'", host);
      return std::nullopt;
    }
    return ss;
  }

  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&ss)) != 0) {
    *error = fmt::format("bad IPv4 address '{}' (IPv6 goes in brackets: [::1]:7001)", host);
    return std::nullopt;
  }
  return ss;
}

std::string formatAddress(const sockaddr_storage& ss) {
  char ip[64] = {0};
  if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    uv_ip6_name(sin6, ip, sizeof(ip));
    return fmt::format("[{}]:{}", ip, ntohs(sin6->sin6_port));
  }
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
  uv_ip4_name(sin, ip, sizeof(ip));
  return fmt::format("{}:{}", ip, ntohs(sin->sin_port));
}

class Server;

enum class Mode { Detect, Line, Http };

// One accepted TCP connection. Owned by the server's live set; freed in the close callback.
class Conn {
 public:
  explicit Conn(Server& server) : server_(server) { tcp_.data = this; }

  uv_tcp_t* tcp() { return &tcp_; }
  void start();
  // Closes at once, dropping unsent output (reset by the peer, or the server is stopping).
  void close();

 private:
  struct WriteReq {
    uv_write_t req;
    std::string data;
  };

  static void read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void write_cb(uv_write_t* req, int status);
  static void shutdown_cb(uv_shutdown_t* req, int status);
  static void close_cb(uv_handle_t* handle);

  void onRead(ssize_t nread, const uv_buf_t* buf);
  void onEof();
  void onWritten(int status);
  void process();
  void detectMode();
  size_t processLines(std::string& out);
  size_t processHttp(std::string& out);
  void send(std::string data);
  // Sends what is queued, then FIN, then closes; no more input is processed.
  void finish();

  Server& server_;
  uv_tcp_t tcp_{};
  uv_shutdown_t shutdown_req_{};
  Mode mode_ = Mode::Detect;
  std::string in_;                // Bytes received but not yet answered.
  uint64_t body_left_bytes_ = 0;  // Rest of an HTTP request body still to skip.
  bool reading_ = false;
  bool finishing_ = false;
  bool closed_ = false;
};

class Server {
 public:
  Server(uv_loop_t* loop, std::string name) : loop_(loop), name_(std::move(name)) {
    http_keep_ = httpResponse("keep-alive", true);
    http_close_ = httpResponse("close", true);
    http_keep_head_ = httpResponse("keep-alive", false);
    http_close_head_ = httpResponse("close", false);
    udp_reply_ = name_ + "\n";
  }

  // Binds and listens; returns the bound address or throws with a message for stderr.
  std::string listenTcp(const sockaddr_storage& addr);
  std::string bindUdp(const sockaddr_storage& addr);
  void watchSignals();
  // Closes every handle so that uv_run returns.
  void stop();

  const std::string& name() const { return name_; }
  const std::string& httpReply(bool keep_alive, bool head_only) const {
    if (head_only) {
      return keep_alive ? http_keep_head_ : http_close_head_;
    }
    return keep_alive ? http_keep_ : http_close_;
  }
  void forget(Conn* conn) { conns_.erase(conn); }

 private:
  static void connection_cb(uv_stream_t* listener, int status);
  static void udp_recv_cb(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                          unsigned flags);
  static void signal_cb(uv_signal_t* handle, int signum);

  void closeListeners();
  void reopenListeners();
  void onConnection(uv_stream_t* listener, int status);

  std::string httpResponse(std::string_view connection, bool with_body) const {
    const std::string body = name_ + "\n";
    return fmt::format(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
        "Connection: {}\r\n\r\n{}",
        body.size(), connection, with_body ? body : "");
  }

  uv_loop_t* loop_;
  std::string name_;
  std::string http_keep_;
  std::string http_close_;
  std::string http_keep_head_;
  std::string http_close_head_;
  std::string udp_reply_;
  std::vector<std::unique_ptr<uv_tcp_t>> tcp_listeners_;
  std::vector<std::unique_ptr<uv_udp_t>> udp_sockets_;
  std::array<uv_signal_t, 4> signals_{};
  std::vector<sockaddr_storage> tcp_bound_;  // Where each TCP listener is bound.
  // Listeners closed by SIGUSR1; kept until exit because uv_close finishes asynchronously.
  std::vector<std::unique_ptr<uv_tcp_t>> closed_listeners_;
  std::unordered_set<Conn*> conns_;
  bool stopping_ = false;
};

void Conn::start() {
  reading_ = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), alloc_cb, read_cb) == 0;
  if (!reading_) {
    close();
  }
}

void Conn::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), close_cb);
}

void Conn::read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  static_cast<Conn*>(stream->data)->onRead(nread, buf);
}

void Conn::write_cb(uv_write_t* req, int status) {
  auto* wr = static_cast<WriteReq*>(req->data);
  auto* conn = static_cast<Conn*>(req->handle->data);
  delete wr;
  conn->onWritten(status);
}

void Conn::shutdown_cb(uv_shutdown_t* req, int /*status*/) {
  static_cast<Conn*>(req->handle->data)->close();
}

void Conn::close_cb(uv_handle_t* handle) {
  auto* conn = static_cast<Conn*>(handle->data);
  conn->server_.forget(conn);
  delete conn;
}

void Conn::onRead(ssize_t nread, const uv_buf_t* buf) {
  if (nread == UV_EOF) {
    onEof();
    return;
  }
  if (nread < 0) {
    close();
    return;
  }
  // After the reply that ends a connection, late input is read only to be dropped.
  if (finishing_ || nread == 0) {
    return;
  }

  in_.append(buf->base, static_cast<size_t>(nread));
  process();
}

void Conn::onEof() {
  reading_ = false;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  if (closed_ || finishing_) {
    return;
  }

  // A last line without "\n" still gets its answer, so `printf x | nc` style clients work.
  if (mode_ != Mode::Http && !in_.empty()) {
    std::string_view line(in_);
    if (line.back() == '\r') {
      line.remove_suffix(1);
    }
    send(fmt::format("{} {}\n", server_.name(), line));
    in_.clear();
  }
  finish();
}

void Conn::onWritten(int status) {
  if (closed_) {
    return;
  }
  if (status < 0) {
    close();
    return;
  }

  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  const bool drained = uv_stream_get_write_queue_size(stream) < kMaxQueuedWriteBytes / 2;
  if (!reading_ && !finishing_ && drained) {
    reading_ = uv_read_start(stream, alloc_cb, read_cb) == 0;
  }
}

void Conn::process() {
  if (mode_ == Mode::Detect) {
    detectMode();
  }

  std::string out;
  size_t consumed = 0;
  if (mode_ == Mode::Line) {
    consumed = processLines(out);
  } else if (mode_ == Mode::Http) {
    consumed = processHttp(out);
  }
  in_.erase(0, consumed);

  if (!out.empty()) {
    send(std::move(out));
  }
  // The reply that ends the connection must be queued before the FIN, never after.
  if (finishing_) {
    finish();
    return;
  }
  // An unfinished head or line already this long is not something a test or demo client
  // sends: refuse it rather than buffer without end.
  if (in_.size() > kMaxBufferedBytes) {
    if (mode_ == Mode::Http) {
      send(std::string(kHeadTooLarge));
    }
    finish();
  }
}

void Conn::detectMode() {
  for (std::string_view method : kHttpMethods) {
    if (std::string_view(in_).substr(0, method.size()) == method) {
      mode_ = Mode::Http;
      return;
    }
    // Still a prefix of a method ("GE"): wait for more bytes before deciding.
    if (in_.size() < method.size() && method.substr(0, in_.size()) == in_) {
      return;
    }
  }
  mode_ = Mode::Line;
}

size_t Conn::processLines(std::string& out) {
  size_t pos = 0;
  while (true) {
    const size_t eol = in_.find('\n', pos);
    if (eol == std::string::npos) {
      return pos;
    }
    // The same limit as for an unfinished line, whether or not it arrived in one burst.
    if (eol - pos > kMaxBufferedBytes) {
      finishing_ = true;
      return pos;
    }
    std::string_view line(in_.data() + pos, eol - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    out.append(server_.name()).append(" ").append(line).append("\n");
    pos = eol + 1;
  }
}

size_t Conn::processHttp(std::string& out) {
  size_t pos = 0;
  while (pos < in_.size() && !finishing_) {
    if (body_left_bytes_ > 0) {
      const size_t skip = std::min<uint64_t>(body_left_bytes_, in_.size() - pos);
      body_left_bytes_ -= skip;
      pos += skip;
      continue;
    }

    // Empty lines before a request line are ignored, as RFC 9112 section 2.2 asks of servers.
    if (in_[pos] == '\r' || in_[pos] == '\n') {
      ++pos;
      continue;
    }
    const auto end = findHeadEnd(in_, pos);
    if (!end) {
      break;
    }
    if (end->first - pos > kMaxBufferedBytes) {
      out.append(kHeadTooLarge);
      finishing_ = true;
      break;
    }
    const HttpRequest req = parseHttpHead(std::string_view(in_).substr(pos, end->first - pos));
    pos = end->second;
    if (!req.valid) {
      out.append(kBadRequest);
      finishing_ = true;
      break;
    }

    out.append(server_.httpReply(req.keep_alive, req.head_only));
    body_left_bytes_ = req.body_bytes;
    if (!req.keep_alive) {
      finishing_ = true;
    }
  }

  return pos;
}

void Conn::send(std::string data) {
  if (closed_) {
    return;
  }

  auto* wr = new WriteReq{{}, std::move(data)};
  wr->req.data = wr;
  uv_buf_t buf = uv_buf_init(wr->data.data(), static_cast<unsigned>(wr->data.size()));
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (uv_write(&wr->req, stream, &buf, 1, write_cb) != 0) {
    delete wr;
    close();
    return;
  }

  // Backpressure: a client that sends but never reads must not make us queue without end.
  if (reading_ && uv_stream_get_write_queue_size(stream) > kMaxQueuedWriteBytes) {
    uv_read_stop(stream);
    reading_ = false;
  }
}

void Conn::finish() {
  finishing_ = true;
  if (closed_ || shutdown_req_.handle != nullptr) {
    return;
  }
  // uv_shutdown waits for queued writes, so the last reply is sent before our FIN.
  if (uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), shutdown_cb) != 0) {
    close();
  }
}

std::string Server::listenTcp(const sockaddr_storage& addr) {
  auto tcp = std::make_unique<uv_tcp_t>();
  uv_tcp_init(loop_, tcp.get());
  tcp->data = this;
  tcp_listeners_.push_back(std::move(tcp));
  uv_tcp_t* handle = tcp_listeners_.back().get();

  int rc = uv_tcp_bind(handle, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(handle), kBacklog, connection_cb);
  }
  if (rc != 0) {
    throw std::runtime_error(
        fmt::format("cannot listen on tcp {}: {}", formatAddress(addr), uv_strerror(rc)));
  }

  sockaddr_storage bound{};
  int len = sizeof(bound);
  uv_tcp_getsockname(handle, reinterpret_cast<sockaddr*>(&bound), &len);
  tcp_bound_.push_back(bound);
  return formatAddress(bound);
}

void Server::closeListeners() {
  if (stopping_ || tcp_listeners_.empty()) {
    return;
  }
  for (auto& tcp : tcp_listeners_) {
    uv_close(reinterpret_cast<uv_handle_t*>(tcp.get()), nullptr);
    closed_listeners_.push_back(std::move(tcp));
  }
  tcp_listeners_.clear();
  fmt::print("demo backend {} listeners closed\n", name_);
  std::fflush(stdout);
}

void Server::reopenListeners() {
  if (stopping_ || !tcp_listeners_.empty()) {
    return;
  }
  const std::vector<sockaddr_storage> addresses = std::move(tcp_bound_);
  tcp_bound_.clear();
  for (const sockaddr_storage& addr : addresses) {
    try {
      listenTcp(addr);
    } catch (const std::exception& e) {
      // The port was taken meanwhile: say so and keep serving what is still open.
      fmt::print(stderr, "demo backend {}: {}\n", name_, e.what());
    }
  }
  fmt::print("demo backend {} listeners open\n", name_);
  std::fflush(stdout);
}

std::string Server::bindUdp(const sockaddr_storage& addr) {
  auto udp = std::make_unique<uv_udp_t>();
  uv_udp_init(loop_, udp.get());
  udp->data = this;
  udp_sockets_.push_back(std::move(udp));
  uv_udp_t* handle = udp_sockets_.back().get();

  int rc = uv_udp_bind(handle, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_udp_recv_start(handle, alloc_cb, udp_recv_cb);
  }
  if (rc != 0) {
    throw std::runtime_error(
        fmt::format("cannot bind udp {}: {}", formatAddress(addr), uv_strerror(rc)));
  }

  sockaddr_storage bound{};
  int len = sizeof(bound);
  uv_udp_getsockname(handle, reinterpret_cast<sockaddr*>(&bound), &len);
  return formatAddress(bound);
}

void Server::watchSignals() {
  const int signums[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < signals_.size(); ++i) {
    uv_signal_init(loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], signal_cb, signums[i]);
  }
}

void Server::stop() {
  if (stopping_) {
    return;
  }
  stopping_ = true;

  for (auto& tcp : tcp_listeners_) {
    uv_close(reinterpret_cast<uv_handle_t*>(tcp.get()), nullptr);
  }
  for (auto& udp : udp_sockets_) {
    uv_close(reinterpret_cast<uv_handle_t*>(udp.get()), nullptr);
  }
  for (auto& sig : signals_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&sig), nullptr);
  }
  // Safe to iterate: a connection leaves conns_ only in its close callback, which runs on a
  // later loop iteration.
  for (Conn* conn : conns_) {
    conn->close();
  }
}

void Server::connection_cb(uv_stream_t* listener, int status) {
  static_cast<Server*>(listener->data)->onConnection(listener, status);
}

void Server::onConnection(uv_stream_t* listener, int status) {
  if (status < 0 || stopping_) {
    return;
  }

  auto* conn = new Conn(*this);
  uv_tcp_init(loop_, conn->tcp());
  conns_.insert(conn);
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(conn->tcp())) != 0) {
    conn->close();
    return;
  }
  uv_tcp_nodelay(conn->tcp(), 1);
  conn->start();
}

void Server::udp_recv_cb(uv_udp_t* udp, ssize_t nread, const uv_buf_t* /*buf*/,
                         const sockaddr* addr, unsigned /*flags*/) {
  // nread == 0 with no address only means "nothing more to read right now".
  if (nread < 0 || addr == nullptr) {
    return;
  }

  auto* server = static_cast<Server*>(udp->data);
  uv_buf_t reply =
      uv_buf_init(server->udp_reply_.data(), static_cast<unsigned>(server->udp_reply_.size()));
  // A full send buffer drops the reply, as any UDP server under overload would.
  uv_udp_try_send(udp, &reply, 1, addr);
}

void Server::signal_cb(uv_signal_t* handle, int signum) {
  auto* server = static_cast<Server*>(handle->data);
  if (signum == SIGUSR1) {
    server->closeListeners();
    return;
  }
  if (signum == SIGUSR2) {
    server->reopenListeners();
    return;
  }
  server->stop();
}

std::string joinOrDash(const std::vector<std::string>& items) {
  if (items.empty()) {
    return "-";
  }
  std::string out;
  for (const auto& item : items) {
    out += (out.empty() ? "" : ",") + item;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Named TCP (line or HTTP) and UDP echo backend for Fulcrum demos and tests."};
  std::string name;
  std::vector<std::string> tcp_addrs;
  std::vector<std::string> udp_addrs;
  app.add_option("--name", name, "Name put in every reply")->required();
  app.add_option("--tcp", tcp_addrs, "TCP address HOST:PORT or [V6]:PORT (repeatable)")
      ->allow_extra_args(false);
  app.add_option("--udp", udp_addrs, "UDP address HOST:PORT or [V6]:PORT (repeatable)")
      ->allow_extra_args(false);
  CLI11_PARSE(app, argc, argv);

  if (tcp_addrs.empty() && udp_addrs.empty()) {
    fmt::print(stderr, "error: give at least one --tcp or --udp address\n");
    return 1;
  }
  if (name.empty() || name.find_first_of(" \r\n") != std::string::npos) {
    fmt::print(stderr, "error: --name must be non-empty and contain no spaces or newlines\n");
    return 1;
  }

  // A peer that closes while we write must cost an EPIPE, not the process.
  std::signal(SIGPIPE, SIG_IGN);

  uv_loop_t* loop = uv_default_loop();
  Server server(loop, name);
  std::vector<std::string> tcp_bound;
  std::vector<std::string> udp_bound;
  try {
    for (const auto& text : tcp_addrs) {
      std::string error;
      const auto addr = parseAddress(text, &error);
      if (!addr) {
        throw std::runtime_error(fmt::format("--tcp {}: {}", text, error));
      }
      tcp_bound.push_back(server.listenTcp(*addr));
    }
    for (const auto& text : udp_addrs) {
      std::string error;
      const auto addr = parseAddress(text, &error);
      if (!addr) {
        throw std::runtime_error(fmt::format("--udp {}: {}", text, error));
      }
      udp_bound.push_back(server.bindUdp(*addr));
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  server.watchSignals();

  fmt::print("demo backend {} listening tcp={} udp={}\n", name, joinOrDash(tcp_bound),
             joinOrDash(udp_bound));
  std::fflush(stdout);

  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}
