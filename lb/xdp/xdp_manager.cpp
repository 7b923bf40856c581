#include "xdp/xdp_manager.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <bpf/bpf.h>
#include <fmt/format.h>

#include "fulcrum/log.hpp"
#include "xdp/xdp_hash.hpp"

namespace fulcrum::xdp {

namespace {

// Network-order words of an address, IPv4 in word 0.
void putAddress(const Endpoint& endpoint, uint32_t out[4], uint8_t* family) {
  std::memset(out, 0, 16);
  if (endpoint.isV4()) {
    sockaddr_in v4;
    std::memcpy(&v4, endpoint.sa(), sizeof(v4));
    std::memcpy(&out[0], &v4.sin_addr, 4);
    *family = FULCRUM_XDP_FAMILY_V4;
    return;
  }
  sockaddr_in6 v6;
  std::memcpy(&v6, endpoint.sa(), sizeof(v6));
  std::memcpy(out, v6.sin6_addr.s6_addr, 16);
  *family = FULCRUM_XDP_FAMILY_V6;
}

// A pinned flow may stay on a backend that still takes its existing flows: up, draining,
// or down while the pool serves everyone (all_down = "all").
bool keepsFlows(const pool::Backend& backend, const pool::PoolSnapshot& snapshot) {
  switch (backend.state) {
    case pool::BackendState::Up:
    case pool::BackendState::Draining:
      return true;
    case pool::BackendState::Down:
      return snapshot.fallback();
    case pool::BackendState::Disabled:
      return false;
  }
  return false;
}

std::string errnoText(int err) {
  return std::strerror(err < 0 ? -err : err);
}

}  // namespace

Interface resolveInterface(const std::string& name, int family) {
  Interface out;
  out.ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  if (out.ifindex == 0) {
    throw XdpError(fmt::format("interface {} does not exist; set interface to a name `ip link` "
                               "shows",
                               name));
  }

  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    throw XdpError(fmt::format("cannot list the addresses of interface {}: {}", name,
                               errnoText(errno)));
  }
  bool found = false;
  for (ifaddrs* a = list; a != nullptr && !found; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != family || name != a->ifa_name) {
      continue;
    }
    if (family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&v6->sin6_addr)) {
        continue;
      }
    }
    out.source = Endpoint::fromSockaddr(a->ifa_addr);
    found = true;
  }
  freeifaddrs(list);

  if (!found) {
    throw XdpError(fmt::format("interface {} has no {} address to send encapsulated packets "
                               "from; add one (`ip addr add ... dev {}`)",
                               name, family == AF_INET ? "IPv4" : "global IPv6", name));
  }
  return out;
}

void checkForwarding(const std::string& name, int family) {
  const std::string path = fmt::format("/proc/sys/net/{}/conf/{}/forwarding",
                                       family == AF_INET ? "ipv4" : "ipv6", name);
  FILE* file = std::fopen(path.c_str(), "r");
  int value = 0;
  if (file != nullptr) {
    if (std::fscanf(file, "%d", &value) != 1) {
      value = 0;
    }
    std::fclose(file);
  }
  if (value == 0) {
    throw XdpError(fmt::format("interface {} has {} forwarding off, so the kernel refuses the "
                               "XDP program's route lookups; run `sysctl -w net.{}.conf.{}."
                               "forwarding=1`",
                               name, family == AF_INET ? "IPv4" : "IPv6",
                               family == AF_INET ? "ipv4" : "ipv6", name));
  }
}

XdpManager::XdpManager() : program_(XdpProgram::load()) {
  generations_.assign(FULCRUM_XDP_MAX_BACKENDS, 0);
}

XdpManager::~XdpManager() {
  // Pools outlive the manager (declared before it in Server); none may call into it after.
  for (auto& vip : vips_) {
    vip->pool->setOnPublish(nullptr);
  }
}

std::string XdpManager::attach(const Interface& interface, const ListenerConfig& config) {
  return program_->attach(interface.ifindex, config.interface, config.xdp_attach);
}

