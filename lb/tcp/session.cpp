#include "tcp/session.hpp"

#include <netinet/in.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fulcrum/flow_hash.hpp"
#include "fulcrum/log.hpp"
#include "runtime/access_log.hpp"
#include "runtime/worker.hpp"
#include "tcp/proxy_header.hpp"
#include "xdp/xdp_hash.hpp"

namespace fulcrum::tcp {

namespace {

// Reads per direction per wakeup, so one busy connection cannot starve the loop.
constexpr int kMaxReadsPerWakeup = 4;

// Full 64 KiB reads (512 KiB in all) after which a direction moves its bytes by splice().
// Request/response traffic rarely fills the buffer, so it never pays for a pipe.
constexpr uint32_t kSpliceAfterFullReads = 8;

constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

// Local failures that hit every new connection alike (out of descriptors) are logged at
// most this often per listener; the counter has the full count.
constexpr uint64_t kLocalErrorLogIntervalMs = 5000;

bool isHashing(Algorithm a) {
  return a == Algorithm::RingHash || a == Algorithm::Maglev;
}

// send() that never raises SIGPIPE and retries EINTR. Returns bytes written (0 when the
// socket buffer is full) or -errno.
ssize_t sendSome(int fd, const uint8_t* data, size_t len) {
  for (;;) {
    const ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) {
      return n;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return 0;
    }
    return -errno;
  }
}

// Makes the next close() send RST instead of FIN.
void armReset(int fd) {
  if (fd < 0) {
    return;
  }
  const linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

pool::ConnectFail connectFailOf(int error, bool timed_out) {
  if (timed_out) {
    return pool::ConnectFail::Timeout;
  }
  switch (error) {
    case ECONNREFUSED:
      return pool::ConnectFail::Refused;
    case ENETUNREACH:
    case EHOSTUNREACH:
      return pool::ConnectFail::Unreachable;
    default:
      return pool::ConnectFail::Other;
  }
}

std::string connectErrorName(int error, bool timed_out) {
  if (timed_out) {
    return "timeout";
  }
  switch (error) {
    case ECONNREFUSED:
      return "refused";
    case ENETUNREACH:
    case EHOSTUNREACH:
      return "unreachable";
    default:
      return std::strerror(error);
  }
}

}  // namespace

const char* toString(CloseReason reason) {
  switch (reason) {
    case CloseReason::Done:
      return "done";
    case CloseReason::ClientReset:
      return "client_reset";
    case CloseReason::BackendReset:
      return "backend_reset";
    case CloseReason::IdleTimeout:
      return "idle_timeout";
    case CloseReason::NoBackend:
      return "no_backend";
    case CloseReason::Shutdown:
      return "shutdown";
    case CloseReason::BackendDown:
      return "backend_down";
    case CloseReason::InternalError:
      return "internal_error";
  }
  return "unknown";
}

void Session::start(runtime::Worker& worker, runtime::ListenerState& listener, int client_fd,
                    const sockaddr_storage& peer) {
  auto* session = new Session(worker, listener, client_fd, peer);
  session->begin();
}

Session::Session(runtime::Worker& worker, runtime::ListenerState& listener, int client_fd,
                 const sockaddr_storage& peer)
    : worker_(worker), listener_(listener), peer_(peer), client_fd_(client_fd) {
  up_.src = &client_fd_;
  up_.dst = &backend_fd_;
  down_.src = &backend_fd_;
  down_.dst = &client_fd_;

  uv_timer_init(worker_.loop(), &timer_);
  timer_.data = this;
  ++open_handles_;

  client_watch_.fd = client_fd_;
  client_watch_.callback = onClientIo_cb;
  client_watch_.owner = this;
  backend_watch_.callback = onBackendIo_cb;
  backend_watch_.owner = this;

  worker_.linkSession(this);
  snapshot_ = listener_.pool->snapshot();
}

Session::~Session() = default;

void Session::begin() {
  started_ms_ = uv_now(worker_.loop());
  last_activity_ms_ = started_ms_;

  if (isHashing(snapshot_->algorithm())) {
    sockaddr_storage local{};
    const sockaddr* local_sa = nullptr;
    if (snapshot_->hashKey() == HashKey::FiveTuple) {
      socklen_t len = sizeof(local);
      if (::getsockname(client_fd_, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
        local_sa = reinterpret_cast<const sockaddr*>(&local);
      }
    }
    // An XDP listener served by the splicer (fallback) hashes as the kernel would, so its
    // flows land where the XDP program would have sent them.
    const auto* client = reinterpret_cast<const sockaddr*>(&peer_);
    flow_hash_ = listener_.config.mode == ListenerMode::Xdp
                     ? xdp::xdpFlowHash(snapshot_->hashKey(), Protocol::Tcp, client, local_sa)
                     : hashFlow(snapshot_->hashKey(), Protocol::Tcp, client, local_sa);
  }

  connectNext();
}

void Session::connectNext() {
  if (closing_) {
    return;
  }

  const bool retries_left = attempts_ <= snapshot_->retries();
  const uint32_t index = retries_left ? snapshot_->pick(flow_hash_, tried_) : pool::kNoBackend;
  if (index == pool::kNoBackend) {
    listener_.no_backend_total.fetch_add(1, std::memory_order_relaxed);
    if (listener_.pool->markUnavailable()) {
      const char* why = attempts_ == 0 ? "no_eligible_backend"
                        : retries_left ? "all_backends_failed"
                                       : "retries_exhausted";
      spdlog::warn("no backend available listener={} pool={} client={} reason={} attempts={}",
                   listener_.config.name, snapshot_->name(),
                   Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&peer_)).toString(),
                   why, attempts_);
    }
    finish(CloseReason::NoBackend);
    return;
  }

