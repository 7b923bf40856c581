#pragma once

// The access log: one line per finished session, written by the workers as sessions end.
// Lines go out with one write() each on an O_APPEND descriptor, so lines from several
// workers never interleave and no lock is taken. reopen() (SIGUSR1, for logrotate) swaps
// the file under the same descriptor number with dup2, so a writer never sees a closed fd.

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fulcrum/config.hpp"

namespace fulcrum::runtime {

struct AccessRecord {
  std::string_view listener;
  Protocol protocol = Protocol::Tcp;
  const sockaddr* client = nullptr;
  std::string_view backend;  // "-" when none was reached.
  uint64_t bytes_up = 0;     // Client to backend.
  uint64_t bytes_down = 0;   // Backend to client.
  uint64_t duration_ms = 0;
  std::string_view reason;
};

class AccessLog {
 public:
  // Opens the configured destination. Throws std::runtime_error with an operator message.
  explicit AccessLog(const AccessLogConfig& config);
  ~AccessLog();

  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Thread-safe.
  void write(const AccessRecord& record) const;

  // Reopens a file destination (no-op for stderr/stdout). Returns an empty string on
  // success, else why it failed; the old file keeps being written then.
  std::string reopen();

  const AccessLogConfig& config() const { return config_; }

  // The process-wide access log, or null when off. Set by the control plane before
  // workers start and cleared after they stop.
  static const AccessLog* current() { return current_.load(std::memory_order_acquire); }
  static void setCurrent(const AccessLog* log) {
    current_.store(log, std::memory_order_release);
  }

  // The line for record, newline included. Exposed for unit tests.
  std::string format(const AccessRecord& record, int64_t unix_ms) const;

 private:
  AccessLogConfig config_;
  int fd_ = -1;
  bool owns_fd_ = false;
  static std::atomic<const AccessLog*> current_;
};

}  // namespace fulcrum::runtime
