#include "xdp/xdp_program.hpp"

#include <linux/if_link.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>

#include "fulcrum/config.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum_xdp.skel.h"

namespace fulcrum::xdp {

static_assert(kMaxXdpListeners == FULCRUM_XDP_MAX_VIPS, "config and ebpf/ limits differ");
static_assert(kMaxXdpTableSize == FULCRUM_XDP_MAX_TABLE, "config and ebpf/ limits differ");

namespace {

std::string errnoText(int err) {
  return std::strerror(err < 0 ? -err : err);
}

// What to do about a failure, by errno.
std::string hintFor(int err) {
  err = err < 0 ? -err : err;
  if (err == EPERM || err == EACCES) {
    return "run Fulcrum as root or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON";
  }
  if (err == EOPNOTSUPP || err == EINVAL) {
    return "the driver has no native XDP; use xdp_attach = \"generic\" or \"auto\"";
  }
  if (err == EBUSY || err == EEXIST) {
    return "another XDP program is attached; remove it with `ip link set dev IF xdp off`";
  }
  return "check `dmesg` and that the kernel supports XDP and BTF";
}

// libbpf prints its own diagnostics to stderr by default; Fulcrum reports failures itself
// in one line, so libbpf's notes go to the debug log.
int libbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) {
    return 0;
  }
  char line[512];
  std::vsnprintf(line, sizeof(line), format, args);
  std::string text(line);
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  spdlog::debug("libbpf message=\"{}\"", text);
  return 0;
}

}  // namespace

const char* statName(uint32_t stat) {
  switch (stat) {
    case FULCRUM_XDP_PASS:
      return "pass";
    case FULCRUM_XDP_TX:
      return "tx";
    case FULCRUM_XDP_REDIRECT:
      return "redirect";
    case FULCRUM_XDP_CONN_HIT:
      return "conn_hit";
    case FULCRUM_XDP_CONN_NEW:
      return "conn_new";
    case FULCRUM_XDP_DROP_FRAGMENT:
      return "drop_fragment";
    case FULCRUM_XDP_DROP_TRUNCATED:
      return "drop_truncated";
    case FULCRUM_XDP_DROP_NO_BACKEND:
      return "drop_no_backend";
    case FULCRUM_XDP_DROP_ENCAP:
      return "drop_encap";
    case FULCRUM_XDP_DROP_NO_ROUTE:
      return "drop_no_route";
    case FULCRUM_XDP_DROP_NO_NEIGH:
      return "drop_no_neigh";
    case FULCRUM_XDP_DROP_TOO_BIG:
      return "drop_too_big";
    default:
      return "unknown";
  }
}

std::unique_ptr<XdpProgram> XdpProgram::load() {
  libbpf_set_print(libbpfPrint);

  fulcrum_xdp_bpf* skel = fulcrum_xdp_bpf__open();
  if (skel == nullptr) {
    const int err = errno;
    throw XdpError(fmt::format("cannot open the XDP program: {}; {}", errnoText(err),
                               hintFor(err)));
  }
  const int rc = fulcrum_xdp_bpf__load(skel);
  if (rc != 0) {
    fulcrum_xdp_bpf__destroy(skel);
    throw XdpError(fmt::format("cannot load the XDP program: {}; {}", errnoText(rc),
                               hintFor(rc)));
  }

  std::unique_ptr<XdpProgram> program(new XdpProgram(skel));
  const int cpus = libbpf_num_possible_cpus();
  program->cpus_ = cpus > 0 ? static_cast<unsigned>(cpus) : 1;
  return program;
}

XdpProgram::~XdpProgram() {
  for (const Attachment& a : attachments_) {
    ::close(a.link_fd);
  }
  fulcrum_xdp_bpf__destroy(skel_);
}

std::string XdpProgram::attach(int ifindex, const std::string& ifname, XdpAttach mode) {
  for (const Attachment& a : attachments_) {
    if (a.ifindex == ifindex) {
      return a.mode;
    }
  }

  auto tryMode = [&](uint32_t flags) {
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
    return bpf_link_create(progFd(), ifindex, BPF_XDP, &opts);
  };

  int fd = -1;
  std::string used;
  if (mode == XdpAttach::Native || mode == XdpAttach::Auto) {
    fd = tryMode(XDP_FLAGS_DRV_MODE);
    used = "native";
    if (fd < 0 && mode == XdpAttach::Auto) {
      spdlog::warn("xdp native attach failed interface={} reason=\"{}\" action=generic_mode",
                   ifname, errnoText(fd));
    }
  }
  if (fd < 0 && (mode == XdpAttach::Generic || mode == XdpAttach::Auto)) {
    fd = tryMode(XDP_FLAGS_SKB_MODE);
    used = "generic";
  }
  if (fd < 0) {
    throw XdpError(fmt::format("cannot attach XDP ({}) to interface {}: {}; {}",
                               toString(mode), ifname, errnoText(fd), hintFor(fd)));
  }

  attachments_.push_back(Attachment{ifindex, fd, used});
  return used;
}

void XdpProgram::detachExcept(const std::vector<int>& keep) {
  for (auto it = attachments_.begin(); it != attachments_.end();) {
    if (std::find(keep.begin(), keep.end(), it->ifindex) != keep.end()) {
      ++it;
      continue;
    }
    ::close(it->link_fd);
    it = attachments_.erase(it);
  }
}

int XdpProgram::progFd() const { return bpf_program__fd(skel_->progs.fulcrum_xdp); }
int XdpProgram::vipsFd() const { return bpf_map__fd(skel_->maps.vips); }
int XdpProgram::vipAddrsFd() const { return bpf_map__fd(skel_->maps.vip_addrs); }
int XdpProgram::maglevFd() const { return bpf_map__fd(skel_->maps.maglev); }
int XdpProgram::backendsFd() const { return bpf_map__fd(skel_->maps.backends); }
int XdpProgram::connsFd() const { return bpf_map__fd(skel_->maps.conns); }

XdpCounter XdpProgram::readCounter(int map_fd, uint32_t index) const {
  std::vector<fulcrum_counter> values(cpus_);
  XdpCounter sum;
  if (bpf_map_lookup_elem(map_fd, &index, values.data()) != 0) {
    return sum;
  }
  for (const fulcrum_counter& v : values) {
    sum.packets += v.packets;
    sum.bytes += v.bytes;
  }
  return sum;
}

XdpCounter XdpProgram::vipCounter(uint32_t vip_id) const {
  return readCounter(bpf_map__fd(skel_->maps.vip_stats), vip_id);
}

XdpCounter XdpProgram::backendCounter(uint32_t slot) const {
  return readCounter(bpf_map__fd(skel_->maps.backend_stats), slot);
}

uint64_t XdpProgram::stat(uint32_t stat) const {
  std::vector<uint64_t> values(cpus_);
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.stats), &stat, values.data()) != 0) {
    return 0;
  }
  uint64_t sum = 0;
  for (uint64_t v : values) {
    sum += v;
  }
  return sum;
}

void XdpProgram::clearBackendCounter(uint32_t slot) const {
  std::vector<fulcrum_counter> zeros(cpus_);
  std::memset(zeros.data(), 0, zeros.size() * sizeof(fulcrum_counter));
  bpf_map_update_elem(bpf_map__fd(skel_->maps.backend_stats), &slot, zeros.data(), BPF_ANY);
}

}  // namespace fulcrum::xdp