  backend_index_ = index;
  ++attempts_;
  const pool::Backend& backend = snapshot_->backends()[index];

  // Count the session against its backend from the pick, not from the connect: a burst of
  // flows picked while earlier connects are in flight must see each other, or least_conn
  // sends the whole burst to one backend.
  backend.stats->active.fetch_add(1, std::memory_order_relaxed);
  counted_ = true;
  close_generation_ = backend.stats->close_generation.load(std::memory_order_acquire);

  const int fd = ::socket(backend.address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          0);
  if (fd < 0) {
    // Out of descriptors or memory: another backend would fail the same way.
    const int error = errno;
    listener_.backend_socket_error_total.fetch_add(1, std::memory_order_relaxed);
    if (runtime::logAllowed(listener_.last_local_error_log_ms, uv_now(worker_.loop()),
                            kLocalErrorLogIntervalMs)) {
      spdlog::error("backend socket failed listener={} backend={} reason=\"{}\" "
                    "action=close_client (logged at most every {} s)",
                    listener_.config.name, backend.key, std::strerror(error),
                    kLocalErrorLogIntervalMs / 1000);
    }
    finish(CloseReason::InternalError);
    return;
  }

  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

  backend_fd_ = fd;
  backend_watch_.fd = fd;
  backend_watch_.events = 0;

  // uv_hrtime rather than the loop's millisecond clock: a loopback connect takes tens of
  // microseconds, which the histogram's first bucket (0.5 ms) must still see correctly.
  connect_started_ns_ = uv_hrtime();
  int rc;
  do {
    rc = ::connect(fd, backend.address.sa(), backend.address.len());
  } while (rc != 0 && errno == EINTR);

  if (rc == 0) {
    onConnected();
    return;
  }
  if (errno != EINPROGRESS) {
    onConnectFailed(errno, false);
    return;
  }

  uv_timer_start(&timer_, onTimer_cb, listener_.config.connect_timeout.count(), 0);
  updatePolls();
}

