// Entry points of the config model: read, parse, build, validate.

#include "fulcrum/config.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <toml.hpp>

#include "config/build.hpp"
#include "config/prescan.hpp"

namespace fulcrum {

namespace {

// The largest config file read. Real configs are a few KiB; the cap keeps a wrong path such
// as a log file or a disk image from being slurped whole.
constexpr size_t kMaxConfigBytes = size_t{4} << 20;

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

[[noreturn]] void failRead(const std::string& path, int error) {
  throw ConfigError(fmt::format("{}: cannot read: {}", path, std::strerror(error)));
}

[[noreturn]] void failTooBig(const std::string& path, std::string_view size) {
  throw ConfigError(fmt::format("{}: {} bytes is over the {} MiB limit for a config file", path,
                                size, kMaxConfigBytes >> 20));
}

// Refuses what is not a regular file (/dev/zero never ends, a FIFO blocks until a writer
// comes) and files over the cap. A directory keeps its familiar "Is a directory".
void checkFile(const std::string& path, const struct stat& st) {
  if (S_ISDIR(st.st_mode)) {
    failRead(path, EISDIR);
  }
  if (!S_ISREG(st.st_mode)) {
    throw ConfigError(
        fmt::format("{}: not a regular file; give the path of a TOML file", path));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
    failTooBig(path, std::to_string(st.st_size));
  }
}

// errno is kept in every failure: "Permission denied" tells an operator what to fix,
// "cannot read" alone does not.
std::string readWholeFile(const std::string& path) {
  // stat before open so that opening a device never happens at all (opening some has side
  // effects); fstat after open closes the gap in which the path could be swapped.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    failRead(path, errno);
  }
  checkFile(path, st);

  // O_NONBLOCK so a FIFO swapped in after the stat cannot block the open.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    failRead(path, errno);
  }
  const FdCloser closer(fd);
  if (::fstat(fd, &st) != 0) {
    failRead(path, errno);
  }
  checkFile(path, st);

  // Read up to one byte past the cap: a file that grew since the stat is still bounded, and
  // the extra byte tells it apart from one exactly at the cap.
  std::string text;
  text.reserve(static_cast<size_t>(st.st_size) + 1);
  char buf[65536];
  while (text.size() <= kMaxConfigBytes) {
    const size_t want = std::min(sizeof(buf), kMaxConfigBytes + 1 - text.size());
    const ssize_t n = ::read(fd, buf, want);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      failRead(path, errno);
    }
    if (n == 0) {
      return text;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  failTooBig(path, fmt::format("more than {}", kMaxConfigBytes));
}

}  // namespace

const PoolConfig* Config::findPool(std::string_view name) const {
  for (const PoolConfig& pool : pools) {
    if (pool.name == name) {
      return &pool;
    }
  }
  return nullptr;
}

Config loadConfigFile(const std::string& path) {
  return parseConfig(readWholeFile(path), path);
}

Config parseConfig(std::string_view text, const std::string& source_name) {
  config_detail::prescanToml(text, source_name);
  std::istringstream in{std::string(text)};
  toml::value root;
  try {
    root = toml::parse(in, source_name);
  } catch (const toml::exception& e) {
    throw ConfigError(config_detail::describeSyntaxError(source_name, e));
  } catch (const std::exception& e) {
    // toml11 lets a few standard exceptions escape (std::domain_error for a float it cannot
    // represent); they carry no location.
    throw ConfigError(fmt::format("{}: invalid TOML: {}", source_name, e.what()));
  }

  config_detail::ConfigSources sources;
  Config config = config_detail::buildConfig(root, source_name, sources);
  config_detail::validateConfig(config, sources);
  return config;
}

unsigned effectiveWorkers(const GlobalConfig& global) {
  if (global.workers != 0) {
    return global.workers;
  }

  // The affinity mask, not the machine: under taskset or a container CPU set, one worker per
  // installed CPU would oversubscribe the CPUs we may actually run on.
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) {
      return static_cast<unsigned>(count);
    }
  }
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware > 0 ? hardware : 1;
}

}  // namespace fulcrum
