#include "udp/udp_listener.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "fulcrum/log.hpp"
#include "udp/udp_socket.hpp"

namespace fulcrum::udp {

namespace {

// Receive rounds per wakeup, so a flood on one listener cannot starve the worker's other
// sockets; the level-triggered poll brings us back for the rest.
constexpr int kMaxBatchesPerWakeup = 4;

// Sessions ended per sweep, so ten thousand sessions expiring together do not stall the
// loop; the next sweep continues.
constexpr int kMaxExpiriesPerSweep = 4096;

// Bounds of the sweep period (a quarter of idle_timeout): a session ends between
// idle_timeout and idle_timeout plus one period after its last datagram.
constexpr uint64_t kMinSweepMs = 10;
constexpr uint64_t kMaxSweepMs = 1000;

// Drops that hit every datagram alike are logged at most this often per listener.
constexpr uint64_t kDropLogIntervalMs = 5000;

uint64_t idleMs(const runtime::ListenerState& state) {
  return static_cast<uint64_t>(std::max<int64_t>(1, state.config.idle_timeout.count()));
}

}  // namespace

Listener::Listener(runtime::Worker& worker, runtime::ListenSocket socket)
    : worker_(worker),
      state_(socket.state),
      stats_(&socket.state->udp),
      fd_(socket.fd),
      port_be_(htons(socket.state->address.port())),
      wildcard_(isWildcard(socket.state->address)),
      idle_ms_(idleMs(*socket.state)),
      batch_(std::make_unique<DatagramBatch>()) {}

Listener::~Listener() {
  if (!started_ && fd_ >= 0) {
    ::close(fd_);
  }
}

void Listener::start() {
  uv_poll_init(worker_.loop(), &poll_, fd_);
  poll_.data = this;
  uv_timer_init(worker_.loop(), &sweep_timer_);
  sweep_timer_.data = this;
  uv_check_init(worker_.loop(), &flush_check_);
  flush_check_.data = this;
  uv_check_start(&flush_check_, onFlush_cb);
  uv_unref(reinterpret_cast<uv_handle_t*>(&flush_check_));

  startSweep();
  uv_poll_start(&poll_, UV_READABLE, onReadable_cb);
  started_ = true;
  open_ = true;
  accepting_ = true;
}

void Listener::stopAccepting() {
  accepting_ = false;
}

void Listener::setState(runtime::ListenerState* state) {
  if (state == state_) {
    return;
  }
  // This worker's open sessions now count against the new state's max_sessions; the old
  // state's counters keep what happened before the switch.
  const auto open = static_cast<uint32_t>(table_.size());
  stats_->sessions.fetch_sub(open, std::memory_order_relaxed);
  state->udp.sessions.fetch_add(open, std::memory_order_relaxed);

  state_ = state;
  stats_ = &state->udp;
  idle_ms_ = idleMs(*state);
  if (open_) {
    startSweep();
  }
}

void Listener::startSweep() {
  const uint64_t period = std::clamp(idle_ms_ / 4, kMinSweepMs, kMaxSweepMs);
  uv_timer_start(&sweep_timer_, onSweep_cb, period, period);
}

void Listener::close() {
  if (!started_) {
    // The worker never ran: no handle exists and the socket is still ours to close.
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    return;
  }
  if (!open_) {
    return;
  }
  open_ = false;
  accepting_ = false;
  flushReplies();

  while (SessionNode* node = table_.oldest()) {
    endSession(*static_cast<Session*>(node), EndReason::Shutdown);
  }

  // The handles live in this object, which the worker destroys only after its loop ended.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&flush_check_), nullptr);
  ::close(fd_);
  fd_ = -1;
}

size_t Listener::closeSessionsOfDownBackends() {
  // One line per backend, not per session; the snapshot each session holds keeps the
  // backend key alive past the session's end.
  std::vector<std::pair<std::shared_ptr<const pool::PoolSnapshot>, const pool::Backend*>> hit;
  std::vector<size_t> counts;
  size_t closed = 0;

  SessionNode* node = table_.oldest();
  while (node != nullptr) {
    SessionNode* next = node->newer;
    auto* session = static_cast<Session*>(node);
    const pool::Backend* backend = session->backend;
    if (backend->stats->close_generation.load(std::memory_order_relaxed) !=
        session->close_generation) {
      size_t i = 0;
      while (i < hit.size() && hit[i].second->key != backend->key) {
        ++i;
      }
      if (i == hit.size()) {
        hit.emplace_back(session->snapshot, backend);
        counts.push_back(0);
      }
      ++counts[i];
      endSession(*session, EndReason::BackendDown);
      ++closed;
    }
    node = next;
  }

  for (size_t i = 0; i < hit.size(); ++i) {
    spdlog::info("sessions closed for backend down worker={} listener={} backend={} "
                 "sessions={} reason=on_down_close",
                 worker_.id(), state_->config.name, hit[i].second->key, counts[i]);
  }
  return closed;
}

void Listener::onReadable_cb(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<Listener*>(handle->data);
  if (status < 0) {
    // POLLERR on an unconnected UDP socket carries nothing we act on. Reading SO_ERROR
    // clears it, so the level-triggered poll cannot spin on it; libuv stopped the handle,
    // so start it again while the listener is open.
    int error = 0;
    socklen_t len = sizeof(error);
    ::getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &error, &len);
    if (self->open_) {
      uv_poll_start(&self->poll_, UV_READABLE, onReadable_cb);
    }
    return;
  }
  self->onReadable();
}

