// The echo backends every peer is measured against, so the backend side is the same code
// for direct, Fulcrum, HAProxy and nginx. One epoll loop per thread; the threads share each
// port through SO_REUSEPORT.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "loadgen.hpp"

namespace fulcrum::bench {

namespace {

constexpr int kBatch = 32;
constexpr int kAcceptsPerWakeup = 64;

// What an epoll entry is: the kind in the high half of data.u64, the descriptor in the low.
enum Kind : uint64_t { EchoListen, CloseListen, UdpEcho, EchoConn, CloseConn };

uint64_t tag(Kind kind, int fd) {
  return (static_cast<uint64_t>(kind) << 32) | static_cast<uint32_t>(fd);
}

int bindSocket(const sockaddr_storage& addr, socklen_t len, int type) {
  const int fd = ::socket(addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::runtime_error(fmt::format("bind: {}", std::strerror(error)));
  }
  if (type == SOCK_STREAM && ::listen(fd, 4096) != 0) {
    throw std::runtime_error(fmt::format("listen: {}", std::strerror(errno)));
  }
  return fd;
}

int portOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return ss.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                                 : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

sockaddr_storage withPort(sockaddr_storage addr, int port) {
  if (addr.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(static_cast<uint16_t>(port));
  } else {
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(static_cast<uint16_t>(port));
  }
  return addr;
}

class ServeLoop {
 public:
  ServeLoop(int echo_fd, int close_fd, int udp_fd) : udp_fd_(udp_fd) {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    add(echo_fd, EchoListen);
    add(close_fd, CloseListen);
    add(udp_fd, UdpEcho);
    for (int i = 0; i < kBatch; ++i) {
      iov_[i] = {bufs_ + i * 2048, 2048};
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      msgs_[i].msg_hdr.msg_name = &peers_[i];
    }
  }
  ~ServeLoop() { ::close(epfd_); }

  void run(const std::atomic<bool>& stop) {
    std::vector<epoll_event> events(256);
    while (!stop.load(std::memory_order_relaxed)) {
      const int n = ::epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), 100);
      for (int e = 0; e < n; ++e) {
        const auto kind = static_cast<Kind>(events[e].data.u64 >> 32);
        const int fd = static_cast<int>(events[e].data.u64 & 0xffffffffu);
        onEvent(kind, fd);
      }
    }
  }

 private:
  void add(int fd, Kind kind) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag(kind, fd);
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void onEvent(Kind kind, int fd) {
    switch (kind) {
      case EchoListen:
      case CloseListen:
        acceptSome(fd, kind == EchoListen ? EchoConn : CloseConn);
        return;
      case UdpEcho:
        echoDatagrams();
        return;
      case EchoConn:
      case CloseConn:
        echoStream(fd, kind == CloseConn);
        return;
    }
  }

  void acceptSome(int listen_fd, Kind conn_kind) {
    for (int i = 0; i < kAcceptsPerWakeup; ++i) {
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        return;
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      add(fd, conn_kind);
    }
  }

  // Echo mode writes back what it reads; close mode answers the first read and closes, the
  // server closing first as an HTTP server under `Connection: close` does.
  void echoStream(int fd, bool close_after) {
    const ssize_t n = ::read(fd, stream_buf_, sizeof(stream_buf_));
    if (n < 0 && errno == EAGAIN) {
      return;
    }
    if (n > 0) {
      // Replies are small and the peer reads them, so a short write means a broken peer.
      ::send(fd, stream_buf_, static_cast<size_t>(n), MSG_NOSIGNAL);
      if (!close_after) {
        return;
      }
    }
    ::close(fd);
  }

  void echoDatagrams() {
    for (int round = 0; round < 4; ++round) {
      for (int i = 0; i < kBatch; ++i) {
        msgs_[i].msg_hdr.msg_namelen = sizeof(peers_[i]);
        iov_[i].iov_len = 2048;
      }
      const int got = ::recvmmsg(udp_fd_, msgs_, kBatch, MSG_DONTWAIT, nullptr);
      if (got <= 0) {
        return;
      }
      for (int i = 0; i < got; ++i) {
        iov_[i].iov_len = msgs_[i].msg_len;
      }
      ::sendmmsg(udp_fd_, msgs_, static_cast<unsigned>(got), 0);
      if (got < kBatch) {
        return;
      }
    }
  }

  int epfd_;
  int udp_fd_;
  char stream_buf_[65536];
  uint8_t bufs_[2048 * kBatch];
  iovec iov_[kBatch];
  mmsghdr msgs_[kBatch]{};
  sockaddr_storage peers_[kBatch];
};

}  // namespace

int runServe(const std::string& host, const Options& options) {
  socklen_t len = 0;
  const sockaddr_storage any = parseAddress(host + ":0", len);

  std::vector<int> fds;
  const int echo0 = bindSocket(any, len, SOCK_STREAM);
  const int echo_port = portOf(echo0);
  const int close0 = bindSocket(any, len, SOCK_STREAM);
  const int close_port = portOf(close0);
  // UDP on the same number as the echo port would be tidier but may be taken; any port.
  const int udp0 = bindSocket(any, len, SOCK_DGRAM);
  const int udp_port = portOf(udp0);
  const int rcvbuf = 4 << 20;
  ::setsockopt(udp0, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < options.threads; ++t) {
    int e = echo0;
    int c = close0;
    int u = udp0;
    if (t > 0) {
      e = bindSocket(withPort(any, echo_port), len, SOCK_STREAM);
      c = bindSocket(withPort(any, close_port), len, SOCK_STREAM);
      u = bindSocket(withPort(any, udp_port), len, SOCK_DGRAM);
      ::setsockopt(u, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    threads.emplace_back([e, c, u, &stop] {
      auto loop = std::make_unique<ServeLoop>(e, c, u);
      loop->run(stop);
    });
  }

  fmt::print("listening tcp_echo={} tcp_close={} udp_echo={}\n", echo_port, close_port,
             udp_port);
  std::fflush(stdout);

  // Serve until the caller closes our stdin or the time is up.
  pollfd in{0, POLLIN, 0};
  ::poll(&in, 1, static_cast<int>(options.seconds * 1000));
  stop.store(true);
  for (auto& t : threads) {
    t.join();
  }
  return 0;
}

}  // namespace fulcrum::bench
