#include "runtime/worker.hpp"

#include <unistd.h>

#include "fulcrum/log.hpp"
#include "tcp/acceptor.hpp"
#include "tcp/session.hpp"

namespace fulcrum::runtime {

Worker::Worker(unsigned id, std::vector<ListenSocket> sockets)
    : id_(id), sockets_(std::move(sockets)), scratch_(new uint8_t[kScratchBytes]) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, onAsync_cb);
  async_.data = this;
  // Acceptors (and the descriptors they hold in reserve) exist before start() returns, so
  // the process's descriptor count is settled once listeners are announced.
  for (const ListenSocket& socket : sockets_) {
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
  }

  if ((commands & kShutdown) && !shutting_down_) {
    shutting_down_ = true;
    // finish() unlinks the session, so always take the head.
    while (sessions_head_ != nullptr) {
      sessions_head_->abort(tcp::CloseReason::Shutdown);
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

  uv_run(&loop_, UV_RUN_DEFAULT);
  spdlog::debug("worker stopped worker={}", id_);
}

}  // namespace fulcrum::runtime