void Listener::onSweep_cb(uv_timer_t* handle) {
  static_cast<Listener*>(handle->data)->sweep();
}

void Listener::onReadable() {
  // Queued replies live in the batch this receive is about to overwrite.
  flushReplies();
  for (int round = 0; round < kMaxBatchesPerWakeup && open_; ++round) {
    mmsghdr* headers = batch_->prepareReceive(wildcard_);
    const int n = ::recvmmsg(fd_, headers, DatagramBatch::kCapacity, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK &&
          runtime::logAllowed(stats_->last_drop_log_ms, uv_now(worker_.loop()),
                              kDropLogIntervalMs)) {
        spdlog::error("udp receive failed listener={} reason=\"{}\"", state_->config.name,
                      std::strerror(errno));
      }
      return;
    }

    handleBatch(static_cast<unsigned>(n), uv_now(worker_.loop()));
    if (static_cast<unsigned>(n) < DatagramBatch::kCapacity) {
      return;
    }
  }
}

void Listener::handleBatch(unsigned count, uint64_t now) {
  // Consecutive datagrams of one client form a run that goes out in one sendmmsg. A run is
  // always flushed before another session is opened, because opening may evict a session.
  Session* run = nullptr;
  unsigned run_indices[DatagramBatch::kCapacity];
  unsigned run_len = 0;
  uint64_t bytes = 0;

  for (unsigned i = 0; i < count; ++i) {
    const mmsghdr& message = batch_->received(i);
    if (message.msg_hdr.msg_flags & MSG_TRUNC) {
      noteDrop(Drop::Truncated, 1, batch_->source(i));
      continue;
    }
    bytes += message.msg_len;

    ClientKey key;
    if (!ClientKey::fromSockaddr(batch_->source(i), key)) {
      continue;  // An IPv4 or IPv6 socket only receives from its own family.
    }
    if (run != nullptr && run->key == key) {
      run_indices[run_len++] = i;
      continue;
    }
    if (run_len != 0) {
      forwardToBackend(run, run_indices, run_len, now);
      run = nullptr;
      run_len = 0;
    }

    auto* session = static_cast<Session*>(table_.find(key));
    if (session == nullptr && !accepting_) {
      noteDrop(Drop::Draining, 1, batch_->source(i));
      continue;
    }
    if (session == nullptr) {
      LocalAddress local;
      if (wildcard_) {
        readLocalAddress(message, port_be_, local);
      }
      Drop why = Drop::NoBackend;
      session = openSession(key, batch_->source(i), message.msg_hdr.msg_namelen, local, now,
                            &why);
      if (session == nullptr) {
        noteDrop(why, 1, batch_->source(i));
        continue;
      }
    }
    run = session;
    run_indices[run_len++] = i;
  }

  if (run_len != 0) {
    forwardToBackend(run, run_indices, run_len, now);
  }
  stats_->datagrams_from_client_total.fetch_add(count, std::memory_order_relaxed);
  stats_->bytes_from_client_total.fetch_add(bytes, std::memory_order_relaxed);
}

