// Entry points of the config model: read, parse, build, validate.

#include "fulcrum/config.hpp"

#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <toml.hpp>

#include "config/build.hpp"

namespace fulcrum {

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// stdio rather than ifstream so a failure keeps its errno: "Permission denied" and "Is a
// directory" tell an operator what to fix, "cannot read" alone does not.
std::string readWholeFile(const std::string& path) {
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    throw ConfigError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  }

  std::string text;
  char buf[8192];
  for (;;) {
    const size_t n = std::fread(buf, 1, sizeof(buf), file.get());
    text.append(buf, n);
    if (n < sizeof(buf)) {
      break;
    }
  }
  if (std::ferror(file.get()) != 0) {
    throw ConfigError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  }
  return text;
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
