#pragma once

// Pre-allocated headers and buffers for recvmmsg/sendmmsg, one set per UDP listener per
// worker. A batch is filled by one receive and drained by the sends that follow within the
// same callback, so the same buffers serve client datagrams and backend replies alike and
// nothing is allocated per datagram.
//
// Each buffer holds 65,536 bytes, more than the largest UDP payload (65,507 bytes over IPv4,
// 65,527 over IPv6 without jumbograms), so a datagram never arrives truncated; MSG_TRUNC is
// still checked and counted, never forwarded in part. Pages of a buffer are only touched by
// datagrams that reach them, so small datagrams keep the resident size small.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace fulcrum::udp {

class DatagramBatch {
 public:
  static constexpr unsigned kCapacity = 32;
  static constexpr size_t kBufferBytes = 65536;
  // Room for one IP_PKTINFO or IPV6_PKTINFO control message, the only one we ask for.
  static constexpr size_t kControlBytes = CMSG_SPACE(sizeof(in6_pktinfo));

  DatagramBatch();
  DatagramBatch(const DatagramBatch&) = delete;
  DatagramBatch& operator=(const DatagramBatch&) = delete;

  // Resets the receive headers for recvmmsg: buffer lengths, name lengths and, with
  // want_control, the control buffers (which the kernel shrinks on every call).
  mmsghdr* prepareReceive(bool want_control);

  const mmsghdr& received(unsigned i) const { return in_[i]; }
  const sockaddr* source(unsigned i) const {
    return reinterpret_cast<const sockaddr*>(&names_[i]);
  }
  uint8_t* data(unsigned i) { return buffers_.get() + i * kBufferBytes; }

  // Send headers, one per message; iov(i) gives two iovecs for message i (header, payload).
  mmsghdr* out() { return out_; }
  iovec* iov(unsigned i) { return out_iov_[i]; }

 private:
  std::unique_ptr<uint8_t[]> buffers_;
  mmsghdr in_[kCapacity];
  iovec in_iov_[kCapacity];
  sockaddr_storage names_[kCapacity];
  alignas(cmsghdr) uint8_t control_[kCapacity][kControlBytes];
  mmsghdr out_[kCapacity];
  iovec out_iov_[kCapacity][2];
};

// The address a datagram was sent to, from its IP_PKTINFO / IPV6_PKTINFO control message.
struct LocalAddress {
  sockaddr_storage address{};  // Family AF_UNSPEC when unknown.
  int ifindex = 0;
};

// Reads the destination address of message i (received on a wildcard socket bound to port
// port_be, network byte order). Leaves out unchanged when the message carries none.
void readLocalAddress(const mmsghdr& message, uint16_t port_be, LocalAddress& out);

// Writes the control message that makes a reply leave from local (IP_PKTINFO or
// IPV6_PKTINFO with the source address) into buffer, which holds kControlBytes. Returns
// its length, 0 when local is unknown.
size_t buildReplyControl(const LocalAddress& local, uint8_t* buffer);

}  // namespace fulcrum::udp
