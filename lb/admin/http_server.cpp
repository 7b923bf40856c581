#include "admin/http_server.hpp"

#include <http_parser.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

#include <fmt/format.h>

#include "fulcrum/log.hpp"

namespace fulcrum::admin {

namespace {

// Bytes a lingering close reads and throws away before giving up on the client.
constexpr size_t kMaxDiscardBytes = size_t{1} << 20;
// One read buffer serves every connection: reads are handled to completion on one thread.
constexpr size_t kReadBufferBytes = 65536;

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

std::string serialize(const Response& response, bool head) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", response.status,
                                reasonPhrase(response.status));
  out += fmt::format("Content-Type: {}\r\nContent-Length: {}\r\n", response.content_type,
                     response.body.size());
  out += "Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n";
  for (const auto& [name, value] : response.headers) {
    out += fmt::format("{}: {}\r\n", name, value);
  }
  out += "\r\n";
  if (!head) {
    out += response.body;
  }
  return out;
}

}  // namespace

// One accepted connection. Phases: Reading (feeding http-parser) -> Responding (the answer
// is being written; input is discarded) -> Lingering (write side shut; input discarded until
// EOF or the linger timer) -> Closing (handles closing; deleted when both are closed).
struct HttpServer::Connection {
  enum class Phase { Reading, Responding, Lingering, Closing };

  HttpServer& server;
  Transport transport;
  uv_tcp_t tcp{};
  uv_pipe_t pipe{};
  uv_stream_t* stream = nullptr;
  uv_timer_t timer{};
  uv_write_t write_req{};
  uv_write_t continue_req{};
  uv_shutdown_t shutdown_req{};
  http_parser parser{};
  Phase phase = Phase::Reading;
  int handles_open = 0;

  Request request;
  std::string out;
  std::string field;
  bool in_value = false;
  size_t header_bytes = 0;
  bool headers_done = false;
  bool complete = false;
  int error_status = 0;  // Set by a parser callback that refused the request.
  std::string error_message;
  size_t discarded = 0;
  size_t received = 0;

  Connection(HttpServer& owner, Transport how) : server(owner), transport(how) {}

  static const http_parser_settings& settings();
  static void onAlloc_cb(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void onRead_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void onTimer_cb(uv_timer_t* handle);
  static void onWrite_cb(uv_write_t* req, int status);
  static void onContinueWritten_cb(uv_write_t* req, int status);
  static void onShutdown_cb(uv_shutdown_t* req, int status);
  static void onClosed_cb(uv_handle_t* handle);

  // http-parser callbacks; a nonzero return stops the parser with error_status set.
  static int onUrl_cb(http_parser* p, const char* at, size_t len);
  static int onHeaderField_cb(http_parser* p, const char* at, size_t len);
  static int onHeaderValue_cb(http_parser* p, const char* at, size_t len);
  static int onHeadersComplete_cb(http_parser* p);
  static int onBody_cb(http_parser* p, const char* at, size_t len);
  static int onMessageComplete_cb(http_parser* p);

  bool start(uv_stream_t* listener);
  void onRead(ssize_t nread, const uv_buf_t* buf);
  int refuse(int status, std::string message);
  bool addHeaderBytes(size_t len);
  void finishHeader();
  void dispatch();
  void respond(const Response& response);
  void linger();
  void closeNow();
};

const http_parser_settings& HttpServer::Connection::settings() {
  static const http_parser_settings s = [] {
    http_parser_settings init{};
    http_parser_settings_init(&init);
    init.on_url = onUrl_cb;
    init.on_header_field = onHeaderField_cb;
    init.on_header_value = onHeaderValue_cb;
    init.on_headers_complete = onHeadersComplete_cb;
    init.on_body = onBody_cb;
    init.on_message_complete = onMessageComplete_cb;
    return init;
  }();
  return s;
}

bool HttpServer::Connection::start(uv_stream_t* listener) {
  if (transport == Transport::Tcp) {
    uv_tcp_init(server.loop_, &tcp);
    stream = reinterpret_cast<uv_stream_t*>(&tcp);
  } else {
    uv_pipe_init(server.loop_, &pipe, 0);
    stream = reinterpret_cast<uv_stream_t*>(&pipe);
  }
  stream->data = this;
  uv_timer_init(server.loop_, &timer);
  timer.data = this;
  handles_open = 2;

  if (uv_accept(listener, stream) != 0) {
    closeNow();
    return false;
  }

  http_parser_init(&parser, HTTP_REQUEST);
  parser.data = this;
  request.transport = transport;
  uv_timer_start(&timer, onTimer_cb, static_cast<uint64_t>(server.limits_.request_timeout.count()),
                 0);
  uv_read_start(stream, onAlloc_cb, onRead_cb);
  return true;
}

void HttpServer::Connection::onAlloc_cb(uv_handle_t* /*handle*/, size_t /*suggested*/,
                                        uv_buf_t* buf) {
  static char buffer[kReadBufferBytes];
  *buf = uv_buf_init(buffer, sizeof(buffer));
}

void HttpServer::Connection::onRead_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  static_cast<Connection*>(stream->data)->onRead(nread, buf);
}

