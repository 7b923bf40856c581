// UDP loads: request/response (one datagram in flight per socket) and a windowed flood
// (many in flight per socket, sent and received in batches). Every datagram carries its
// send time, so each echoed datagram gives one latency sample.

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "loadgen.hpp"

namespace fulcrum::bench {

namespace {

// A request unanswered for this long counts as lost and the socket sends a new one.
constexpr uint64_t kRequestTimeoutNs = 200'000'000;

// A flood socket that heard nothing for this long forgets its in-flight datagrams as lost,
// so drops cannot shrink its window to nothing.
constexpr uint64_t kWindowResetNs = 20'000'000;

constexpr int kBatch = 32;

struct Header {
  uint64_t seq;      // Per-socket sequence, to ignore late answers to retired requests.
  uint64_t sent_ns;  // nowNs() at send.
};

int connectedSocket(const sockaddr_storage& addr, socklen_t len) {
  const int fd = ::socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::runtime_error(fmt::format("connect {}: {}", "udp", std::strerror(error)));
  }
  return fd;
}

struct RrSocket {
  int fd = -1;
  uint64_t seq = 0;
  uint64_t sent_ns = 0;
};

Result rrThread(const Options& options, const sockaddr_storage& addr, socklen_t len) {
  Result result;
  const int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<RrSocket> sockets(options.concurrency);
  std::vector<uint8_t> out(options.payload, 'u');
  uint8_t in[2048];

  const auto send = [&](RrSocket& s) {
    Header h{++s.seq, nowNs()};
    std::memcpy(out.data(), &h, sizeof(h));
    s.sent_ns = h.sent_ns;
    if (::send(s.fd, out.data(), out.size(), 0) < 0) {
      ++result.errors;
    }
  };

  for (size_t i = 0; i < sockets.size(); ++i) {
    sockets[i].fd = connectedSocket(addr, len);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    ::epoll_ctl(epfd, EPOLL_CTL_ADD, sockets[i].fd, &ev);
  }
  const uint64_t end = nowNs() + static_cast<uint64_t>(options.seconds * 1e9);
  for (auto& s : sockets) {
    send(s);
  }

  std::vector<epoll_event> events(256);
  uint64_t next_scan = nowNs() + kRequestTimeoutNs / 4;
  while (nowNs() < end) {
    const int n = ::epoll_wait(epfd, events.data(), static_cast<int>(events.size()), 10);
    for (int e = 0; e < n; ++e) {
      RrSocket& s = sockets[events[e].data.u32];
      for (;;) {
        const ssize_t r = ::recv(s.fd, in, sizeof(in), 0);
        if (r < 0) {
          // EAGAIN, or ECONNREFUSED from an ICMP error: the timeout scan resends.
          break;
        }
        Header h{};
        if (static_cast<size_t>(r) != out.size()) {
          ++result.errors;
          continue;
        }
        std::memcpy(&h, in, sizeof(h));
        if (h.seq != s.seq) {
          continue;
        }
        const uint64_t now = nowNs();
        result.latency.record(now - h.sent_ns);
        ++result.ops;
        if (now < end) {
          send(s);
        }
      }
    }

    const uint64_t now = nowNs();
    if (now >= next_scan) {
      next_scan = now + kRequestTimeoutNs / 4;
      for (auto& s : sockets) {
        if (now - s.sent_ns > kRequestTimeoutNs) {
          ++result.lost;
          send(s);
        }
      }
    }
  }

  for (auto& s : sockets) {
    ::close(s.fd);
  }
  ::close(epfd);
  return result;
}

struct FloodSocket {
  int fd = -1;
  int in_flight = 0;
  uint64_t last_heard_ns = 0;
};

Result floodThread(const Options& options, const sockaddr_storage& addr, socklen_t len) {
  Result result;
  std::vector<FloodSocket> sockets(options.concurrency);
  for (auto& s : sockets) {
    s.fd = connectedSocket(addr, len);
    // Room in the kernel for the whole window in both directions.
    const int bytes = options.window * (options.payload + 512) * 2;
    ::setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
    ::setsockopt(s.fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  }

  std::vector<uint8_t> out(static_cast<size_t>(options.payload) * kBatch, 'f');
  std::vector<uint8_t> in(2048 * kBatch);
  mmsghdr send_msgs[kBatch]{};
  iovec send_iov[kBatch];
  mmsghdr recv_msgs[kBatch]{};
  iovec recv_iov[kBatch];
  for (int i = 0; i < kBatch; ++i) {
    send_iov[i] = {out.data() + i * options.payload, static_cast<size_t>(options.payload)};
    send_msgs[i].msg_hdr.msg_iov = &send_iov[i];
    send_msgs[i].msg_hdr.msg_iovlen = 1;
    recv_iov[i] = {in.data() + i * 2048, 2048};
    recv_msgs[i].msg_hdr.msg_iov = &recv_iov[i];
    recv_msgs[i].msg_hdr.msg_iovlen = 1;
  }

  const uint64_t end = nowNs() + static_cast<uint64_t>(options.seconds * 1e9);
  uint64_t seq = 0;
  // A busy loop on purpose: the flood measures how many datagrams the path carries, and
  // sleeping in epoll between batches would measure our wakeups instead.
  for (uint64_t now = nowNs(); now < end; now = nowNs()) {
    for (auto& s : sockets) {
      if (s.in_flight > 0 && now - s.last_heard_ns > kWindowResetNs) {
        result.lost += static_cast<uint64_t>(s.in_flight);
        s.in_flight = 0;
      }
      const int room = std::min(kBatch, options.window - s.in_flight);
      if (room > 0) {
        for (int i = 0; i < room; ++i) {
          const Header h{++seq, now};
          std::memcpy(send_iov[i].iov_base, &h, sizeof(h));
        }
        const int sent = ::sendmmsg(s.fd, send_msgs, static_cast<unsigned>(room), 0);
        if (sent > 0) {
          if (s.in_flight == 0) {
            s.last_heard_ns = now;
          }
          s.in_flight += sent;
          result.sent += static_cast<uint64_t>(sent);
        } else if (sent < 0 && errno != EAGAIN) {
          ++result.errors;
        }
      }

      const int got = ::recvmmsg(s.fd, recv_msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (got <= 0) {
        continue;
      }
      const uint64_t heard = nowNs();
      s.last_heard_ns = heard;
      s.in_flight = std::max(0, s.in_flight - got);
      for (int i = 0; i < got; ++i) {
        if (recv_msgs[i].msg_len != static_cast<unsigned>(options.payload)) {
          ++result.errors;
          continue;
        }
        Header h{};
        std::memcpy(&h, recv_iov[i].iov_base, sizeof(h));
        result.latency.record(heard - h.sent_ns);
        ++result.ops;
      }
    }
  }

  for (auto& s : sockets) {
    ::close(s.fd);
  }
  return result;
}

template <typename Fn>
Result runThreads(const Options& options, Fn fn) {
  socklen_t len = 0;
  const sockaddr_storage addr = parseAddress(options.target, len);
  std::vector<Result> results(options.threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < options.threads; ++t) {
    threads.emplace_back([&, t] {
      Options mine = options;
      mine.concurrency = std::max(1, options.concurrency / options.threads);
      results[t] = fn(mine, addr, len);
    });
  }
  Result total;
  for (int t = 0; t < options.threads; ++t) {
    threads[t].join();
    total.merge(results[t]);
  }
  return total;
}

}  // namespace

Result runUdpRequestResponse(const Options& options) {
  return runThreads(options, rrThread);
}

Result runUdpFlood(const Options& options) {
  return runThreads(options, floodThread);
}

}  // namespace fulcrum::bench
