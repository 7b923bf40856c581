#pragma once

// fulcrum-loadgen: the load generator for what stock tools measure poorly (new connections
// per second with a tiny exchange, many idle connections, UDP request/response and flood),
// plus the echo backend those loads run against. Every mode is bounded in time and stops by
// itself; results are printed as one `result mode=... key=value ...` line on stdout.

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "histogram.hpp"

namespace fulcrum::bench {

struct Options {
  std::string target;         // host:port the load goes to.
  double seconds = 5.0;       // Measured duration (load modes) or longest hold (idle).
  int concurrency = 32;       // Connections or UDP sockets in flight at once.
  int threads = 1;            // Load threads, each with its own epoll loop.
  int connections = 1000;     // tcp-idle: connections to open and hold.
  int payload = 32;           // Request / datagram size in bytes (>= 16).
  int window = 64;            // udp-flood: datagrams in flight per socket before waiting.
};

struct Result {
  uint64_t ops = 0;           // Completed exchanges (or datagrams echoed back).
  uint64_t errors = 0;        // Failed connects, resets, short replies.
  uint64_t lost = 0;          // UDP requests that got no answer in time.
  uint64_t sent = 0;          // UDP datagrams sent (flood).
  Histogram latency;

  void merge(const Result& other) {
    ops += other.ops;
    errors += other.errors;
    lost += other.lost;
    sent += other.sent;
    latency.merge(other.latency);
  }
};

// Monotonic clock in nanoseconds.
uint64_t nowNs();

// Parses "host:port" or "[v6]:port"; throws std::runtime_error naming the bad text.
sockaddr_storage parseAddress(const std::string& text, socklen_t& len);

// Prints the result line: rate, percentiles in microseconds and counters.
void printResult(const char* mode, double seconds, const Result& result);

// The load modes; each returns the merged result of all threads.
Result runTcpRate(const Options& options);
Result runUdpRequestResponse(const Options& options);
Result runUdpFlood(const Options& options);

// Opens options.connections connections, checks each with one echo, prints
// `ready connections=N errors=E`, then holds them until stdin closes or options.seconds pass.
int runTcpIdle(const Options& options);

// Echo backends on one host: a TCP echo port (persistent), a TCP port that answers one read
// and closes, and a UDP echo port. Prints `listening tcp_echo=P tcp_close=P udp_echo=P`, then
// serves until stdin closes or options.seconds pass.
int runServe(const std::string& host, const Options& options);

}  // namespace fulcrum::bench