void HttpServer::Connection::onRead(ssize_t nread, const uv_buf_t* buf) {
  if (nread == 0 || phase == Phase::Closing) {
    return;
  }

  if (phase != Phase::Reading) {
    // Responding or lingering: what the client still sends is read and dropped, so its
    // unread bytes cannot turn our close into a reset.
    if (nread < 0) {
      closeNow();
      return;
    }
    discarded += static_cast<size_t>(nread);
    if (discarded > kMaxDiscardBytes && phase == Phase::Lingering) {
      closeNow();
    }
    return;
  }

  if (nread < 0) {
    if (nread != UV_EOF || received == 0) {
      // A reset, or a client that left before sending anything: nobody to answer.
      closeNow();
      return;
    }
    // The client half-closed mid-request and may still read our answer.
    http_parser_execute(&parser, &settings(), nullptr, 0);
    if (!complete) {
      respond(errorResponse(400, "the request ended before it was complete"));
    }
    return;
  }

  const size_t len = static_cast<size_t>(nread);
  received += len;
  http_parser_execute(&parser, &settings(), buf->base, len);
  const http_errno error = HTTP_PARSER_ERRNO(&parser);
  if (error_status != 0) {
    respond(errorResponse(error_status, error_message));
    return;
  }
  if (error == HPE_HEADER_OVERFLOW) {
    respond(errorResponse(431, "the request line and headers are too large"));
    return;
  }
  if (error != HPE_OK && error != HPE_PAUSED) {
    respond(errorResponse(400, fmt::format("malformed HTTP request: {} ({})",
                                           http_errno_description(error),
                                           http_errno_name(error))));
    return;
  }
  if (complete) {
    dispatch();
  }
}

int HttpServer::Connection::refuse(int status, std::string message) {
  error_status = status;
  error_message = std::move(message);
  return -1;
}

bool HttpServer::Connection::addHeaderBytes(size_t len) {
  header_bytes += len;
  return header_bytes <= server.limits_.max_header_bytes;
}

int HttpServer::Connection::onUrl_cb(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (!c->addHeaderBytes(len)) {
    return c->refuse(431, fmt::format("the request line and headers are over {} bytes",
                                      c->server.limits_.max_header_bytes));
  }
  c->request.target.append(at, len);
  return 0;
}

void HttpServer::Connection::finishHeader() {
  if (in_value) {
    in_value = false;
    field.clear();
  }
}

int HttpServer::Connection::onHeaderField_cb(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  // A field after a value starts the next header; fields and values may arrive in pieces.
  c->finishHeader();
  if (!c->addHeaderBytes(len + 4)) {
    return c->refuse(431, fmt::format("the request line and headers are over {} bytes",
                                      c->server.limits_.max_header_bytes));
  }
  c->field.append(at, len);
  return 0;
}

int HttpServer::Connection::onHeaderValue_cb(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (!c->addHeaderBytes(len)) {
    return c->refuse(431, fmt::format("the request line and headers are over {} bytes",
                                      c->server.limits_.max_header_bytes));
  }
  if (!c->in_value) {
    if (c->request.headers.size() >= c->server.limits_.max_headers) {
      return c->refuse(431, fmt::format("the request has more than {} headers",
                                        c->server.limits_.max_headers));
    }
    c->in_value = true;
    c->request.headers.emplace_back(c->field, std::string());
  }
  c->request.headers.back().second.append(at, len);
  return 0;
}

int HttpServer::Connection::onHeadersComplete_cb(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->headers_done = true;
  c->request.method = http_method_str(static_cast<http_method>(p->method));
  const std::string& target = c->request.target;
  const size_t question = target.find('?');
  c->request.path = target.substr(0, question);
  c->request.query = question == std::string::npos ? std::string() : target.substr(question + 1);

  // Refuse an announced oversized body before any of it is read. ULLONG_MAX means no
  // Content-Length (chunked or none); on_body enforces the limit then.
  const size_t max_body = c->server.limits_.max_body_bytes;
  if (p->content_length != ULLONG_MAX && p->content_length > max_body) {
    return c->refuse(413, fmt::format("the request body is {} bytes; at most {} are accepted",
                                      p->content_length, max_body));
  }

  const std::string* expect = c->request.header("Expect");
  if (expect != nullptr) {
    if (!equalsIgnoreCase(*expect, "100-continue")) {
      return c->refuse(400, fmt::format("Expect: {} is not supported; only 100-continue is",
                                        *expect));
    }
    // The client waits for this before sending its body.
    uv_buf_t buf = uv_buf_init(const_cast<char*>(kContinue.data()),
                               static_cast<unsigned>(kContinue.size()));
    uv_write(&c->continue_req, c->stream, &buf, 1, onContinueWritten_cb);
  }
  return 0;
}

