// udp_flood: sends small UDP datagrams to one address as fast as one core can, for a bounded
// time, spreading them over many source ports (one socket each) so a hashing balancer sees
// many flows. Used by bench/xdp_pps.py; prints "sent=N seconds=S".
//
//   udp_flood HOST PORT SECONDS [FLOWS] [PAYLOAD_BYTES]
//
// sendmmsg in batches of 64; a full socket buffer (EAGAIN/ENOBUFS) skips to the next socket.
// Stops by itself after SECONDS (at most 60).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: udp_flood HOST PORT SECONDS [FLOWS] [PAYLOAD_BYTES]\n");
    return 2;
  }
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
    std::fprintf(stderr, "udp_flood: %s is not an IPv4 address\n", argv[1]);
    return 2;
  }
  const double seconds = std::clamp(std::atof(argv[3]), 0.1, 60.0);
  const int flows = argc > 4 ? std::clamp(std::atoi(argv[4]), 1, 1024) : 64;
  const size_t payload = argc > 5 ? static_cast<size_t>(std::clamp(std::atoi(argv[5]), 1, 1400))
                                  : 18;

  std::vector<int> fds;
  for (int i = 0; i < flows; ++i) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) {
      std::perror("udp_flood: socket/connect");
      return 1;
    }
    fds.push_back(fd);
  }

  constexpr int kBatch = 64;
  std::vector<char> data(payload, 'x');
  iovec iov{data.data(), data.size()};
  std::vector<mmsghdr> msgs(kBatch);
  for (mmsghdr& m : msgs) {
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
  }

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  unsigned long long sent = 0;
  size_t next = 0;
  while (Clock::now() < end) {
    for (int round = 0; round < 16; ++round) {
      const int n = sendmmsg(fds[next], msgs.data(), kBatch, 0);
      if (n > 0) {
        sent += static_cast<unsigned long long>(n);
      }
      next = (next + 1) % fds.size();
    }
  }
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("sent=%llu seconds=%.3f\n", sent, took);
  for (int fd : fds) {
    close(fd);
  }
  return 0;
}
