// fulcrum-failover-driver: the failover bench's open-loop TCP request/response load, in C++
// so that its timing holds on a busy machine where an interpreter's event loop falls behind.
//
//   fulcrum-failover-driver --target HOST:PORT --rate N --clients K --timeout-ms T
//                           --start-ns S --end-ns E --proto demo|redis
//
// Request i is due at S + i/N (CLOCK_MONOTONIC ns, the clock the bench and Fulcrum's
// failover record use) until E, whether or not earlier ones answered. Each opens a new
// connection from 127.0.1.(1 + i mod K), so hashing pickers keep a client on one backend,
// sends one request and reads one answer naming the backend:
//   demo:  "req\n"                  -> "NAME req\n"
//   redis: "GET fulcrum:whoami\r\n" -> "$L\r\nNAME\r\n"
// When every request has answered or timed out, stdout gets one line per request,
//   S <start_ns> <end_ns> <client> <outcome> <backend or ->
// with outcome ok, refused, reset, timeout, closed, protocol or other, and one line per
// request with how late it was sent: L <lag_ns>. Exit 0, or 2 with a message on bad
// arguments. One thread, epoll and a timerfd; no allocation per request beyond the
// connection's small buffer.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

enum class Proto { Demo, Redis };

struct Options {
  sockaddr_in target{};
  uint64_t rate = 0;
  uint32_t clients = 1;
  uint64_t timeout_ns = 0;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  Proto proto = Proto::Demo;
};

struct Sample {
  uint64_t start_ns;
  uint64_t end_ns;
  uint32_t client;
  const char* outcome;
  std::string backend;
};

struct Conn {
  int fd = -1;
  uint32_t client = 0;
  uint64_t start_ns = 0;
  bool connected = false;
  std::string in;  // The answer so far; a few dozen bytes.
};

constexpr size_t kMaxAnswerBytes = 4096;  // Anything longer is not an answer we sent for.

uint64_t nowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "fulcrum-failover-driver: %s\n", why);
  std::exit(2);
}

Options parseArgs(int argc, char** argv) {
  Options o;
  bool have_target = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view key = argv[i];
    const char* value = argv[i + 1];
    if (key == "--target") {
      const std::string text = value;
      const size_t colon = text.rfind(':');
      if (colon == std::string::npos) {
        usage("--target must be IPV4:PORT");
      }
      o.target.sin_family = AF_INET;
      o.target.sin_port = htons(static_cast<uint16_t>(std::atoi(text.c_str() + colon + 1)));
      if (::inet_pton(AF_INET, text.substr(0, colon).c_str(), &o.target.sin_addr) != 1) {
        usage("--target must be IPV4:PORT");
      }
      have_target = true;
    } else if (key == "--rate") {
      o.rate = std::strtoull(value, nullptr, 10);
    } else if (key == "--clients") {
      o.clients = static_cast<uint32_t>(std::strtoul(value, nullptr, 10));
    } else if (key == "--timeout-ms") {
      o.timeout_ns = std::strtoull(value, nullptr, 10) * 1'000'000ULL;
    } else if (key == "--start-ns") {
      o.start_ns = std::strtoull(value, nullptr, 10);
    } else if (key == "--end-ns") {
      o.end_ns = std::strtoull(value, nullptr, 10);
    } else if (key == "--proto") {
      const std::string_view p = value;
      if (p != "demo" && p != "redis") {
        usage("--proto must be demo or redis");
      }
      o.proto = p == "demo" ? Proto::Demo : Proto::Redis;
    } else {
      usage("unknown option; see the comment at the top of driver.cpp");
    }
  }
  if (!have_target || o.rate == 0 || o.clients == 0 || o.clients > 250 || o.timeout_ns == 0 ||
      o.end_ns <= o.start_ns) {
    usage("need --target, --rate > 0, --clients 1..250, --timeout-ms > 0, --start-ns < --end-ns");
  }
  return o;
}

const char* outcomeOf(int error) {
  switch (error) {
    case ECONNREFUSED:
      return "refused";
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
      return "reset";
    default:
      return "other";
  }
}