int HttpServer::Connection::onBody_cb(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  const size_t max_body = c->server.limits_.max_body_bytes;
  if (c->request.body.size() + len > max_body) {
    return c->refuse(413, fmt::format("the request body is over {} bytes", max_body));
  }
  c->request.body.append(at, len);
  return 0;
}

int HttpServer::Connection::onMessageComplete_cb(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->complete = true;
  // One request per connection: anything pipelined after it is not parsed.
  http_parser_pause(p, 1);
  return 0;
}

void HttpServer::Connection::dispatch() {
  Response response;
  try {
    response = server.handler_(request);
  } catch (const std::exception& e) {
    spdlog::error("admin request failed method={} path={} reason=\"{}\"", request.method,
                  request.path, e.what());
    response = errorResponse(500, fmt::format("internal error: {}", e.what()));
  }
  respond(response);
}

void HttpServer::Connection::respond(const Response& response) {
  phase = Phase::Responding;
  out = serialize(response, request.method == "HEAD");
  uv_timer_start(&timer, onTimer_cb, static_cast<uint64_t>(server.limits_.write_timeout.count()),
                 0);
  uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
  if (uv_write(&write_req, stream, &buf, 1, onWrite_cb) != 0) {
    closeNow();
  }
}

void HttpServer::Connection::onContinueWritten_cb(uv_write_t* /*req*/, int /*status*/) {
  // A failure shows again on the next read or on the response's own write.
}

void HttpServer::Connection::onWrite_cb(uv_write_t* req, int status) {
  auto* c = static_cast<Connection*>(req->handle->data);
  if (status != 0 || c->phase == Phase::Closing) {
    c->closeNow();
    return;
  }
  c->linger();
}

void HttpServer::Connection::linger() {
  phase = Phase::Lingering;
  uv_timer_start(&timer, onTimer_cb, static_cast<uint64_t>(server.limits_.linger.count()), 0);
  if (uv_shutdown(&shutdown_req, stream, onShutdown_cb) != 0) {
    closeNow();
  }
}

void HttpServer::Connection::onShutdown_cb(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Connection*>(req->handle->data);
  if (status != 0 && c->phase != Phase::Closing) {
    c->closeNow();
  }
}

void HttpServer::Connection::onTimer_cb(uv_timer_t* handle) {
  auto* c = static_cast<Connection*>(handle->data);
  if (c->phase == Phase::Reading) {
    c->respond(errorResponse(
        408, fmt::format("no complete request within {} ms",
                         c->server.limits_.request_timeout.count())));
    return;
  }
  c->closeNow();
}

void HttpServer::Connection::closeNow() {
  if (phase == Phase::Closing) {
    return;
  }
  phase = Phase::Closing;
  uv_close(reinterpret_cast<uv_handle_t*>(stream), onClosed_cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), onClosed_cb);
}

void HttpServer::Connection::onClosed_cb(uv_handle_t* handle) {
  auto* c = static_cast<Connection*>(handle->data);
  if (--c->handles_open > 0) {
    return;
  }
  HttpServer& server = c->server;
  server.open_.erase(std::find(server.open_.begin(), server.open_.end(), c));
  --server.connections_;
  --server.by_transport_[static_cast<size_t>(c->transport)];
  delete c;
}

struct HttpServer::Listener {
  HttpServer* owner = nullptr;
  Transport transport = Transport::Tcp;
  uv_tcp_t tcp{};
  uv_pipe_t pipe{};
  uv_stream_t* stream = nullptr;
  bool open = false;
};

HttpServer::HttpServer(uv_loop_t* loop, HttpLimits limits, Handler handler)
    : loop_(loop), limits_(limits), handler_(std::move(handler)) {}

HttpServer::~HttpServer() = default;

Endpoint HttpServer::listenTcp(const Endpoint& address) {
  auto listener = std::make_unique<Listener>();
  listener->owner = this;
  listener->transport = Transport::Tcp;
  uv_tcp_init(loop_, &listener->tcp);
  listener->stream = reinterpret_cast<uv_stream_t*>(&listener->tcp);
  listener->stream->data = listener.get();
  listener->open = true;
  Listener& l = *listener;
  listeners_.push_back(std::move(listener));

  // libuv may defer a bind error to listen, so both are checked.
  const unsigned flags = address.isV6() ? UV_TCP_IPV6ONLY : 0;
  int rc = uv_tcp_bind(&l.tcp, address.sa(), flags);
  if (rc == 0) {
    rc = uv_listen(l.stream, 64, onConnection_cb);
  }
  if (rc != 0) {
    closeListener(l);
    std::string hint;
    if (rc == UV_EADDRINUSE) {
      hint = "; another process holds this port: stop it or change [admin] listen";
    } else if (rc == UV_EADDRNOTAVAIL) {
      hint = "; the address is not configured on any interface of this host";
    }
    throw HttpListenError(fmt::format("cannot listen for admin requests on {}: {}{}",
                                      address.toString(), uv_strerror(rc), hint));
  }

  sockaddr_storage bound{};
  int len = sizeof(bound);
  uv_tcp_getsockname(&l.tcp, reinterpret_cast<sockaddr*>(&bound), &len);
  return Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&bound));
}