uint32_t XdpManager::addVip(const ListenerConfig& config, pool::Pool* pool,
                            const Interface& interface) {
  std::vector<bool> used(FULCRUM_XDP_MAX_VIPS, false);
  for (const auto& v : vips_) {
    used[v->value.id] = true;
  }
  const auto free_id = std::find(used.begin(), used.end(), false);
  if (free_id == used.end()) {
    throw XdpError(fmt::format("listener {}: all {} XDP VIP entries are in use",
                               config.name, FULCRUM_XDP_MAX_VIPS));
  }

  auto vip = std::make_unique<Vip>();
  vip->listener = config.name;
  vip->pool = pool;
  vip->ifindex = interface.ifindex;
  putAddress(config.bind, vip->key.addr, &vip->key.family);
  vip->key.port = htons(config.bind.port());
  vip->key.proto = config.protocol == Protocol::Udp ? IPPROTO_UDP : IPPROTO_TCP;
  std::memcpy(vip->addr.addr, vip->key.addr, sizeof(vip->addr.addr));
  vip->addr.family = vip->key.family;
  vip->value.id = static_cast<uint32_t>(free_id - used.begin());
  uint8_t source_family = 0;
  putAddress(interface.source, vip->value.src, &source_family);
  vip->value.hash_key = hashKeyCode(pool->config().hash_key);
  // The first program() flips to slot 0.
  vip->value.active = 1;

  program(*vip, pool->snapshot());
  pool->setOnPublish([this] { sync(); });

  const uint32_t one = 1;
  if (bpf_map_update_elem(program_->vipAddrsFd(), &vip->addr, &one, BPF_ANY) != 0) {
    spdlog::warn("xdp vip address not registered listener={} reason=\"{}\"", config.name,
                 errnoText(errno));
  }
  const uint32_t id = vip->value.id;
  vips_.push_back(std::move(vip));
  return id;
}

void XdpManager::updateVip(uint32_t id, const ListenerConfig& config, pool::Pool* pool) {
  Vip* vip = find(id);
  if (vip == nullptr) {
    return;
  }
  vip->listener = config.name;
  vip->pool = pool;
  vip->value.hash_key = hashKeyCode(pool->config().hash_key);
  program(*vip, pool->snapshot());
  pool->setOnPublish([this] { sync(); });
}

void XdpManager::removeVip(uint32_t id) {
  auto it = std::find_if(vips_.begin(), vips_.end(),
                         [id](const auto& v) { return v->value.id == id; });
  if (it == vips_.end()) {
    return;
  }
  Vip& vip = **it;
  bpf_map_delete_elem(program_->vipsFd(), &vip.key);
  for (const auto& [key, slot] : vip.slots) {
    freeSlot(slot);
  }

  const bool address_shared = std::any_of(vips_.begin(), vips_.end(), [&](const auto& v) {
    return v.get() != &vip && std::memcmp(&v->addr, &vip.addr, sizeof(vip.addr)) == 0;
  });
  if (!address_shared) {
    bpf_map_delete_elem(program_->vipAddrsFd(), &vip.addr);
  }
  vips_.erase(it);
}

size_t XdpManager::sync() {
  size_t count = 0;
  for (auto& vip : vips_) {
    std::shared_ptr<const pool::PoolSnapshot> current = vip->pool->snapshot();
    if (current == vip->programmed) {
      continue;
    }
    try {
      program(*vip, std::move(current));
      ++count;
    } catch (const XdpError& e) {
      // Keep the previous table; the next sync retries (programmed was not advanced).
      ++program_fail_total_;
      spdlog::error("xdp program failed listener={} reason=\"{}\" action=keep_previous_table",
                    vip->listener, e.what());
    }
  }
  return count;
}

void XdpManager::startSync(uv_loop_t* loop, uint64_t interval_ms) {
  uv_timer_init(loop, &sync_timer_);
  sync_timer_.data = this;
  uv_timer_start(&sync_timer_, onSync_cb, interval_ms, interval_ms);
  timer_open_ = true;
}

void XdpManager::close() {
  for (auto& vip : vips_) {
    vip->pool->setOnPublish(nullptr);
  }
  if (timer_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&sync_timer_), nullptr);
    timer_open_ = false;
  }
}

void XdpManager::onSync_cb(uv_timer_t* handle) {
  static_cast<XdpManager*>(handle->data)->sync();
}

std::vector<XdpBackendView> XdpManager::backends(uint32_t id) const {
  std::vector<XdpBackendView> out;
  for (const auto& vip : vips_) {
    if (vip->value.id != id) {
      continue;
    }
    for (const auto& [key, slot] : vip->slots) {
      fulcrum_backend be{};
      const uint32_t index = slot;
      bpf_map_lookup_elem(program_->backendsFd(), &index, &be);
      out.push_back(XdpBackendView{key, slot, be.up != 0, program_->backendCounter(slot)});
    }
  }
  return out;
}

