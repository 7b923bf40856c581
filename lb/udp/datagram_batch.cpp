#include "udp/datagram_batch.hpp"

#include <cstring>

namespace fulcrum::udp {

// The buffers are deliberately left uninitialised: a page is only committed once a datagram
// is written into it.
DatagramBatch::DatagramBatch() : buffers_(new uint8_t[kCapacity * kBufferBytes]) {
  std::memset(in_, 0, sizeof(in_));
  std::memset(out_, 0, sizeof(out_));
  for (unsigned i = 0; i < kCapacity; ++i) {
    in_iov_[i].iov_base = data(i);
    in_[i].msg_hdr.msg_iov = &in_iov_[i];
    in_[i].msg_hdr.msg_iovlen = 1;
    in_[i].msg_hdr.msg_name = &names_[i];
  }
}

mmsghdr* DatagramBatch::prepareReceive(bool want_control) {
  for (unsigned i = 0; i < kCapacity; ++i) {
    msghdr& h = in_[i].msg_hdr;
    in_iov_[i].iov_len = kBufferBytes;
    h.msg_namelen = sizeof(sockaddr_storage);
    h.msg_control = want_control ? control_[i] : nullptr;
    h.msg_controllen = want_control ? kControlBytes : 0;
    h.msg_flags = 0;
    in_[i].msg_len = 0;
  }
  return in_;
}

void readLocalAddress(const mmsghdr& message, uint16_t port_be, LocalAddress& out) {
  auto* header = const_cast<msghdr*>(&message.msg_hdr);
  for (cmsghdr* c = CMSG_FIRSTHDR(header); c != nullptr; c = CMSG_NXTHDR(header, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof(info));
      out = LocalAddress{};
      auto* in = reinterpret_cast<sockaddr_in*>(&out.address);
      in->sin_family = AF_INET;
      in->sin_addr = info.ipi_addr;
      in->sin_port = port_be;
      out.ifindex = info.ipi_ifindex;
      return;
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof(info));
      out = LocalAddress{};
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.address);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = info.ipi6_addr;
      in6->sin6_port = port_be;
      out.ifindex = static_cast<int>(info.ipi6_ifindex);
      return;
    }
  }
}

size_t buildReplyControl(const LocalAddress& local, uint8_t* buffer) {
  std::memset(buffer, 0, DatagramBatch::kControlBytes);
  auto* c = reinterpret_cast<cmsghdr*>(buffer);

  if (local.address.ss_family == AF_INET) {
    // ipi_spec_dst chooses the source address; ifindex 0 leaves the route to the kernel,
    // which on a multi-homed host may differ from the interface the request came in on.
    in_pktinfo info{};
    info.ipi_spec_dst = reinterpret_cast<const sockaddr_in*>(&local.address)->sin_addr;
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(info));
    std::memcpy(CMSG_DATA(c), &info, sizeof(info));
    return CMSG_SPACE(sizeof(info));
  }

  if (local.address.ss_family == AF_INET6) {
    // The interface index matters for link-local sources, so the request's is kept.
    in6_pktinfo info{};
    info.ipi6_addr = reinterpret_cast<const sockaddr_in6*>(&local.address)->sin6_addr;
    info.ipi6_ifindex = static_cast<unsigned>(local.ifindex);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(info));
    std::memcpy(CMSG_DATA(c), &info, sizeof(info));
    return CMSG_SPACE(sizeof(info));
  }
  return 0;
}

}  // namespace fulcrum::udp
