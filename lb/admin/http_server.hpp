#pragma once

// A small HTTP/1.1 server on the control plane's libuv loop, for the admin endpoint. It
// parses with Node's http-parser and serves exactly one request per connection (every
// response says Connection: close): admin traffic is a few requests a second, and a
// connection that ends after its answer needs no idle-connection management.
//
// Bounded in every dimension an unauthenticated peer controls: request line plus headers
// (431), body (413), time from accept to a complete request (408), connections open at once
// (503). A request http-parser refuses gets 400 with the parser's reason. After the
// response, the server half-closes and reads and discards what the client still sends for a
// short while (a lingering close): closing at once with unread bytes would make the kernel
// send a reset that can destroy the response before the client reads it, which is exactly
// what happens to a client told 413 while still sending its body.
//
// Every call, and the handler, run on the loop's thread. Nothing here throws once listening;
// a handler that throws gets the client a 500.

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "admin/http_types.hpp"
#include "fulcrum/endpoint.hpp"

namespace fulcrum::admin {

struct HttpLimits {
  size_t max_header_bytes = 16384;  // Request line and headers together.
  size_t max_headers = 64;
  size_t max_body_bytes = 65536;
  uint32_t max_connections = 32;
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds write_timeout{10000};  // A client that does not read its answer.
  std::chrono::milliseconds linger{1000};          // Discarding after the response.
};

// A listener that could not be set up; the message is complete, for the operator.
class HttpListenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class HttpServer {
 public:
  using Handler = std::function<Response(const Request&)>;

  HttpServer(uv_loop_t* loop, HttpLimits limits, Handler handler);
  // close() must have run and the loop turned since, so every handle is gone.
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Listens on a TCP address; returns the bound address (a port of 0 resolved). Throws
  // HttpListenError.
  Endpoint listenTcp(const Endpoint& address);

  // Listens on a unix socket at path, mode 0600. A stale socket file (nobody accepts on it)
  // is replaced; a live one or a file of another kind is refused. Throws HttpListenError.
  void listenUnix(const std::string& path);

  // Stops listening, closes every connection and removes the socket file. Idempotent.
  void close();

  // Connections open now, lingering ones included.
  size_t openConnections() const { return connections_; }

 private:
  struct Connection;
  struct Listener;

  static void onConnection_cb(uv_stream_t* server, int status);
  static void onListenerClosed_cb(uv_handle_t* handle);

  void onConnection(Listener& listener, int status);
  void closeListener(Listener& listener);

  uv_loop_t* loop_;
  HttpLimits limits_;
  Handler handler_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<Connection*> open_;  // Owned: each deletes itself once its handles closed.
  size_t connections_ = 0;
  size_t by_transport_[2] = {0, 0};  // Indexed by Transport.
  size_t listeners_closing_ = 0;
  bool closed_ = false;
  std::string unix_path_;  // Removed at close when it is still our socket.
  uint64_t unix_inode_ = 0;

  friend struct Connection;
};

}  // namespace fulcrum::admin
