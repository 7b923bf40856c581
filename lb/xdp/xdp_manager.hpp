#pragma once

// Programs the XDP maps from pool snapshots: one VIP per XDP listener, backend slots, and
// two Maglev rows per VIP. Control plane only (one thread, the control loop).
//
// No misroute window: a new table goes into the VIP's inactive row first, then one update
// of the VIP's map value (a hash map, replaced whole) flips the active row, so a packet
// sees the old table or the new one, never half of each. A backend that goes down has its
// slot marked down before the flip, so the kernel re-picks flows pinned to it at once.
//
// Layout example: VIP id 3, rows 6 (slot 0) and 7 (slot 1), each FULCRUM_XDP_MAX_TABLE
// entries wide; entry values are backend slots, 0 meaning none (arrays start zeroed).

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fulcrum/config.hpp"
#include "fulcrum/endpoint.hpp"
#include "pool/pool.hpp"
#include "xdp/xdp_program.hpp"

namespace fulcrum::xdp {

// An interface as the XDP path needs it.
struct Interface {
  int ifindex = 0;
  Endpoint source;  // The balancer's own address of the VIP's family: the outer source.
};

// Looks the interface up and picks its first address of family (AF_INET / AF_INET6; IPv6
// link-local addresses are skipped). Throws XdpError naming the interface and the fix.
Interface resolveInterface(const std::string& name, int family);

// One backend slot of a VIP, for status and metrics.
struct XdpBackendView {
  std::string key;
  uint32_t slot = 0;
  bool up = false;
  XdpCounter counter;
};

// bpf_fib_lookup answers only on interfaces with forwarding on, even for packets the
// balancer originates; without it every steered packet would be dropped. Throws XdpError
// with the sysctl that fixes it.
void checkForwarding(const std::string& name, int family);

class XdpManager {
 public:
  // Loads the program; throws XdpError.
  XdpManager();
  ~XdpManager();

  XdpManager(const XdpManager&) = delete;
  XdpManager& operator=(const XdpManager&) = delete;

  XdpProgram& program() { return *program_; }
  const XdpProgram& program() const { return *program_; }

  // Attaches the program to the interface (shared by the VIPs on it); returns "native" or
  // "generic". Throws XdpError.
  std::string attach(const Interface& interface, const ListenerConfig& config);

  // Adds the listener's VIP, programmed from the pool's current snapshot before it becomes
  // visible to the program, and hooks sync() to the pool's publish so every later snapshot
  // (health change, operator action, reload) reaches the kernel at once. Returns the VIP id.
  // Throws XdpError (no free VIP id, map update refused).
  uint32_t addVip(const ListenerConfig& config, pool::Pool* pool, const Interface& interface);

  // A reload kept the VIP (same address, port, protocol and interface): new hash key and
  // pool, reprogrammed with a flip.
  void updateVip(uint32_t id, const ListenerConfig& config, pool::Pool* pool);

  // Removes the VIP (the interface stays attached; see XdpProgram::detachExcept).
  void removeVip(uint32_t id);

  // Reprograms every VIP whose pool published a snapshot since its last programming.
  // Returns how many were reprogrammed. Map update failures are logged and counted and the
  // VIP keeps its previous table.
  size_t sync();

  // Calls sync() every interval on loop until close(): the retry for a programming that
  // failed at publish time (the publish hook does the normal updates).
  void startSync(uv_loop_t* loop, uint64_t interval_ms);
  bool syncing() const { return timer_open_; }
  // Stops the timer and unhooks the pools.
  void close();

  XdpCounter vipCounter(uint32_t id) const { return program_->vipCounter(id); }
  std::vector<XdpBackendView> backends(uint32_t id) const;
  uint64_t programmedTotal() const { return programmed_total_; }
  uint64_t programFailTotal() const { return program_fail_total_; }

 private:
  struct Vip {
    std::string listener;
    fulcrum_vip_key key{};
    fulcrum_vip value{};
    fulcrum_vip_addr addr{};
    int ifindex = 0;
    pool::Pool* pool = nullptr;
    std::shared_ptr<const pool::PoolSnapshot> programmed;
    std::map<std::string, uint32_t> slots;  // Backend key -> backend slot.
  };

  static void onSync_cb(uv_timer_t* handle);

  Vip* find(uint32_t id);
  uint32_t allocSlot();
  void freeSlot(uint32_t slot);
  // Writes backends and the inactive row, flips the VIP. Throws XdpError.
  void program(Vip& vip, std::shared_ptr<const pool::PoolSnapshot> snapshot);
  void writeRow(uint32_t row, const std::vector<uint32_t>& entries);

  std::unique_ptr<XdpProgram> program_;
  std::vector<std::unique_ptr<Vip>> vips_;
  std::vector<uint32_t> generations_;  // Per backend slot.
  std::vector<uint32_t> free_slots_;
  uint32_t next_slot_ = 1;  // Slot 0 is "none".
  uint64_t programmed_total_ = 0;
  uint64_t program_fail_total_ = 0;
  uv_timer_t sync_timer_{};
  bool timer_open_ = false;
};

}  // namespace fulcrum::xdp
