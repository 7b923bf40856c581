// TCP loads: new connections per second with a tiny exchange, and many idle connections.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
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

enum class SlotState { Idle, Connecting, Reading };

struct Slot {
  int fd = -1;
  SlotState state = SlotState::Idle;
  uint64_t started_ns = 0;
  size_t received = 0;
};

int openSocket(const sockaddr_storage& addr) {
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// One thread of tcp-rate: `concurrency` slots, each looping connect -> send the request ->
// read until the peer closes -> close. The latency of one exchange runs from connect() to
// the end-of-stream. The peer closes first, so the client side leaves no TIME_WAIT behind
// and the ephemeral port range is not the limit.
class RateLoop {
 public:
  RateLoop(const Options& options, const sockaddr_storage& addr, socklen_t len)
      : options_(options), addr_(addr), len_(len), slots_(options.concurrency),
        request_(options.payload, 'r') {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  }
  ~RateLoop() { ::close(epfd_); }

  Result run() {
    const uint64_t end = nowNs() + static_cast<uint64_t>(options_.seconds * 1e9);
    for (size_t i = 0; i < slots_.size(); ++i) {
      startSlot(i);
    }

    std::vector<epoll_event> events(256);
    char buf[4096];
    while (nowNs() < end) {
      const int n = ::epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), 50);
      for (int e = 0; e < n; ++e) {
        onEvent(events[e].data.u32, events[e].events, buf, sizeof(buf));
      }
      // Slots that failed restart here, not inside the failure: a refused target would
      // otherwise recurse connect -> fail -> connect without bound.
      std::vector<size_t> again;
      again.swap(restart_);
      for (const size_t i : again) {
        startSlot(i);
      }
    }

    for (auto& slot : slots_) {
      if (slot.fd >= 0) {
        ::close(slot.fd);
      }
    }
    return result_;
  }

 private:
  void startSlot(size_t i) {
    Slot& slot = slots_[i];
    slot.fd = openSocket(addr_);
    slot.started_ns = nowNs();
    slot.received = 0;
    slot.state = SlotState::Connecting;

    const int rc = ::connect(slot.fd, reinterpret_cast<const sockaddr*>(&addr_), len_);
    if (rc != 0 && errno != EINPROGRESS) {
      failSlot(i);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u32 = static_cast<uint32_t>(i);
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, slot.fd, &ev);
  }

  void failSlot(size_t i) {
    ++result_.errors;
    ::close(slots_[i].fd);
    slots_[i].fd = -1;
    slots_[i].state = SlotState::Idle;
    restart_.push_back(i);
  }

  void onEvent(uint32_t i, uint32_t events, char* buf, size_t cap) {
    Slot& slot = slots_[i];
    if (slot.state == SlotState::Connecting) {
      // Writable after connect: the request fits any socket buffer, so one send does it.
      if ((events & EPOLLERR) ||
          ::send(slot.fd, request_.data(), request_.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(request_.size())) {
        failSlot(i);
        return;
      }
      slot.state = SlotState::Reading;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = i;
      ::epoll_ctl(epfd_, EPOLL_CTL_MOD, slot.fd, &ev);
      return;
    }

    for (;;) {
      const ssize_t n = ::read(slot.fd, buf, cap);
      if (n > 0) {
        slot.received += static_cast<size_t>(n);
        continue;
      }
      if (n == 0) {
        break;
      }
      if (errno == EAGAIN) {
        return;
      }
      failSlot(i);
      return;
    }

    // End of stream: a complete exchange only if the whole echo came back.
    if (slot.received < request_.size()) {
      failSlot(i);
      return;
    }
    result_.latency.record(nowNs() - slot.started_ns);
    ++result_.ops;
    ::close(slot.fd);
    slot.fd = -1;
    startSlot(i);
  }

  const Options& options_;
  sockaddr_storage addr_;
  socklen_t len_;
  std::vector<Slot> slots_;
  std::string request_;
  std::vector<size_t> restart_;
  Result result_;
  int epfd_;
};

}  // namespace