void Session::onConnectFailed(int error, bool timed_out) {
  const pool::Backend& backend = snapshot_->backends()[backend_index_];
  backend.stats->connect_fail_total.fetch_add(1, std::memory_order_relaxed);
  backend.stats->connect_fail_by_reason_total[static_cast<size_t>(connectFailOf(error, timed_out))]
      .fetch_add(1, std::memory_order_relaxed);
  backend.stats->active.fetch_sub(1, std::memory_order_relaxed);
  counted_ = false;
  listener_.pool->reportFailure(*backend.stats);

  const std::string why = connectErrorName(error, timed_out);
  if (!backend.stats->failing.exchange(true, std::memory_order_relaxed)) {
    spdlog::warn("backend connect failed listener={} backend={} reason={} attempt={}",
                 listener_.config.name, backend.key, why, attempts_);
  } else {
    spdlog::debug("backend connect failed listener={} backend={} reason={} attempt={}",
                  listener_.config.name, backend.key, why, attempts_);
  }

  closeBackendAttempt();
  uv_timer_stop(&timer_);

  if (tried_.empty()) {
    tried_.resize(snapshot_->backends().size());
  }
  tried_[backend_index_] = 1;
  connectNext();
}

void Session::onConnected() {
  connected_ = true;
  tried_ = {};

  const pool::Backend& backend = snapshot_->backends()[backend_index_];
  backend.stats->sessions_total.fetch_add(1, std::memory_order_relaxed);
  backend.stats->connect_latency.record((uv_hrtime() - connect_started_ns_) / 1000);
  listener_.pool->reportSuccess(*backend.stats);
  if (backend.stats->failing.load(std::memory_order_relaxed) &&
      backend.stats->failing.exchange(false, std::memory_order_relaxed)) {
    spdlog::info("backend connect recovered listener={} backend={}", listener_.config.name,
                 backend.key);
  }
  if (listener_.pool->markAvailable()) {
    spdlog::info("backend available again listener={} pool={} backend={}",
                 listener_.config.name, snapshot_->name(), backend.key);
  }

  if (snapshot_->proxyProtocol() != ProxyProtocol::Off) {
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    const sockaddr* local_sa = nullptr;
    if (::getsockname(client_fd_, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      local_sa = reinterpret_cast<const sockaddr*>(&local);
    }
    // The header goes out as parked bytes: no client byte is read until it is written.
    up_.parked = worker_.buffers().acquire();
    up_.parked_off = 0;
    up_.parked_len = static_cast<uint32_t>(
        buildProxyHeader(snapshot_->proxyProtocol(), reinterpret_cast<const sockaddr*>(&peer_),
                         local_sa, up_.parked));
  }

  last_activity_ms_ = uv_now(worker_.loop());
  uv_timer_start(&timer_, onTimer_cb, listener_.config.idle_timeout.count(), 0);

  spdlog::debug("session opened listener={} client={} backend={}", listener_.config.name,
                Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&peer_)).toString(),
                backend.key);
  updatePolls();
}

void Session::onClientIo_cb(runtime::IoWatch& watch, int status, int events) {
  static_cast<Session*>(watch.owner)->onClientPoll(status, events);
}

void Session::onBackendIo_cb(runtime::IoWatch& watch, int status, int events) {
  static_cast<Session*>(watch.owner)->onBackendPoll(status, events);
}

void Session::onTimer_cb(uv_timer_t* handle) {
  static_cast<Session*>(handle->data)->onTimer();
}

void Session::onHandleClosed_cb(uv_handle_t* handle) {
  auto* session = static_cast<Session*>(handle->data);
  if (--session->open_handles_ == 0) {
    delete session;
  }
}

void Session::onClientPoll(int status, int events) {
  if (closing_) {
    return;
  }
  if (status < 0) {
    finish(CloseReason::ClientReset);
    return;
  }

  Io result = Io::Ok;
  if (events & UV_WRITABLE) {
    result = flush(down_);
  }
  if (result == Io::Ok && (events & UV_READABLE)) {
    result = pump(up_);
  }
  afterIo(result);
}