class Driver {
 public:
  explicit Driver(const Options& options) : o_(options) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    timer_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epoll_ < 0 || timer_ < 0) {
      usage("cannot create epoll or timerfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // nullptr marks the timer.
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, timer_, &ev);
    request_ = o_.proto == Proto::Demo ? "req\n" : "GET fulcrum:whoami\r\n";
    const uint64_t total = (o_.end_ns - o_.start_ns) * o_.rate / 1'000'000'000ULL + 1;
    samples_.reserve(total);
    lags_.reserve(total);
  }

  void run() {
    const uint64_t period = 1'000'000'000ULL / o_.rate;
    uint64_t next = 0;
    epoll_event events[64];
    while (true) {
      const uint64_t now = nowNs();
      for (uint64_t due = o_.start_ns + next * period; due <= now && due < o_.end_ns;
           due = o_.start_ns + next * period) {
        lags_.push_back(now - due);
        launch(static_cast<uint32_t>(next % o_.clients));
        ++next;
      }
      expire(now);
      const uint64_t due = o_.start_ns + next * period;
      if (due >= o_.end_ns && open_.empty()) {
        return;
      }
      arm(due < o_.end_ns ? due : 0);
      const int n = ::epoll_wait(epoll_, events, 64, -1);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.ptr == nullptr) {
          uint64_t ticks = 0;
          [[maybe_unused]] ssize_t r = ::read(timer_, &ticks, sizeof(ticks));
          continue;
        }
        onEvent(static_cast<Conn*>(events[i].data.ptr), events[i].events);
      }
    }
  }

  void print() const {
    for (const Sample& s : samples_) {
      std::printf("S %llu %llu %u %s %s\n", static_cast<unsigned long long>(s.start_ns),
                  static_cast<unsigned long long>(s.end_ns), s.client, s.outcome,
                  s.backend.empty() ? "-" : s.backend.c_str());
    }
    for (const uint64_t lag : lags_) {
      std::printf("L %llu\n", static_cast<unsigned long long>(lag));
    }
  }

 private:
  // Wakes at the next due request or the earliest deadline, whichever is first.
  void arm(uint64_t next_due) {
    uint64_t at = next_due;
    for (const auto& c : open_) {
      const uint64_t deadline = c->start_ns + o_.timeout_ns;
      if (at == 0 || deadline < at) {
        at = deadline;
      }
    }
    if (at == 0) {
      return;
    }
    itimerspec spec{};
    spec.it_value.tv_sec = static_cast<time_t>(at / 1'000'000'000ULL);
    spec.it_value.tv_nsec = static_cast<long>(at % 1'000'000'000ULL);
    ::timerfd_settime(timer_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void launch(uint32_t client) {
    auto conn = std::make_unique<Conn>();
    conn->client = client;
    conn->start_ns = nowNs();
    conn->fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (conn->fd < 0) {
      samples_.push_back({conn->start_ns, nowNs(), client, "other", {}});
      return;
    }
    const int one = 1;
    ::setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl((127U << 24) | (1U << 8) | (1U + client));
    if (::bind(conn->fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
        (::connect(conn->fd, reinterpret_cast<const sockaddr*>(&o_.target), sizeof(o_.target)) !=
             0 &&
         errno != EINPROGRESS)) {
      const int error = errno;
      samples_.push_back({conn->start_ns, nowNs(), client, outcomeOf(error), {}});
      ::close(conn->fd);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = conn.get();
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, conn->fd, &ev);
    open_.push_back(std::move(conn));
  }

  void onEvent(Conn* conn, uint32_t events) {
    if (!conn->connected) {
      int error = 0;
      socklen_t len = sizeof(error);
      ::getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0) {
        finish(conn, outcomeOf(error), {});
        return;
      }
      if ((events & EPOLLOUT) == 0) {
        return;
      }
      conn->connected = true;
      if (::send(conn->fd, request_.data(), request_.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(request_.size())) {
        finish(conn, outcomeOf(errno), {});
        return;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.ptr = conn;
      ::epoll_ctl(epoll_, EPOLL_CTL_MOD, conn->fd, &ev);
      return;
    }

    char buf[512];
    while (true) {
      const ssize_t n = ::recv(conn->fd, buf, sizeof(buf), 0);
      if (n > 0) {
        conn->in.append(buf, static_cast<size_t>(n));
        if (conn->in.size() > kMaxAnswerBytes) {
          finish(conn, "protocol", {});
          return;
        }
        continue;
      }
      if (n == 0) {
        break;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      if (errno == EINTR) {
        continue;
      }
      finish(conn, outcomeOf(errno), {});
      return;
    }

    std::string name;
    const int verdict = parse(conn->in, name);
    if (verdict > 0) {
      finish(conn, "ok", name);
    } else if (verdict < 0) {
      finish(conn, "protocol", {});
    } else if ((events & (EPOLLRDHUP | EPOLLHUP)) != 0) {
      finish(conn, "closed", {});
    }
  }

  // 1: a complete answer (name set); 0: not yet; -1: not an answer to our request.
  int parse(const std::string& in, std::string& name) const {
    if (o_.proto == Proto::Demo) {
      const size_t nl = in.find('\n');
      if (nl == std::string::npos) {
        return 0;
      }
      const size_t space = in.find(' ');
      if (space == std::string::npos || space > nl || in.compare(space, nl - space, " req") != 0) {
        return -1;
      }
      name = in.substr(0, space);
      return 1;
    }
    if (!in.empty() && in[0] != '$') {
      return -1;
    }
    const size_t first = in.find("\r\n");
    if (first == std::string::npos) {
      return 0;
    }
    const size_t second = in.find("\r\n", first + 2);
    if (second == std::string::npos) {
      return 0;
    }
    name = in.substr(first + 2, second - first - 2);
    return 1;
  }

  void finish(Conn* conn, const char* outcome, std::string backend) {
    samples_.push_back({conn->start_ns, nowNs(), conn->client, outcome, std::move(backend)});
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, conn->fd, nullptr);
    ::close(conn->fd);
    conn->fd = -1;
  }

  // Times out overdue requests (closed with a reset, so nothing lingers) and drops the
  // finished ones. An overdue request is read once more first: if this process was not
  // scheduled for a while, its answer may be waiting in the socket, and it is not the
  // balancer's fault that nobody read it.
  void expire(uint64_t now) {
    size_t kept = 0;
    for (auto& c : open_) {
      if (c->fd >= 0 && now >= c->start_ns + o_.timeout_ns && c->connected) {
        onEvent(c.get(), 0);
      }
      if (c->fd >= 0 && now >= c->start_ns + o_.timeout_ns) {
        const linger abort{1, 0};
        ::setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
        finish(c.get(), "timeout", {});
      }
      if (c->fd >= 0) {
        open_[kept++] = std::move(c);
      }
    }
    open_.resize(kept);
  }

  Options o_;
  int epoll_ = -1;
  int timer_ = -1;
  std::string request_;
  std::vector<std::unique_ptr<Conn>> open_;
  std::vector<Sample> samples_;
  std::vector<uint64_t> lags_;
};

}  // namespace

int main(int argc, char** argv) {
  const Options options = parseArgs(argc, argv);
  Driver driver(options);
  driver.run();
  driver.print();
  return 0;
}
