#include "runtime/worker.hpp"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "fulcrum/log.hpp"
#include "tcp/acceptor.hpp"
#include "tcp/session.hpp"
#include "udp/udp_listener.hpp"

namespace fulcrum::runtime {

Worker::Worker(unsigned id, std::vector<ListenSocket> sockets)
    : id_(id), sockets_(std::move(sockets)), scratch_(new uint8_t[kScratchBytes]) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, onAsync_cb);
  async_.data = this;
  io_set_.open(&loop_);
  // Acceptors (and the descriptors they hold in reserve) exist before start() returns, so
  // the process's descriptor count is settled once listeners are announced.
  for (const ListenSocket& socket : sockets_) {
    if (socket.state->config.protocol == Protocol::Udp) {
      udp_listeners_.push_back(std::make_unique<udp::Listener>(*this, socket));
      continue;
    }
    acceptors_.push_back(std::make_unique<tcp::Acceptor>(*this, socket));
  }
}

Worker::~Worker() {
  join();
  // A worker whose thread never ran (start-up failed elsewhere) still has its async handle
  // and its listening sockets.
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&async_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  }
  closeAcceptors();
  for (auto& listener : udp_listeners_) {
    listener->close();
  }
  io_set_.close();
  uv_run(&loop_, UV_RUN_NOWAIT);
  uv_loop_close(&loop_);
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Worker::stopAccepting() {
  commands_.fetch_or(kStopAccepting, std::memory_order_release);
  uv_async_send(&async_);
}

void Worker::shutdown() {
  commands_.fetch_or(kShutdown, std::memory_order_release);
  uv_async_send(&async_);
}

void Worker::closeDownedSessions() {
  commands_.fetch_or(kCloseDowned, std::memory_order_release);
  uv_async_send(&async_);
}

void Worker::closeDownedTcpSessions() {
  // One line per listener and backend, not per session; a failover can cut thousands at once.
  struct Closed {
    const std::string* listener;
    const pool::Backend* backend;
    uint32_t sessions;
  };
  std::vector<Closed> closed;
  tcp::Session* next = nullptr;
  for (tcp::Session* session = sessions_head_; session != nullptr; session = next) {
    next = session->next_;
    const std::string& listener = session->listener().config.name;
    const pool::Backend* backend = session->closeIfBackendDowned();
    if (backend == nullptr) {
      continue;
    }
    auto it = std::find_if(closed.begin(), closed.end(), [&](const Closed& entry) {
      return *entry.listener == listener && entry.backend->key == backend->key;
    });
    if (it == closed.end()) {
      closed.push_back({&listener, backend, 1});
    } else {
      ++it->sessions;
    }
  }
  for (const Closed& entry : closed) {
    spdlog::info("sessions closed for backend down worker={} listener={} backend={} "
                 "sessions={} reason=on_down_close",
                 id_, *entry.listener, entry.backend->key, entry.sessions);
  }
}

void Worker::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    tasks_.push_back(std::move(task));
  }
  commands_.fetch_or(kTasks, std::memory_order_release);
  uv_async_send(&async_);
}

void Worker::runTasks() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    tasks.swap(tasks_);
  }
  for (auto& task : tasks) {
    task();
  }
}

void Worker::addSockets(std::vector<ListenSocket> sockets) {
  post([this, sockets = std::move(sockets)] {
    for (const ListenSocket& socket : sockets) {
      if (shutting_down_) {
        ::close(socket.fd);
        continue;
      }
      if (socket.state->config.protocol == Protocol::Udp) {
        udp_listeners_.push_back(std::make_unique<udp::Listener>(*this, socket));
        udp_listeners_.back()->start();
      } else {
        acceptors_.push_back(std::make_unique<tcp::Acceptor>(*this, socket));
        acceptors_.back()->start();
      }
    }
  });
}

void Worker::replaceState(const ListenerState* old_state, ListenerState* new_state) {
  post([this, old_state, new_state] {
    for (auto& acceptor : acceptors_) {
      if (acceptor->state() == old_state) {
        acceptor->setState(new_state);
      }
    }
    for (auto& listener : udp_listeners_) {
      if (listener->state() == old_state) {
        listener->setState(new_state);
      }
    }
  });
}

void Worker::retireListener(const ListenerState* state) {
  post([this, state] {
    for (auto& acceptor : acceptors_) {
      if (acceptor->state() == state) {
        acceptor->close();
      }
    }
    for (auto& listener : udp_listeners_) {
      if (listener->state() == state) {
        listener->stopAccepting();
      }
    }
  });
}

void Worker::linkSession(tcp::Session* session) {
  session->prev_ = nullptr;
  session->next_ = sessions_head_;
  if (sessions_head_ != nullptr) {
    sessions_head_->prev_ = session;
  }
  sessions_head_ = session;
  active_sessions_.fetch_add(1, std::memory_order_relaxed);
}

void Worker::unlinkSession(tcp::Session* session) {
  if (session->prev_ != nullptr) {
    session->prev_->next_ = session->next_;
  } else {
    sessions_head_ = session->next_;
  }
  if (session->next_ != nullptr) {
    session->next_->prev_ = session->prev_;
  }
  session->prev_ = nullptr;
  session->next_ = nullptr;
  active_sessions_.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::onAsync_cb(uv_async_t* handle) {
  static_cast<Worker*>(handle->data)->onAsync();
}

void Worker::onAsync() {
  const uint32_t commands = commands_.exchange(0, std::memory_order_acquire);

  if (commands & (kStopAccepting | kShutdown)) {
    closeAcceptors();
    // UDP has no connection to refuse: a draining listener keeps its socket, drops
    // datagrams of new clients and carries open sessions both ways until they end.
    for (auto& listener : udp_listeners_) {
      listener->stopAccepting();
    }
  }

  if ((commands & kTasks) && !shutting_down_) {
    runTasks();
  }

  if ((commands & kCloseDowned) && !shutting_down_) {
    closeDownedTcpSessions();
    for (auto& listener : udp_listeners_) {
      listener->closeSessionsOfDownBackends();
    }
  }

  if ((commands & kShutdown) && !shutting_down_) {
    shutting_down_ = true;
    // finish() unlinks the session, so always take the head.
    while (sessions_head_ != nullptr) {
      sessions_head_->abort(tcp::CloseReason::Shutdown);
    }
    for (auto& listener : udp_listeners_) {
      listener->close();
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  }
}

void Worker::closeAcceptors() {
  for (auto& acceptor : acceptors_) {
    acceptor->close();
  }
}

void Worker::run() {
  for (auto& acceptor : acceptors_) {
    acceptor->start();
  }
  for (auto& listener : udp_listeners_) {
    listener->start();
  }

  uv_run(&loop_, UV_RUN_DEFAULT);
  spdlog::debug("worker stopped worker={}", id_);
}

}  // namespace fulcrum::runtime
