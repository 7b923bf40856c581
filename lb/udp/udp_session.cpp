// The backend side of udp::Listener: opening a session, sending client datagrams to its
// backend, carrying replies back and ending it. See udp_listener.hpp for the contract.

#include "udp/udp_session.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fulcrum/flow_hash.hpp"
#include "fulcrum/log.hpp"
#include "runtime/access_log.hpp"
#include "udp/udp_listener.hpp"
#include "xdp/xdp_hash.hpp"

namespace fulcrum::udp {

namespace {

// Reply batches read from one backend socket per wakeup; a backend streaming replies to one
// client must not starve the others.
constexpr int kMaxReplyBatchesPerWakeup = 2;

// Local failures that hit every new session alike (out of descriptors) are logged at most
// this often per listener; the counters have the full count.
constexpr uint64_t kLocalErrorLogIntervalMs = 5000;

bool isHashing(Algorithm a) {
  return a == Algorithm::RingHash || a == Algorithm::Maglev;
}

// Errors after which the rest of a run cannot be sent now: the socket buffer is full.
bool isBackpressure(int error) {
  return error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS;
}

// ICMP errors a connected UDP socket reports: the backend (port, host or network) cannot be
// reached, which counts against it for passive detection.
bool isUnreachable(int error) {
  return error == ECONNREFUSED || error == EHOSTUNREACH || error == ENETUNREACH;
}

std::string clientText(const Session& session) {
  return Endpoint::fromSockaddr(reinterpret_cast<const sockaddr*>(&session.client)).toString();
}

}  // namespace

Session* Listener::openSession(const ClientKey& key, const sockaddr* client,
                               socklen_t client_len, const LocalAddress& local, uint64_t now,
                               Drop* why) {
  if (!reserveSlot()) {
    *why = Drop::TableFull;
    return nullptr;
  }

  std::shared_ptr<const pool::PoolSnapshot> snapshot = state_->pool->snapshot();
  const sockaddr* local_sa = local.address.ss_family != AF_UNSPEC
                                 ? reinterpret_cast<const sockaddr*>(&local.address)
                                 : state_->address.sa();
  // An XDP listener served by the splicer (fallback) hashes as the kernel would.
  uint64_t flow_hash = 0;
  if (isHashing(snapshot->algorithm())) {
    flow_hash = state_->config.mode == ListenerMode::Xdp
                    ? xdp::xdpFlowHash(snapshot->hashKey(), Protocol::Udp, client, local_sa)
                    : hashFlow(snapshot->hashKey(), Protocol::Udp, client, local_sa);
  }
  const uint32_t index = snapshot->pick(flow_hash, {});
  if (index == pool::kNoBackend) {
    stats_->sessions.fetch_sub(1, std::memory_order_relaxed);
    state_->no_backend_total.fetch_add(1, std::memory_order_relaxed);
    if (state_->pool->markUnavailable()) {
      spdlog::warn("no backend available listener={} pool={} client={} "
                   "reason=no_eligible_backend",
                   state_->config.name, snapshot->name(),
                   Endpoint::fromSockaddr(client).toString());
    }
    *why = Drop::NoBackend;
    return nullptr;
  }
  const pool::Backend& backend = snapshot->backends()[index];

  const int fd = ::socket(backend.address.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int error = fd < 0 ? errno : 0;
  if (fd >= 0 && ::connect(fd, backend.address.sa(), backend.address.len()) != 0) {
    error = errno;
    ::close(fd);
  }
  if (error != 0) {
    stats_->sessions.fetch_sub(1, std::memory_order_relaxed);
    state_->backend_socket_error_total.fetch_add(1, std::memory_order_relaxed);
    if (runtime::logAllowed(state_->last_local_error_log_ms, now, kLocalErrorLogIntervalMs)) {
      spdlog::error("backend socket failed listener={} backend={} reason=\"{}\" "
                    "action=drop_datagram (logged at most every {} s)",
                    state_->config.name, backend.key, std::strerror(error),
                    kLocalErrorLogIntervalMs / 1000);
    }
    *why = Drop::SocketError;
    return nullptr;
  }

  auto* session = new Session;
  session->listener = this;
  session->key = key;
  session->fd = fd;
  std::memcpy(&session->client, client, client_len);
  session->client_len = client_len;
  session->local = local;
  session->backend = &backend;
  session->snapshot = std::move(snapshot);
  session->close_generation = backend.stats->close_generation.load(std::memory_order_relaxed);
  session->opened_ms = now;
  session->expected_replies = state_->config.replies;

  const ProxyProtocol proxy = session->snapshot->proxyProtocol();
  if (proxy == ProxyProtocol::V2) {
    session->proxy_header_len = static_cast<uint8_t>(tcp::buildProxyHeader(
        proxy, client, local_sa, session->proxy_header, tcp::ProxyTransport::Datagram));
  }
  if (wildcard_) {
    session->reply_control_len =
        static_cast<uint8_t>(buildReplyControl(local, session->reply_control));
  }

  // uv_poll_init cannot fail for a fresh socket but for lack of memory, which aborts anyway.
  uv_poll_init(worker_.loop(), &session->poll, fd);
  session->poll.data = session;
  uv_poll_start(&session->poll, UV_READABLE, onBackendReadable_cb);
  table_.insert(session, now);

  backend.stats->active.fetch_add(1, std::memory_order_relaxed);
  backend.stats->sessions_total.fetch_add(1, std::memory_order_relaxed);
  stats_->sessions_total.fetch_add(1, std::memory_order_relaxed);
  worker_.udpSessionOpened();
  if (state_->pool->markAvailable()) {
    spdlog::info("backend available again listener={} pool={} backend={}", state_->config.name,
                 session->snapshot->name(), backend.key);
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("udp session opened listener={} client={} backend={}", state_->config.name,
                  clientText(*session), backend.key);
  }
  return session;
}

void Listener::prepareToBackend(const Session& session, const unsigned* indices, unsigned first,
                                unsigned count) {
  mmsghdr* out = batch_->out();
  for (unsigned j = first; j < count; ++j) {
    iovec* iov = batch_->iov(j);
    iov[0].iov_base = const_cast<uint8_t*>(session.proxy_header);
    iov[0].iov_len = session.proxy_header_len;
    iov[1].iov_base = batch_->data(indices[j]);
    iov[1].iov_len = batch_->received(indices[j]).msg_len;

    msghdr& h = out[j].msg_hdr;
    h = msghdr{};
    const bool header = session.proxy_header_len != 0;
    h.msg_iov = header ? iov : iov + 1;
    h.msg_iovlen = header ? 2 : 1;
    out[j].msg_len = 0;
  }
}

unsigned Listener::sendToBackend(Session& session, unsigned first, unsigned count, int* error) {
  mmsghdr* out = batch_->out();
  unsigned next = first;
  *error = 0;

  while (next < count) {
    const int n = ::sendmmsg(session.fd, out + next, count - next, 0);
    if (n > 0) {
      uint64_t bytes = 0;
      for (unsigned j = next; j < next + static_cast<unsigned>(n); ++j) {
        bytes += out[j].msg_hdr.msg_iov[out[j].msg_hdr.msg_iovlen - 1].iov_len;
      }
      next += static_cast<unsigned>(n);
      session.requests += static_cast<unsigned>(n);
      session.bytes_to_backend += bytes;
      stats_->datagrams_to_backend_total.fetch_add(static_cast<unsigned>(n),
                                                  std::memory_order_relaxed);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    *error = n == 0 ? EAGAIN : errno;
    return next;
  }
  return next;
}

void Listener::forwardToBackend(Session* session, const unsigned* indices, unsigned count,
                                uint64_t now) {
  prepareToBackend(*session, indices, 0, count);
  bool failed_over = false;
  unsigned next = 0;

  while (next < count) {
    int error = 0;
    next = sendToBackend(*session, next, count, &error);
    if (error == 0) {
      break;
    }

    if (isUnreachable(error)) {
      // An ICMP unreachable for an earlier datagram was pending on the socket and this send
      // was refused before anything left. End the session and, once, carry the unsent rest
      // to a new one, which picks again.
      const ClientKey key = session->key;
      const sockaddr_storage client = session->client;
      const socklen_t client_len = session->client_len;
      const LocalAddress local = session->local;
      onBackendUnreachable(*session);
      session = nullptr;
      if (failed_over) {
        noteDrop(Drop::BackendUnreachable, count - next,
                 reinterpret_cast<const sockaddr*>(&client));
        return;
      }
      failed_over = true;

      Drop why = Drop::NoBackend;
      session = openSession(key, reinterpret_cast<const sockaddr*>(&client), client_len, local,
                            now, &why);
      if (session == nullptr) {
        noteDrop(why, count - next, reinterpret_cast<const sockaddr*>(&client));
        return;
      }
      prepareToBackend(*session, indices, next, count);
      continue;
    }

    if (isBackpressure(error)) {
      noteDrop(Drop::BackendSendError, count - next,
               reinterpret_cast<const sockaddr*>(&session->client));
      break;
    }
    // This datagram alone is refused (EMSGSIZE when a PROXY header pushes it past the
    // largest UDP payload, ...); the rest of the run may still go.
    noteDrop(Drop::BackendSendError, 1, reinterpret_cast<const sockaddr*>(&session->client));
    ++next;
  }

  if (session != nullptr) {
    table_.touch(session, now);
  }
}

void Listener::onBackendReadable_cb(uv_poll_t* handle, int status, int /*events*/) {
  auto* session = static_cast<Session*>(handle->data);
  session->listener->onBackendReadable(*session, status);
}

void Listener::onSessionClosed_cb(uv_handle_t* handle) {
  delete static_cast<Session*>(handle->data);
}

void Listener::onBackendReadable(Session& session, int status) {
  if (session.ending) {
    return;
  }

  if (status < 0) {
    // libuv reports POLLERR this way and stops the handle; the socket error says why.
    int error = 0;
    socklen_t len = sizeof(error);
    ::getsockopt(session.fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (isUnreachable(error)) {
      onBackendUnreachable(session);
    } else if (error == 0) {
      uv_poll_start(&session.poll, UV_READABLE, onBackendReadable_cb);
    } else {
      endSession(session, EndReason::BackendError);
    }
    return;
  }

  for (int round = 0; round < kMaxReplyBatchesPerWakeup; ++round) {
    if (pending_in_ == DatagramBatch::kCapacity) {
      flushReplies();
    }
    // Receive after the slots that hold queued replies of other sessions.
    const unsigned first = pending_in_;
    const unsigned room = DatagramBatch::kCapacity - first;
    mmsghdr* headers = batch_->prepareReceive(false);
    const int n = ::recvmmsg(session.fd, headers + first, room, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
      }
      if (isUnreachable(errno)) {
        onBackendUnreachable(session);
      } else {
        endSession(session, EndReason::BackendError);
      }
      return;
    }

    forwardReplies(session, first, static_cast<unsigned>(n));
    if (session.ending || static_cast<unsigned>(n) < room) {
      return;
    }
  }
}

void Listener::forwardReplies(Session& session, unsigned first, unsigned count) {
  mmsghdr* out = batch_->out();
  unsigned ready = 0;
  uint64_t bytes = 0;

  for (unsigned i = first; i < first + count; ++i) {
    const mmsghdr& in = batch_->received(i);
    if (in.msg_hdr.msg_flags & MSG_TRUNC) {
      noteDrop(Drop::Truncated, 1, reinterpret_cast<const sockaddr*>(&session.client));
      continue;
    }
    // Out slots never run ahead of in slots (pending_out_ <= pending_in_), so slot
    // pending_out_ is free and its iovecs point at no other queued reply.
    iovec* iov = batch_->iov(pending_out_);
    iov[0].iov_base = batch_->data(i);
    iov[0].iov_len = in.msg_len;
    bytes += in.msg_len;

    msghdr& h = out[pending_out_].msg_hdr;
    h = msghdr{};
    h.msg_name = &session.client;
    h.msg_namelen = session.client_len;
    h.msg_iov = iov;
    h.msg_iovlen = 1;
    if (session.reply_control_len != 0) {
      h.msg_control = session.reply_control;
      h.msg_controllen = session.reply_control_len;
    }
    ++pending_out_;
    ++ready;
  }
  pending_in_ += count;

  session.replies += count;
  session.bytes_from_backend += bytes;
  stats_->datagrams_from_backend_total.fetch_add(count, std::memory_order_relaxed);
  stats_->bytes_from_backend_total.fetch_add(bytes, std::memory_order_relaxed);
  stats_->datagrams_to_client_total.fetch_add(ready, std::memory_order_relaxed);

  pool::BackendStats& backend_stats = *session.backend->stats;
  state_->pool->reportSuccess(backend_stats);
  if (backend_stats.failing.load(std::memory_order_relaxed) &&
      backend_stats.failing.exchange(false, std::memory_order_relaxed)) {
    spdlog::info("udp backend answering again listener={} backend={}", state_->config.name,
                 session.backend->key);
  }
  table_.touch(&session, uv_now(worker_.loop()));

  const uint64_t expected = session.expected_replies;
  if (expected != 0 && session.replies >= session.requests * expected) {
    endSession(session, EndReason::RepliesDone);
  }
}

void Listener::onFlush_cb(uv_check_t* handle) {
  static_cast<Listener*>(handle->data)->flushReplies();
}

void Listener::flushReplies() {
  mmsghdr* out = batch_->out();
  unsigned next = 0;
  while (next < pending_out_) {
    const int n = ::sendmmsg(fd_, out + next, pending_out_ - next, 0);
    if (n > 0) {
      next += static_cast<unsigned>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    // A full socket buffer drops the rest; any other error, this one reply only.
    const int error = n == 0 ? EAGAIN : errno;
    const unsigned last = isBackpressure(error) ? pending_out_ : next + 1;
    for (; next < last; ++next) {
      noteDrop(Drop::ClientSendError, 1,
               reinterpret_cast<const sockaddr*>(out[next].msg_hdr.msg_name));
    }
  }
  pending_in_ = 0;
  pending_out_ = 0;
}

void Listener::onBackendUnreachable(Session& session) {
  pool::BackendStats& backend_stats = *session.backend->stats;
  backend_stats.connect_fail_total.fetch_add(1, std::memory_order_relaxed);
  state_->pool->reportFailure(backend_stats);

  // The ICMP error stands for a datagram the backend did not take.
  noteDrop(Drop::BackendUnreachable, 1, reinterpret_cast<const sockaddr*>(&session.client));
  if (!backend_stats.failing.exchange(true, std::memory_order_relaxed)) {
    spdlog::warn("udp backend unreachable listener={} backend={} reason=icmp_unreachable",
                 state_->config.name, session.backend->key);
  }
  endSession(session, EndReason::BackendUnreachable);
}

void Listener::endSession(Session& session, EndReason reason) {
  if (session.ending) {
    return;
  }
  session.ending = true;
  table_.erase(&session);

  stats_->sessions.fetch_sub(1, std::memory_order_relaxed);
  stats_->countEnd(reason);
  pool::BackendStats& backend_stats = *session.backend->stats;
  backend_stats.active.fetch_sub(1, std::memory_order_relaxed);
  backend_stats.bytes_to_backend_total.fetch_add(session.bytes_to_backend,
                                                 std::memory_order_relaxed);
  backend_stats.bytes_from_backend_total.fetch_add(session.bytes_from_backend,
                                                   std::memory_order_relaxed);
  worker_.udpSessionClosed();

  if (const runtime::AccessLog* access = runtime::AccessLog::current()) {
    runtime::AccessRecord record;
    record.listener = state_->config.name;
    record.protocol = Protocol::Udp;
    record.client = reinterpret_cast<const sockaddr*>(&session.client);
    record.backend = session.backend->key;
    record.bytes_up = session.bytes_to_backend;
    record.bytes_down = session.bytes_from_backend;
    record.duration_ms = uv_now(worker_.loop()) - session.opened_ms;
    record.reason = toString(reason);
    access->write(record);
  }

  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("udp session closed listener={} client={} backend={} reason={} requests={} "
                  "replies={} duration_ms={}",
                  state_->config.name, clientText(session), session.backend->key,
                  toString(reason), session.requests, session.replies,
                  uv_now(worker_.loop()) - session.opened_ms);
  }

  // Closing the handle first takes the descriptor out of epoll before it is released.
  uv_close(reinterpret_cast<uv_handle_t*>(&session.poll), onSessionClosed_cb);
  ::close(session.fd);
  session.fd = -1;
}

}  // namespace fulcrum::udp
