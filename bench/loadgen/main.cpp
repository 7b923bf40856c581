// Command line of fulcrum-loadgen; see loadgen.hpp for the modes.

#include <netinet/in.h>
#include <arpa/inet.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "loadgen.hpp"

namespace fulcrum::bench {

uint64_t nowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

sockaddr_storage parseAddress(const std::string& text, socklen_t& len) {
  sockaddr_storage ss{};
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    throw std::runtime_error(fmt::format("address '{}' has no port; use host:port", text));
  }
  std::string host = text.substr(0, colon);
  const int port = std::stoi(text.substr(colon + 1));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }

  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
    return ss;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
    return ss;
  }
  throw std::runtime_error(
      fmt::format("address '{}' is not a numeric IPv4 or [IPv6] host with a port", text));
}

void printResult(const char* mode, double seconds, const Result& result) {
  const auto us = [&](double q) { return static_cast<double>(result.latency.quantile(q)) / 1e3; };
  fmt::print("result mode={} seconds={:.2f} ops={} rate={:.1f} p50_us={:.1f} p99_us={:.1f} "
             "p999_us={:.1f} errors={} lost={} sent={}\n",
             mode, seconds, result.ops, static_cast<double>(result.ops) / seconds, us(0.50),
             us(0.99), us(0.999), result.errors, result.lost, result.sent);
  std::fflush(stdout);
}

}  // namespace fulcrum::bench

int main(int argc, char** argv) {
  using namespace fulcrum::bench;

  CLI::App app{"fulcrum-loadgen: connection-rate, idle-connection and UDP load, and echo "
               "backends to aim it at"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();
  app.footer("serve and tcp-idle run until --seconds pass or their standard input closes "
             "(the driving script closes it when it has measured): keep it open when running "
             "them by hand, e.g. `sleep 60 | fulcrum-loadgen serve --seconds 60`.\n"
             "Exit codes: 0 measured, 1 nothing completed, 2 error.");
  Options options;
  std::string host = "127.0.0.1";

  const auto add_common = [&](CLI::App* sub, bool target) {
    if (target) {
      sub->add_option("--target", options.target, "host:port to load")->required();
    }
    sub->add_option("--seconds", options.seconds,
                    target ? "measured duration" : "how long to serve (or until stdin closes)")
        ->check(CLI::Range(0.1, 3600.0));
    sub->add_option("--threads", options.threads, target ? "load threads" : "serving threads")
        ->check(CLI::Range(1, 64));
  };

  auto* rate = app.add_subcommand("tcp-rate", "new connections/s: connect, 32-byte "
                                  "exchange, peer closes");
  add_common(rate, true);
  rate->add_option("--concurrency", options.concurrency, "connections in flight")
      ->check(CLI::Range(1, 10000));
  rate->add_option("--payload", options.payload, "request bytes")->check(CLI::Range(16, 4096));

  auto* idle = app.add_subcommand("tcp-idle", "open and hold idle connections");
  add_common(idle, true);
  idle->add_option("--connections", options.connections, "connections to hold")
      ->check(CLI::Range(1, 19000));
  idle->add_option("--concurrency", options.concurrency, "connects in flight while opening")
      ->check(CLI::Range(1, 10000));

  auto* rr = app.add_subcommand("udp-rr", "UDP request/response: one datagram in flight per "
                                "socket");
  add_common(rr, true);
  rr->add_option("--concurrency", options.concurrency, "sockets")->check(CLI::Range(1, 4096));
  rr->add_option("--payload", options.payload, "datagram bytes")->check(CLI::Range(16, 1400));

  auto* flood = app.add_subcommand("udp-flood", "UDP flood: batches of datagrams, replies "
                                   "counted");
  add_common(flood, true);
  flood->add_option("--concurrency", options.concurrency, "sockets")->check(CLI::Range(1, 256));
  flood->add_option("--payload", options.payload, "datagram bytes")->check(CLI::Range(16, 1400));
  flood->add_option("--window", options.window, "datagrams in flight per socket")
      ->check(CLI::Range(1, 4096));

  auto* serve = app.add_subcommand("serve", "echo backends: tcp echo, tcp answer-and-close, "
                                   "udp echo");
  add_common(serve, false);
  serve->add_option("--host", host, "address to bind");

  CLI11_PARSE(app, argc, argv);

  try {
    if (*serve) {
      return runServe(host, options);
    }
    if (*idle) {
      return runTcpIdle(options);
    }
    Result result;
    const char* mode = "";
    if (*rate) {
      mode = "tcp-rate";
      result = runTcpRate(options);
    } else if (*rr) {
      mode = "udp-rr";
      result = runUdpRequestResponse(options);
    } else {
      mode = "udp-flood";
      result = runUdpFlood(options);
    }
    printResult(mode, options.seconds, result);
    if (result.ops == 0) {
      // Nothing answered: a wrong --target or a dead backend, not a measurement.
      fmt::print(stderr, "fulcrum-loadgen: {}: no operation completed against {} ({} errors, "
                 "{} lost); check --target\n", mode, options.target, result.errors, result.lost);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "fulcrum-loadgen: {}\n", e.what());
    return 2;
  }
}
