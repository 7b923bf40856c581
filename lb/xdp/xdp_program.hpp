#pragma once

// The loaded XDP program (ebpf/fulcrum_xdp.bpf.c, embedded as a libbpf skeleton) and its
// attachments. Control plane only: one thread, no locks.
//
// Attachments are BPF links: the kernel detaches the program when the link's descriptor
// closes, so a Fulcrum that exits, or dies, leaves no program steering a VIP nobody serves.

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fulcrum/types.hpp"
#include "fulcrum_xdp.h"

struct fulcrum_xdp_bpf;

namespace fulcrum::xdp {

// Loading or attaching failed. The message is one complete line for the operator: what
// failed, the system's reason, and what to do.
class XdpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Packets and bytes, summed over CPUs.
struct XdpCounter {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// Names of the global counters (enum fulcrum_xdp_stat), for logs and metrics.
const char* statName(uint32_t stat);

class XdpProgram {
 public:
  // Opens and loads the program and creates its maps. Throws XdpError (no privilege, no
  // BPF support, verifier refusal).
  static std::unique_ptr<XdpProgram> load();
  ~XdpProgram();

  XdpProgram(const XdpProgram&) = delete;
  XdpProgram& operator=(const XdpProgram&) = delete;

  // Attaches to ifindex unless already attached there, and returns the mode in use:
  // "native" or "generic". Auto tries native first and falls back to generic with a warning.
  // Throws XdpError.
  std::string attach(int ifindex, const std::string& ifname, XdpAttach mode);

  // Detaches from every interface not in keep.
  void detachExcept(const std::vector<int>& keep);

  int progFd() const;
  int vipsFd() const;
  int vipAddrsFd() const;
  int maglevFd() const;
  int backendsFd() const;
  int connsFd() const;

  // Per-CPU counters summed. Missing entries read as zero.
  XdpCounter vipCounter(uint32_t vip_id) const;
  XdpCounter backendCounter(uint32_t slot) const;
  uint64_t stat(uint32_t stat) const;
  // Zeroes a backend slot's counters when the slot gets another backend.
  void clearBackendCounter(uint32_t slot) const;

 private:
  struct Attachment {
    int ifindex;
    int link_fd;
    std::string mode;
  };

  explicit XdpProgram(fulcrum_xdp_bpf* skel) : skel_(skel) {}
  XdpCounter readCounter(int map_fd, uint32_t index) const;

  fulcrum_xdp_bpf* skel_;
  std::vector<Attachment> attachments_;
  unsigned cpus_ = 1;
};

}  // namespace fulcrum::xdp