void Session::onBackendPoll(int status, int events) {
  if (closing_) {
    return;
  }

  if (!connected_) {
    // Writable without an error is a finished connect; asking SO_ERROR would cost a
    // syscall per connection for nothing.
    if (status == 0) {
      onConnected();
      return;
    }
    // A failed connect shows as an error (UV_EBADF); the real reason is in SO_ERROR.
    int error = 0;
    socklen_t len = sizeof(error);
    if (::getsockopt(backend_fd_, SOL_SOCKET, SO_ERROR, &error, &len) != 0) {
      error = errno;
    }
    if (error == 0 && status < 0) {
      error = -status;
    }
    if (error != 0) {
      onConnectFailed(error, false);
      return;
    }
    onConnected();
    return;
  }

  if (status < 0) {
    finish(CloseReason::BackendReset);
    return;
  }

  Io result = Io::Ok;
  if (events & UV_WRITABLE) {
    result = flush(up_);
  }
  if (result == Io::Ok && (events & UV_READABLE)) {
    result = pump(down_);
  }
  afterIo(result);
}

void Session::onTimer() {
  if (closing_) {
    return;
  }

  if (!connected_) {
    onConnectFailed(ETIMEDOUT, true);
    return;
  }

  // The timer is not re-armed on every read (that would cost a heap update per read);
  // instead it fires at the earliest possible expiry and checks the last activity.
  const uint64_t now = uv_now(worker_.loop());
  const uint64_t idle_ms = now - last_activity_ms_;
  const auto limit = static_cast<uint64_t>(listener_.config.idle_timeout.count());
  if (idle_ms >= limit) {
    finish(CloseReason::IdleTimeout);
    return;
  }
  uv_timer_start(&timer_, onTimer_cb, limit - idle_ms, 0);
}

Session::Io Session::failedSide(const int* fd) const {
  return fd == &client_fd_ ? Io::ClientFailed : Io::BackendFailed;
}

Session::Io Session::pump(Direction& dir) {
  if (dir.pipe.valid()) {
    return pumpSplice(dir);
  }
  uint8_t* buf = worker_.scratch();

  for (int i = 0; i < kMaxReadsPerWakeup; ++i) {
    const ssize_t n = ::read(*dir.src, buf, runtime::Worker::kScratchBytes);
    if (n > 0) {
      dir.bytes += static_cast<uint64_t>(n);
      last_activity_ms_ = uv_now(worker_.loop());

      const ssize_t written = sendSome(*dir.dst, buf, static_cast<size_t>(n));
      if (written < 0) {
        return failedSide(dir.dst);
      }
      if (written < n) {
        dir.parked = worker_.buffers().acquire();
        dir.parked_off = 0;
        dir.parked_len = static_cast<uint32_t>(n - written);
        std::memcpy(dir.parked, buf + written, dir.parked_len);
        return Io::Ok;
      }
      // A short read means the socket is drained; level-triggered polling reports more.
      if (static_cast<size_t>(n) < runtime::Worker::kScratchBytes) {
        return Io::Ok;
      }
      if (++dir.full_reads >= kSpliceAfterFullReads && !dir.splice_refused) {
        dir.pipe = worker_.pipes().acquire();
        if (dir.pipe.valid()) {
          return pumpSplice(dir);
        }
        dir.splice_refused = true;
      }
      continue;
    }

    if (n == 0) {
      dir.src_eof = true;
      passEof(dir);
      return Io::Ok;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Io::Ok;
    }
    return failedSide(dir.src);
  }
  return Io::Ok;
}