XdpManager::Vip* XdpManager::find(uint32_t id) {
  for (auto& vip : vips_) {
    if (vip->value.id == id) {
      return vip.get();
    }
  }
  return nullptr;
}

uint32_t XdpManager::allocSlot() {
  uint32_t slot = 0;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else if (next_slot_ < FULCRUM_XDP_MAX_BACKENDS) {
    slot = next_slot_++;
  } else {
    throw XdpError(fmt::format("all {} XDP backend slots are in use",
                               FULCRUM_XDP_MAX_BACKENDS - 1));
  }
  // A new generation makes connection entries left from the slot's previous backend miss.
  ++generations_[slot];
  program_->clearBackendCounter(slot);
  return slot;
}

void XdpManager::freeSlot(uint32_t slot) {
  fulcrum_backend none{};
  none.generation = generations_[slot];
  bpf_map_update_elem(program_->backendsFd(), &slot, &none, BPF_ANY);
  free_slots_.push_back(slot);
}

void XdpManager::program(Vip& vip, std::shared_ptr<const pool::PoolSnapshot> snapshot) {
  const std::vector<pool::Backend>& backends = snapshot->backends();

  // Backends first, so that every slot the new row names exists before the flip.
  std::map<std::string, uint32_t> slots;
  std::vector<uint32_t> slot_of(backends.size(), 0);
  for (size_t i = 0; i < backends.size(); ++i) {
    const pool::Backend& b = backends[i];
    auto known = vip.slots.find(b.key);
    const uint32_t slot = known != vip.slots.end() ? known->second : allocSlot();
    slots[b.key] = slot;
    slot_of[i] = slot;

    fulcrum_backend entry{};
    putAddress(b.address, entry.addr, &entry.family);
    entry.generation = generations_[slot];
    entry.up = keepsFlows(b, *snapshot) ? 1 : 0;
    if (bpf_map_update_elem(program_->backendsFd(), &slot, &entry, BPF_ANY) != 0) {
      throw XdpError(fmt::format("cannot write backend {} into the XDP map: {}", b.key,
                                 errnoText(errno)));
    }
  }

  const std::vector<uint32_t> table = snapshot->maglevTable();
  std::vector<uint32_t> entries(table.size(), 0);
  for (size_t i = 0; i < table.size(); ++i) {
    entries[i] = table[i] == pool::kNoBackend ? 0 : slot_of[table[i]];
  }

  fulcrum_vip next = vip.value;
  next.active = static_cast<uint8_t>(vip.value.active ^ 1);
  next.table_size[next.active] = static_cast<uint32_t>(entries.size());
  writeRow(next.id * 2 + next.active, entries);
  if (bpf_map_update_elem(program_->vipsFd(), &vip.key, &next, BPF_ANY) != 0) {
    throw XdpError(fmt::format("cannot write the VIP of listener {} into the XDP map: {}",
                               vip.listener, errnoText(errno)));
  }
  vip.value = next;

  for (const auto& [key, slot] : vip.slots) {
    if (slots.find(key) == slots.end()) {
      freeSlot(slot);
    }
  }
  vip.slots = std::move(slots);
  vip.programmed = std::move(snapshot);
  ++programmed_total_;
  spdlog::debug("xdp table programmed listener={} slot={} entries={} backends={}", vip.listener,
                static_cast<int>(next.active), entries.size(), backends.size());
}

void XdpManager::writeRow(uint32_t row, const std::vector<uint32_t>& entries) {
  if (entries.empty()) {
    return;
  }
  std::vector<uint32_t> keys(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    keys[i] = row * FULCRUM_XDP_MAX_TABLE + static_cast<uint32_t>(i);
  }

  // One syscall for the row where the kernel supports batches, else one per entry.
  uint32_t count = static_cast<uint32_t>(entries.size());
  if (bpf_map_update_batch(program_->maglevFd(), keys.data(), entries.data(), &count,
                           nullptr) == 0 &&
      count == entries.size()) {
    return;
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    if (bpf_map_update_elem(program_->maglevFd(), &keys[i], &entries[i], BPF_ANY) != 0) {
      throw XdpError(fmt::format("cannot write the XDP Maglev table: {}", errnoText(errno)));
    }
  }
}

}  // namespace fulcrum::xdp