namespace {

// Whether a process accepts on the unix socket at path.
bool socketIsLive(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), std::min(path.size(), sizeof(addr.sun_path) - 1));
  const bool live = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return live;
}

}  // namespace

void HttpServer::listenUnix(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throw HttpListenError(fmt::format("cannot listen for admin requests on {}: the path "
                                        "exists and is not a socket; remove it or change "
                                        "[admin] socket",
                                        path));
    }
    if (socketIsLive(path)) {
      throw HttpListenError(fmt::format("cannot listen for admin requests on {}: another "
                                        "process (perhaps another fulcrum) accepts on it; stop "
                                        "it or change [admin] socket",
                                        path));
    }
    // Left behind by a process that died without cleaning up.
    ::unlink(path.c_str());
  }

  auto listener = std::make_unique<Listener>();
  listener->owner = this;
  listener->transport = Transport::Unix;
  uv_pipe_init(loop_, &listener->pipe, 0);
  listener->stream = reinterpret_cast<uv_stream_t*>(&listener->pipe);
  listener->stream->data = listener.get();
  listener->open = true;
  Listener& l = *listener;
  listeners_.push_back(std::move(listener));

  int rc = uv_pipe_bind(&l.pipe, path.c_str());
  if (rc == 0) {
    // Owner only, set before listen() so no other user can ever connect: the unix socket
    // skips the token.
    if (::chmod(path.c_str(), 0600) != 0) {
      rc = -errno;
    }
  }
  if (rc == 0) {
    if (::lstat(path.c_str(), &st) == 0) {
      unix_path_ = path;
      unix_inode_ = st.st_ino;
    }
    rc = uv_listen(l.stream, 64, onConnection_cb);
  }
  if (rc != 0) {
    closeListener(l);
    throw HttpListenError(fmt::format("cannot listen for admin requests on {}: {}", path,
                                      uv_strerror(rc)));
  }
}

void HttpServer::onConnection_cb(uv_stream_t* server, int status) {
  auto* listener = static_cast<Listener*>(server->data);
  listener->owner->onConnection(*listener, status);
}

void HttpServer::onConnection(Listener& listener, int status) {
  if (status != 0 || closed_) {
    return;
  }

  // Over the limit the connection is still accepted, to answer 503 rather than leave the
  // client in the backlog; beyond twice the limit it is closed unanswered, so a flood
  // cannot make the refusals themselves unbounded. TCP and the unix socket have a budget
  // each: clients without the token cannot use up the operator's owner-only socket.
  auto* connection = new Connection(*this, listener.transport);
  ++connections_;
  const size_t open = ++by_transport_[static_cast<size_t>(listener.transport)];
  open_.push_back(connection);
  if (!connection->start(listener.stream)) {
    return;
  }
  const size_t limit = limits_.max_connections;
  if (open > 2 * limit) {
    connection->closeNow();
    return;
  }
  if (open > limit) {
    connection->respond(errorResponse(
        503, fmt::format("too many admin connections (at most {} at once); retry shortly",
                         limits_.max_connections)));
  }
}

void HttpServer::closeListener(Listener& listener) {
  if (!listener.open) {
    return;
  }
  listener.open = false;
  ++listeners_closing_;
  uv_close(reinterpret_cast<uv_handle_t*>(listener.stream), onListenerClosed_cb);
}

void HttpServer::onListenerClosed_cb(uv_handle_t* handle) {
  auto* listener = static_cast<Listener*>(handle->data);
  --listener->owner->listeners_closing_;
}

void HttpServer::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  for (auto& listener : listeners_) {
    closeListener(*listener);
  }
  // closeNow only starts closing; the connection leaves open_ in its close callback.
  for (Connection* connection : std::vector<Connection*>(open_)) {
    connection->closeNow();
  }

  // Only our own socket: another process may have replaced the file since.
  struct stat st {};
  if (!unix_path_.empty() && ::lstat(unix_path_.c_str(), &st) == 0 &&
      S_ISSOCK(st.st_mode) && st.st_ino == unix_inode_) {
    ::unlink(unix_path_.c_str());
  }
}

}  // namespace fulcrum::admin