Session::Io Session::pumpSplice(Direction& dir) {
  for (int i = 0; i < kMaxReadsPerWakeup; ++i) {
    // The pipe is empty here (flushPipe ran dry or nothing was read yet), so EAGAIN can only
    // mean the source socket has nothing more.
    const ssize_t n = ::splice(*dir.src, nullptr, dir.pipe.write_fd, nullptr,
                               runtime::PipePool::kPipeBytes, kSpliceFlags);
    if (n == 0) {
      dir.src_eof = true;
      passEof(dir);
      return Io::Ok;
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return Io::Ok;
      }
      return failedSide(dir.src);
    }

    dir.bytes += static_cast<uint64_t>(n);
    dir.piped = static_cast<uint32_t>(n);
    last_activity_ms_ = uv_now(worker_.loop());

    const Io result = flushPipe(dir);
    if (result != Io::Ok || dir.piped > 0) {
      return result;
    }
    if (n < runtime::PipePool::kPipeBytes) {
      return Io::Ok;
    }
  }
  return Io::Ok;
}

Session::Io Session::flushPipe(Direction& dir) {
  while (dir.piped > 0) {
    const ssize_t n = ::splice(dir.pipe.read_fd, nullptr, *dir.dst, nullptr, dir.piped,
                               kSpliceFlags);
    if (n > 0) {
      dir.piped -= static_cast<uint32_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return Io::Ok;  // dst is full: the bytes wait in the pipe, dst is polled for writable.
    }
    return failedSide(dir.dst);
  }
  return Io::Ok;
}

Session::Io Session::flush(Direction& dir) {
  if (!dir.hasParked()) {
    return Io::Ok;
  }

  if (dir.piped > 0) {
    const Io result = flushPipe(dir);
    if (result != Io::Ok || dir.piped > 0) {
      return result;
    }
  } else {
    const ssize_t written =
        sendSome(*dir.dst, dir.parked + dir.parked_off, dir.parked_len - dir.parked_off);
    if (written < 0) {
      return failedSide(dir.dst);
    }

    dir.parked_off += static_cast<uint32_t>(written);
    if (dir.hasParked()) {
      return Io::Ok;
    }

    worker_.buffers().release(dir.parked);
    dir.parked = nullptr;
    dir.parked_off = 0;
    dir.parked_len = 0;
  }

  if (dir.src_eof) {
    passEof(dir);
  }
  return Io::Ok;
}

void Session::passEof(Direction& dir) {
  if (dir.hasParked() || dir.dst_shut) {
    return;
  }
  // When the other direction is finished too, the session closes right after this (see
  // afterIo) and close() sends the same FIN, as everything was read from this socket: the
  // shutdown() would be a wasted syscall.
  const Direction& other = &dir == &up_ ? down_ : up_;
  if (!other.finished()) {
    // ENOTCONN here means the peer is already gone; the other direction will notice.
    ::shutdown(*dir.dst, SHUT_WR);
  }
  dir.dst_shut = true;
}

void Session::afterIo(Io result) {
  if (closing_) {
    return;
  }

  if (result == Io::ClientFailed) {
    finish(CloseReason::ClientReset);
    return;
  }
  if (result == Io::BackendFailed) {
    finish(CloseReason::BackendReset);
    return;
  }

  if (up_.finished() && down_.finished()) {
    finish(CloseReason::Done);
    return;
  }
  updatePolls();
}

void Session::updatePolls() {
  if (closing_) {
    return;
  }

  int client_want = 0;
  int backend_want = 0;
  if (connected_) {
    if (!up_.src_eof && !up_.hasParked()) {
      client_want |= UV_READABLE;
    }
    if (down_.hasParked()) {
      client_want |= UV_WRITABLE;
    }
    if (!down_.src_eof && !down_.hasParked()) {
      backend_want |= UV_READABLE;
    }
    if (up_.hasParked()) {
      backend_want |= UV_WRITABLE;
    }
  } else if (backend_fd_ >= 0) {
    backend_want = UV_WRITABLE;
  }

  // epoll_ctl fails only for lack of kernel memory (or a limit on watches): a local failure.
  runtime::IoSet& io = worker_.ioSet();
  if (io.update(client_watch_, client_want) != 0 ||
      (backend_fd_ >= 0 && io.update(backend_watch_, backend_want) != 0)) {
    finish(CloseReason::InternalError);
  }
}

