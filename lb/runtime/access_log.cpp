#include "runtime/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fulcrum/endpoint.hpp"

namespace fulcrum::runtime {

std::atomic<const AccessLog*> AccessLog::current_{nullptr};

namespace {

constexpr int kFileFlags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
constexpr mode_t kFileMode = 0640;

// "2026-12-04T16:52:22.941Z", the same clock and form as the operator log.
std::string isoTime(int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     unix_ms % 1000);
}

}  // namespace

AccessLog::AccessLog(const AccessLogConfig& config) : config_(config) {
  if (config.path == "stderr") {
    fd_ = STDERR_FILENO;
  } else if (config.path == "stdout") {
    fd_ = STDOUT_FILENO;
  } else {
    fd_ = ::open(config.path.c_str(), kFileFlags, kFileMode);
    if (fd_ < 0) {
      throw std::runtime_error(fmt::format(
          "cannot open access log {}: {}; create its directory or fix [access_log] path",
          config.path, std::strerror(errno)));
    }
    owns_fd_ = true;
  }
}

AccessLog::~AccessLog() {
  if (owns_fd_) {
    ::close(fd_);
  }
}

std::string AccessLog::format(const AccessRecord& r, int64_t unix_ms) const {
  const std::string client =
      r.client != nullptr ? Endpoint::fromSockaddr(r.client).toString() : std::string("-");
  if (config_.format == AccessLogFormat::Json) {
    nlohmann::ordered_json line = {
        {"time", isoTime(unix_ms)},  {"listener", r.listener},   {"protocol", toString(r.protocol)},
        {"client", client},          {"backend", r.backend},     {"bytes_up", r.bytes_up},
        {"bytes_down", r.bytes_down}, {"duration_ms", r.duration_ms}, {"reason", r.reason},
    };
    // Names and addresses are plain ASCII; replace rather than throw on anything else.
    return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  }
  // logfmt: every value here is a token without spaces or quotes (names are restricted by
  // the config, addresses are numeric), so none needs quoting.
  return fmt::format("time={} listener={} protocol={} client={} backend={} bytes_up={} "
                     "bytes_down={} duration_ms={} reason={}\n",
                     isoTime(unix_ms), r.listener, toString(r.protocol), client, r.backend,
                     r.bytes_up, r.bytes_down, r.duration_ms, r.reason);
}

void AccessLog::write(const AccessRecord& record) const {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const std::string line = format(record, now);
  // One write per line; a short write on a full disk loses the rest of this line only.
  ssize_t rc;
  do {
    rc = ::write(fd_, line.data(), line.size());
  } while (rc < 0 && errno == EINTR);
}

std::string AccessLog::reopen() {
  if (!owns_fd_) {
    return {};
  }
  const int fresh = ::open(config_.path.c_str(), kFileFlags, kFileMode);
  if (fresh < 0) {
    return fmt::format("cannot open {}: {}", config_.path, std::strerror(errno));
  }
  // dup2 replaces fd_ atomically: a concurrent write() lands in the old file or the new.
  if (::dup2(fresh, fd_) < 0) {
    const int error = errno;
    ::close(fresh);
    return fmt::format("cannot switch to the reopened {}: {}", config_.path,
                       std::strerror(error));
  }
  ::close(fresh);
  return {};
}

}  // namespace fulcrum::runtime
