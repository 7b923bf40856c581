// The fulcrum command: run a config, check one, or print the version.
//
// Exit codes scripts can rely on:
//   0  success (run: clean shutdown after SIGTERM/SIGINT; check: config is valid)
//   1  the config is invalid or unreadable
//   2  bad command line
//   3  the config is valid but Fulcrum could not start (a port in use, ...)

#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "fulcrum/config.hpp"
#include "fulcrum/log.hpp"
#include "runtime/server.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitBadConfig = 1;
constexpr int kExitUsage = 2;
constexpr int kExitStartup = 3;

int checkCommand(const std::string& path) {
  try {
    const fulcrum::Config config = fulcrum::loadConfigFile(path);
    fmt::print("{}", fulcrum::summarize(config));
    return kExitOk;
  } catch (const fulcrum::ConfigError& e) {
    fmt::print(stderr, "{}\n", e.what());
    return kExitBadConfig;
  }
}

int runCommand(const std::string& path, const std::string& log_level) {
  fulcrum::Config config;
  try {
    config = fulcrum::loadConfigFile(path);
  } catch (const fulcrum::ConfigError& e) {
    fmt::print(stderr, "{}\n", e.what());
    return kExitBadConfig;
  }

  fulcrum::LogLevel level = config.global.log_level;
  if (!log_level.empty()) {
    static constexpr fulcrum::LogLevel kLevels[] = {
        fulcrum::LogLevel::Trace, fulcrum::LogLevel::Debug, fulcrum::LogLevel::Info,
        fulcrum::LogLevel::Warn, fulcrum::LogLevel::Error};
    for (fulcrum::LogLevel l : kLevels) {
      if (log_level == fulcrum::toString(l)) {
        level = l;
      }
    }
  }
  fulcrum::initLogging(level);

  // Writes to a peer that has gone away must fail with EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);

  spdlog::info("fulcrum starting version={} config={} workers={}", FULCRUM_VERSION, path,
               fulcrum::effectiveWorkers(config.global));
  try {
    fulcrum::runtime::Server server(std::move(config));
    server.start();
    return server.run();
  } catch (const fulcrum::runtime::StartupError& e) {
    spdlog::error("startup failed reason=\"{}\"", e.what());
    return kExitStartup;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fulcrum: a Layer 4 TCP load balancer", "fulcrum"};
  app.set_version_flag("-V,--version", std::string("fulcrum ") + FULCRUM_VERSION);
  app.require_subcommand(1);

  std::string run_config;
  std::string run_log_level;
  CLI::App* run = app.add_subcommand("run", "Run Fulcrum on a config file");
  run->add_option("-c,--config", run_config, "Config file (TOML)")->required();
  run->add_option("--log-level", run_log_level, "Override global.log_level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  std::string check_config;
  CLI::App* check = app.add_subcommand("check", "Validate a config file and summarise it");
  check->add_option("-c,--config", check_config, "Config file (TOML)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  if (*check) {
    return checkCommand(check_config);
  }
  return runCommand(run_config, run_log_level);
}