void Session::closeBackendAttempt() {
  if (backend_fd_ < 0) {
    return;
  }
  runtime::IoSet::forget(backend_watch_);
  ::close(backend_fd_);
  backend_fd_ = -1;
  backend_watch_.fd = -1;
}

void Session::abort(CloseReason reason) {
  finish(reason);
}

const pool::Backend* Session::closeIfBackendDowned() {
  if (closing_ || !counted_) {
    return nullptr;
  }
  const pool::Backend& backend = snapshot_->backends()[backend_index_];
  if (backend.stats->close_generation.load(std::memory_order_acquire) == close_generation_) {
    return nullptr;
  }
  finish(CloseReason::BackendDown);
  return &backend;
}

void Session::finish(CloseReason reason) {
  if (closing_) {
    return;
  }
  closing_ = true;
  reason_ = reason;

  if (reason == CloseReason::ClientReset) {
    armReset(backend_fd_);
  } else if (reason == CloseReason::BackendReset) {
    armReset(client_fd_);
  } else if (reason == CloseReason::BackendDown) {
    // A reset, not a FIN: the client must not mistake a cut session for a finished one.
    armReset(client_fd_);
    armReset(backend_fd_);
  }

  if (counted_) {
    snapshot_->backends()[backend_index_].stats->active.fetch_sub(1, std::memory_order_relaxed);
    counted_ = false;
  }
  if (connected_) {
    const pool::Backend& backend = snapshot_->backends()[backend_index_];
    backend.stats->bytes_to_backend_total.fetch_add(up_.bytes, std::memory_order_relaxed);
    backend.stats->bytes_from_backend_total.fetch_add(down_.bytes, std::memory_order_relaxed);
  }
  listener_.active.fetch_sub(1, std::memory_order_relaxed);
  worker_.unlinkSession(this);
  logClose();

  worker_.buffers().release(up_.parked);
  worker_.buffers().release(down_.parked);
  up_.parked = nullptr;
  down_.parked = nullptr;
  worker_.pipes().release(up_.pipe, up_.piped == 0);
  worker_.pipes().release(down_.pipe, down_.piped == 0);

  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), onHandleClosed_cb);
  runtime::IoSet::forget(client_watch_);
  ::close(client_fd_);
  client_fd_ = -1;
  closeBackendAttempt();
}

void Session::logClose() const {
  if (const runtime::AccessLog* access = runtime::AccessLog::current()) {
    runtime::AccessRecord record;
    record.listener = listener_.config.name;
    record.protocol = Protocol::Tcp;
    record.client = reinterpret_cast<const sockaddr*>(&peer_);
    // Both branches as string_view: a std::string temporary from the ?: would die here.
    record.backend = backend_index_ == pool::kNoBackend
                         ? std::string_view("-")
                         : std::string_view(snapshot_->backends()[backend_index_].key);
    record.bytes_up = up_.bytes;
    record.bytes_down = down_.bytes;
    record.duration_ms = uv_now(worker_.loop()) - started_ms_;
    record.reason = toString(reason_);
    access->write(record);
  }
  if (!spdlog::should_log(spdlog::level::debug)) {
    return;
  }
  const std::string backend =
      backend_index_ == pool::kNoBackend ? "-" : snapshot_->backends()[backend_index_].key;
  spdlog::debug(
      "session closed listener={} client={} backend={} reason={} bytes_up={} bytes_down={} "
      "duration_ms={}",
      listener_.config.name,
      Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&peer_)).toString(), backend,
      toString(reason_), up_.bytes, down_.bytes, uv_now(worker_.loop()) - started_ms_);
}

}  // namespace fulcrum::tcp