Result runTcpRate(const Options& options) {
  socklen_t len = 0;
  const sockaddr_storage addr = parseAddress(options.target, len);

  std::vector<Result> results(options.threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < options.threads; ++t) {
    threads.emplace_back([&, t] {
      Options mine = options;
      mine.concurrency = options.concurrency / options.threads +
                         (t < options.concurrency % options.threads ? 1 : 0);
      if (mine.concurrency > 0) {
        RateLoop loop(mine, addr, len);
        results[t] = loop.run();
      }
    });
  }
  Result total;
  for (int t = 0; t < options.threads; ++t) {
    threads[t].join();
    total.merge(results[t]);
  }
  return total;
}

int runTcpIdle(const Options& options) {
  socklen_t len = 0;
  const sockaddr_storage addr = parseAddress(options.target, len);
  const uint64_t deadline = nowNs() + static_cast<uint64_t>(options.seconds * 1e9);
  const char hello[16] = "idle-connection";

  // Open in waves of `concurrency` so the proxy's accept queue is never the thing measured;
  // each connection is proven end to end by one echoed message before it counts.
  std::vector<int> open;
  open.reserve(options.connections);
  uint64_t errors = 0;
  const int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  while (static_cast<int>(open.size()) < options.connections && nowNs() < deadline) {
    const int wave = std::min(options.concurrency,
                              options.connections - static_cast<int>(open.size()));
    std::vector<int> fds;
    for (int i = 0; i < wave; ++i) {
      const int fd = openSocket(addr);
      const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len);
      if (rc != 0 && errno != EINPROGRESS) {
        ++errors;
        ::close(fd);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLOUT;
      ev.data.u32 = static_cast<uint32_t>(fds.size());
      ::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
      fds.push_back(fd);
    }

    std::vector<int> got(fds.size(), -1);  // -1 connecting, then bytes echoed so far.
    size_t pending = fds.size();
    std::vector<epoll_event> events(256);
    while (pending > 0 && nowNs() < deadline) {
      const int n = ::epoll_wait(epfd, events.data(), static_cast<int>(events.size()), 100);
      for (int e = 0; e < n; ++e) {
        const uint32_t i = events[e].data.u32;
        const int fd = fds[i];
        if (got[i] < 0) {
          if ((events[e].events & EPOLLERR) ||
              ::send(fd, hello, sizeof(hello), MSG_NOSIGNAL) != sizeof(hello)) {
            ++errors;
            ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
            ::close(fd);
            fds[i] = -1;
            --pending;
            continue;
          }
          got[i] = 0;
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.u32 = i;
          ::epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
          continue;
        }
        char buf[64];
        const ssize_t r = ::read(fd, buf, sizeof(buf));
        if (r > 0) {
          got[i] += static_cast<int>(r);
          if (got[i] < static_cast<int>(sizeof(hello))) {
            continue;
          }
          ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
          open.push_back(fd);
        } else if (r < 0 && errno == EAGAIN) {
          continue;
        } else {
          ++errors;
          ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
          ::close(fd);
        }
        fds[i] = -1;
        --pending;
      }
    }
    for (const int fd : fds) {
      if (fd >= 0) {
        ++errors;
        ::close(fd);
      }
    }
  }
  ::close(epfd);

  fmt::print("ready connections={} errors={}\n", open.size(), errors);
  std::fflush(stdout);

  // Hold until the caller closes our stdin (it has measured) or the time is up.
  const uint64_t now = nowNs();
  const int hold_ms = now < deadline ? static_cast<int>((deadline - now) / 1000000) : 0;
  pollfd in{0, POLLIN, 0};
  ::poll(&in, 1, hold_ms);

  for (const int fd : open) {
    ::close(fd);
  }
  return static_cast<int>(open.size()) == options.connections ? 0 : 1;
}

}  // namespace fulcrum::bench