bool Listener::reserveSlot() {
  const uint32_t max_sessions = state_->config.max_sessions;
  const bool evict = state_->config.table_full == TableFullPolicy::EvictOldest;

  // Reserve first, then check, so two workers cannot both take the last slot.
  if (stats_->sessions.fetch_add(1, std::memory_order_relaxed) < max_sessions) {
    if (stats_->table_full.load(std::memory_order_relaxed) &&
        stats_->table_full.exchange(false, std::memory_order_relaxed)) {
      spdlog::info("udp session table has room again listener={} max_sessions={}",
                   state_->config.name, max_sessions);
    }
    return true;
  }
  stats_->sessions.fetch_sub(1, std::memory_order_relaxed);

  if (!stats_->table_full.exchange(true, std::memory_order_relaxed)) {
    spdlog::warn("udp session table full listener={} max_sessions={} policy={} action={}",
                 state_->config.name, max_sessions, toString(state_->config.table_full),
                 evict ? "evict_least_recently_active" : "drop_new_clients");
  }

  // Evict from this worker's own table: the others' sessions belong to other threads. When
  // this worker holds none (the others hold them all), the new client is dropped instead.
  if (evict && table_.oldest() != nullptr) {
    endSession(*static_cast<Session*>(table_.oldest()), EndReason::Evicted);
    if (stats_->sessions.fetch_add(1, std::memory_order_relaxed) < max_sessions) {
      return true;
    }
    stats_->sessions.fetch_sub(1, std::memory_order_relaxed);
  }
  return false;
}

void Listener::sweep() {
  const uint64_t now = uv_now(worker_.loop());
  int ended = 0;
  while (SessionNode* node = table_.oldest()) {
    if (now - node->last_active_ms < idle_ms_ || ended == kMaxExpiriesPerSweep) {
      return;
    }
    endSession(*static_cast<Session*>(node), EndReason::IdleTimeout);
    ++ended;
  }

  // A listener that takes no new clients (drain, or retired by a reload) has no use for
  // its socket once its last session is gone.
  if (!accepting_ && open_ && table_.size() == 0) {
    spdlog::debug("udp listener socket closed listener={} worker={} reason=no_sessions_left",
                  state_->config.name, worker_.id());
    close();
  }
}

void Listener::noteDrop(Drop reason, uint64_t count, const sockaddr* client) {
  stats_->countDrop(reason, count);

  // Table-full and no-backend drops have their own once-per-episode lines; draining ones
  // follow the "shutdown requested" line and are expected.
  if (reason == Drop::TableFull || reason == Drop::NoBackend || reason == Drop::Draining) {
    return;
  }
  if (!runtime::logAllowed(stats_->last_drop_log_ms, uv_now(worker_.loop()),
                           kDropLogIntervalMs)) {
    return;
  }
  spdlog::warn("udp datagrams dropped listener={} reason={} client={} dropped_total={} "
               "(logged at most every {} s)",
               state_->config.name, toString(reason),
               client != nullptr ? Endpoint::fromSockaddr(client).toString() : "-",
               stats_->drops_total[static_cast<size_t>(reason)].load(std::memory_order_relaxed),
               kDropLogIntervalMs / 1000);
}

}  // namespace fulcrum::udp
