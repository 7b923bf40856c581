// BPF_PROG_TEST_RUN on crafted packets: the XDP program is loaded and programmed by the real
// control plane (XdpManager from a real Pool), then fed packets through the kernel's test
// runner. Each case checks the verdict, the outer headers (backend = the userspace Maglev
// choice for the same flow) and the counters.
//
// Needs root (loading BPF, a private network namespace). Exits 77 (ctest: skipped) without.
// The namespace is the process's own (unshare), so routes and neighbours made here vanish
// with the process, failures included.

#define CATCH_CONFIG_RUNNER
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sched.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <bpf/bpf.h>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "fulcrum/config.hpp"
#include "fulcrum/log.hpp"
#include "pool/pool.hpp"
#include "xdp/xdp_hash.hpp"
#include "xdp/xdp_manager.hpp"

namespace {

using namespace fulcrum;

constexpr const char* kDev = "fxt0";
constexpr const char* kLocal4 = "198.18.0.1";
constexpr const char* kClient4 = "198.18.0.2";
constexpr const char* kVip4 = "198.18.5.10";
constexpr const char* kLocal6 = "2001:db8::1";
constexpr const char* kVip6 = "2001:db8:5::10";
const std::array<const char*, 3> kBackends4 = {"198.18.0.11", "198.18.0.12", "198.18.0.13"};
const std::array<const char*, 3> kBackends6 = {"2001:db8::11", "2001:db8::12", "2001:db8::13"};

int ifindex = 0;

void run(const std::string& command) {
  if (std::system(command.c_str()) != 0) {
    throw std::runtime_error("setup command failed: " + command);
  }
}

// A veth interface with the balancer's addresses and permanent neighbours for the
// backends (MAC 02:00:00:00:00:<last byte>), so the program's FIB lookups resolve.
void setUpNamespace() {
  run(fmt::format("ip link add {} type veth peer name {}p && ip link set {} up && "
                  "ip link set {}p up",
                  kDev, kDev, kDev, kDev));
  run(fmt::format("ip addr add {}/24 dev {} && ip -6 addr add {}/64 dev {} nodad", kLocal4, kDev,
                  kLocal6, kDev));
  for (size_t i = 0; i < kBackends4.size(); ++i) {
    run(fmt::format("ip neigh add {} lladdr 02:00:00:00:00:{:02x} dev {} nud permanent",
                    kBackends4[i], 0x11 + i, kDev));
    run(fmt::format("ip -6 neigh add {} lladdr 02:00:00:00:00:{:02x} dev {} nud permanent",
                    kBackends6[i], 0x11 + i, kDev));
  }
  // The program's FIB lookup refuses interfaces without forwarding (see README).
  run(fmt::format("sysctl -qw net.ipv4.conf.{}.forwarding=1 net.ipv6.conf.{}.forwarding=1", kDev,
                  kDev));
  ifindex = static_cast<int>(if_nametoindex(kDev));
}

Endpoint endpoint(const std::string& ip, uint16_t port) {
  const std::string text = ip.find(':') != std::string::npos
                               ? fmt::format("[{}]:{}", ip, port)
                               : fmt::format("{}:{}", ip, port);
  return *Endpoint::parse(text);
}

PoolConfig poolConfig(bool v6, HashKey key) {
  PoolConfig config;
  config.name = v6 ? "web6" : "web";
  config.algorithm = Algorithm::Maglev;
  config.hash_key = key;
  config.maglev_table_size = 4099;
  for (const char* ip : v6 ? kBackends6 : kBackends4) {
    BackendConfig b;
    b.address = endpoint(ip, 8080);
    config.backends.push_back(b);
  }
  return config;
}

ListenerConfig listenerConfig(bool v6, Protocol protocol, uint16_t port) {
  ListenerConfig config;
  config.name = fmt::format("vip{}-{}", v6 ? 6 : 4, port);
  config.bind = endpoint(v6 ? kVip6 : kVip4, port);
  config.protocol = protocol;
  config.mode = ListenerMode::Xdp;
  config.interface = kDev;
  return config;
}

// Packet building. Addresses are text; ports host order.
struct Packet {
  std::vector<uint8_t> bytes;
};

uint16_t checksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) {
    sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  }
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum);
}

struct Spec {
  bool v6 = false;
  std::string src;
  std::string dst;
  uint8_t proto = IPPROTO_TCP;
  uint16_t sport = 40000;
  uint16_t dport = 80;
  size_t options = 0;        // IPv4 option bytes (multiple of 4).
  uint16_t frag_off = 0;     // IPv4 frag_off field, host order.
  bool v6_fragment = false;  // IPv6 fragment header before L4.
  size_t cut = 0;            // Bytes removed from the end.
  size_t payload = 16;
};

Packet build(const Spec& s) {
  std::vector<uint8_t> l4;
  if (s.proto == IPPROTO_TCP) {
    tcphdr th{};
    th.source = htons(s.sport);
    th.dest = htons(s.dport);
    th.doff = 5;
    th.syn = 1;
    l4.resize(sizeof(th));
    std::memcpy(l4.data(), &th, sizeof(th));
  } else if (s.proto == IPPROTO_UDP) {
    udphdr uh{};
    uh.source = htons(s.sport);
    uh.dest = htons(s.dport);
    uh.len = htons(static_cast<uint16_t>(sizeof(uh) + s.payload));
    l4.resize(sizeof(uh));
    std::memcpy(l4.data(), &uh, sizeof(uh));
  }
  for (size_t i = 0; i < s.payload; ++i) {
    l4.push_back(static_cast<uint8_t>('a' + i % 26));
  }

  std::vector<uint8_t> out(ETH_HLEN, 0);
  const uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x01};
  const uint8_t smac[6] = {0x02, 0, 0, 0, 0, 0x02};
  std::memcpy(out.data(), dmac, 6);
  std::memcpy(out.data() + 6, smac, 6);

  if (!s.v6) {
    out[12] = 0x08;
    out[13] = 0x00;
    iphdr ip{};
    ip.version = 4;
    ip.ihl = static_cast<uint8_t>(5 + s.options / 4);
    ip.ttl = 64;
    ip.protocol = s.proto;
    ip.frag_off = htons(s.frag_off);
    ip.tot_len = htons(static_cast<uint16_t>(sizeof(ip) + s.options + l4.size()));
    inet_pton(AF_INET, s.src.c_str(), &ip.saddr);
    inet_pton(AF_INET, s.dst.c_str(), &ip.daddr);
    std::vector<uint8_t> header(sizeof(ip) + s.options, 1);  // Options: NOPs.
    std::memcpy(header.data(), &ip, sizeof(ip));
    const uint16_t sum = checksum(header.data(), header.size());
    header[10] = static_cast<uint8_t>(sum >> 8);
    header[11] = static_cast<uint8_t>(sum);
    out.insert(out.end(), header.begin(), header.end());
  } else {
    out[12] = 0x86;
    out[13] = 0xdd;
    ip6_hdr ip{};
    ip.ip6_flow = htonl(6u << 28);
    ip.ip6_hlim = 64;
    ip.ip6_nxt = s.v6_fragment ? 44 : s.proto;
    const size_t frag_len = s.v6_fragment ? 8 : 0;
    ip.ip6_plen = htons(static_cast<uint16_t>(frag_len + l4.size()));
    inet_pton(AF_INET6, s.src.c_str(), &ip.ip6_src);
    inet_pton(AF_INET6, s.dst.c_str(), &ip.ip6_dst);
    const auto* p = reinterpret_cast<const uint8_t*>(&ip);
    out.insert(out.end(), p, p + sizeof(ip));
    if (s.v6_fragment) {
      const uint8_t frag[8] = {s.proto, 0, 0, 1, 0, 0, 0, 42};  // Offset 0, more fragments.
      out.insert(out.end(), frag, frag + 8);
    }
  }
  out.insert(out.end(), l4.begin(), l4.end());
  out.resize(out.size() - s.cut);
  return Packet{out};
}

struct Result {
  int verdict = -1;
  std::vector<uint8_t> out;
};

Result runProgram(const xdp::XdpProgram& program, const Packet& packet) {
  Result result;
  result.out.resize(packet.bytes.size() + 256);
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(packet.bytes.size());
  ctx.ingress_ifindex = static_cast<uint32_t>(ifindex);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet.bytes.data(),
              .data_out = result.out.data(),
              .data_size_in = static_cast<uint32_t>(packet.bytes.size()),
              .data_size_out = static_cast<uint32_t>(result.out.size()), .ctx_in = &ctx,
              .ctx_size_in = sizeof(ctx), .repeat = 1);
  const int rc = bpf_prog_test_run_opts(program.progFd(), &opts);
  REQUIRE(rc == 0);
  result.verdict = static_cast<int>(opts.retval);
  for (uint32_t stat = 0; stat < FULCRUM_XDP_STAT_COUNT; ++stat) {
    UNSCOPED_INFO(xdp::statName(stat) << "=" << program.stat(stat));
  }
  result.out.resize(opts.data_size_out);
  return result;
}

// The backend the userspace Maglev picks for this flow, through the same snapshot.
std::string expectedBackend(const pool::Pool& pool, const Spec& s) {
  const Endpoint client = endpoint(s.src, s.sport);
  const Endpoint local = endpoint(s.dst, s.dport);
  const auto snapshot = pool.snapshot();
  const uint64_t hash = xdp::xdpFlowHash(snapshot->hashKey(),
                                         s.proto == IPPROTO_UDP ? Protocol::Udp : Protocol::Tcp,
                                         client.sa(), local.sa());
  const uint32_t index = snapshot->pick(hash, {});
  REQUIRE(index != pool::kNoBackend);
  return snapshot->backends()[index].address.ipString();
}

// Checks an encapsulated packet: outer header, MACs from the neighbour table, the inner
// packet exactly as sent. Returns the outer destination.
std::string checkEncapsulated(const Result& r, const Packet& in, bool v6) {
  REQUIRE(r.verdict == XDP_TX);
  const size_t outer = v6 ? sizeof(ip6_hdr) : sizeof(iphdr);
  REQUIRE(r.out.size() == in.bytes.size() + outer);
  // The inner L3 packet follows the outer header byte for byte.
  REQUIRE(std::equal(in.bytes.begin() + ETH_HLEN, in.bytes.end(),
                     r.out.begin() + ETH_HLEN + outer));
  char text[INET6_ADDRSTRLEN] = {};
  const uint8_t* h = r.out.data() + ETH_HLEN;
  if (!v6) {
    REQUIRE(r.out[12] == 0x08);
    REQUIRE(r.out[13] == 0x00);
    iphdr ip;
    std::memcpy(&ip, h, sizeof(ip));
    REQUIRE(ip.version == 4);
    REQUIRE(ip.protocol == IPPROTO_IPIP);
    REQUIRE(ntohs(ip.tot_len) == in.bytes.size() - ETH_HLEN + outer);
    REQUIRE(checksum(h, sizeof(iphdr)) == 0);
    inet_ntop(AF_INET, &ip.saddr, text, sizeof(text));
    REQUIRE(std::string(text) == kLocal4);
    inet_ntop(AF_INET, &ip.daddr, text, sizeof(text));
  } else {
    REQUIRE(r.out[12] == 0x86);
    REQUIRE(r.out[13] == 0xdd);
    ip6_hdr ip;
    std::memcpy(&ip, h, sizeof(ip));
    REQUIRE(ntohl(ip.ip6_flow) >> 28 == 6);
    REQUIRE(ip.ip6_nxt == IPPROTO_IPV6);
    REQUIRE(ntohs(ip.ip6_plen) == in.bytes.size() - ETH_HLEN);
    inet_ntop(AF_INET6, &ip.ip6_src, text, sizeof(text));
    REQUIRE(std::string(text) == kLocal6);
    inet_ntop(AF_INET6, &ip.ip6_dst, text, sizeof(text));
  }
  const std::string dst = text;
  // Destination MAC: the permanent neighbour of that backend (last byte = address's last).
  const std::string last = dst.substr(dst.find_last_of(".:") + 1);
  const int expected_mac = v6 ? std::stoi(last, nullptr, 16) : std::stoi(last);
  CHECK(static_cast<int>(r.out[5]) == (v6 ? expected_mac : 0x11 + expected_mac - 11));
  return dst;
}

// Counters the program keeps, read through the control plane.
uint64_t dropsTotal(const xdp::XdpProgram& p) {
  uint64_t sum = 0;
  for (uint32_t s = FULCRUM_XDP_DROP_FRAGMENT; s < FULCRUM_XDP_STAT_COUNT; ++s) {
    sum += p.stat(s);
  }
  return sum;
}

struct Fixture {
  Fixture()
      : pool4(poolConfig(false, HashKey::SourceIpPort)),
        pool6(poolConfig(true, HashKey::FiveTuple)) {
    manager = std::make_unique<xdp::XdpManager>();
    xdp::Interface iface4{ifindex, endpoint(kLocal4, 0)};
    xdp::Interface iface6{ifindex, endpoint(kLocal6, 0)};
    manager->addVip(listenerConfig(false, Protocol::Tcp, 80), &pool4, iface4);
    manager->addVip(listenerConfig(false, Protocol::Udp, 53), &pool4, iface4);
    manager->addVip(listenerConfig(true, Protocol::Tcp, 80), &pool6, iface6);
  }
  const xdp::XdpProgram& program() const { return manager->program(); }

  pool::Pool pool4;
  pool::Pool pool6;
  std::unique_ptr<xdp::XdpManager> manager;
};

Spec tcp4(uint16_t sport, const std::string& src = kClient4) {
  Spec s;
  s.src = src;
  s.dst = kVip4;
  s.sport = sport;
  return s;
}

}  // namespace

TEST_CASE("TCP and UDP to an IPv4 VIP go to the userspace Maglev choice", "[xdp]") {
  Fixture f;
  std::array<int, 3> spread{};
  for (uint16_t i = 0; i < 300; ++i) {
    Spec s = tcp4(static_cast<uint16_t>(20000 + i * 7));
    if (i % 2 == 1) {
      s.proto = IPPROTO_UDP;
      s.dport = 53;
    }
    const Packet p = build(s);
    const std::string dst = checkEncapsulated(runProgram(f.program(), p), p, false);
    REQUIRE(dst == expectedBackend(f.pool4, s));
    for (size_t b = 0; b < kBackends4.size(); ++b) {
      spread[b] += dst == kBackends4[b] ? 1 : 0;
    }
  }
  // Maglev spreads 300 flows over 3 equal backends; each gets a fair share.
  for (int n : spread) {
    CHECK(n > 60);
  }
  CHECK(f.program().stat(FULCRUM_XDP_TX) == 300);
  CHECK(f.program().stat(FULCRUM_XDP_CONN_NEW) == 300);
  CHECK(dropsTotal(f.program()) == 0);

  // The same flow again: found in the connection table, same backend.
  const Packet again = build(tcp4(20000));
  REQUIRE(checkEncapsulated(runProgram(f.program(), again), again, false) ==
          expectedBackend(f.pool4, tcp4(20000)));
  CHECK(f.program().stat(FULCRUM_XDP_CONN_HIT) == 1);
}

TEST_CASE("VIP and backend counters match the packets sent", "[xdp]") {
  Fixture f;
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < 50; ++i) {
    const Packet p = build(tcp4(static_cast<uint16_t>(30000 + i)));
    bytes += p.bytes.size() - ETH_HLEN;
    REQUIRE(runProgram(f.program(), p).verdict == XDP_TX);
  }
  const xdp::XdpCounter vip = f.program().vipCounter(0);
  CHECK(vip.packets == 50);
  CHECK(vip.bytes == bytes);
  uint64_t backend_packets = 0;
  for (const auto& b : f.manager->backends(0)) {
    backend_packets += b.counter.packets;
  }
  CHECK(backend_packets == 50);
}

TEST_CASE("packets not for a VIP pass untouched", "[xdp]") {
  Fixture f;
  std::vector<Spec> specs;
  Spec other_port = tcp4(40000);
  other_port.dport = 81;
  specs.push_back(other_port);
  Spec other_addr = tcp4(40000);
  other_addr.dst = "198.18.5.11";
  specs.push_back(other_addr);
  Spec udp_on_tcp_vip = tcp4(40000);
  udp_on_tcp_vip.proto = IPPROTO_UDP;
  specs.push_back(udp_on_tcp_vip);
  Spec icmp = tcp4(40000);
  icmp.proto = IPPROTO_ICMP;
  specs.push_back(icmp);
  Spec frag_elsewhere = tcp4(40000);
  frag_elsewhere.dst = "198.18.7.1";
  frag_elsewhere.frag_off = 0x2000;
  specs.push_back(frag_elsewhere);
  Spec short_ip = tcp4(40000);
  short_ip.payload = 0;
  short_ip.cut = 20 + 10;  // Only 10 bytes of the IPv4 header are left.
  specs.push_back(short_ip);

  for (const Spec& s : specs) {
    const Packet p = build(s);
    const Result r = runProgram(f.program(), p);
    CHECK(r.verdict == XDP_PASS);
    CHECK(r.out == p.bytes);
  }

  // ARP, and an Ethernet header saying IPv4 with nothing after it (the kernel's test runner
  // refuses frames shorter than an Ethernet header).
  Packet arp{std::vector<uint8_t>(42, 0)};
  arp.bytes[12] = 0x08;
  arp.bytes[13] = 0x06;
  CHECK(runProgram(f.program(), arp).verdict == XDP_PASS);
  Packet runt{std::vector<uint8_t>(ETH_HLEN, 0)};
  runt.bytes[12] = 0x08;
  CHECK(runProgram(f.program(), runt).verdict == XDP_PASS);
  CHECK(f.program().stat(FULCRUM_XDP_PASS) == specs.size() + 2);
  CHECK(dropsTotal(f.program()) == 0);
}

TEST_CASE("IPv4 options are carried inside the tunnel to the right backend", "[xdp]") {
  Fixture f;
  for (uint16_t i = 0; i < 20; ++i) {
    Spec s = tcp4(static_cast<uint16_t>(41000 + i * 13));
    s.options = 8;
    const Packet p = build(s);
    REQUIRE(checkEncapsulated(runProgram(f.program(), p), p, false) ==
            expectedBackend(f.pool4, s));
  }
}

TEST_CASE("fragments and truncated headers to a VIP are dropped and counted", "[xdp]") {
  Fixture f;
  Spec first_fragment = tcp4(42000);
  first_fragment.frag_off = 0x2000;  // More fragments.
  Spec later_fragment = tcp4(42000);
  later_fragment.frag_off = 0x0010;  // Offset 128 bytes.
  Spec short_tcp = tcp4(42000);
  short_tcp.payload = 0;
  short_tcp.cut = 10;  // Half a TCP header.
  Spec short_udp = tcp4(42000);
  short_udp.proto = IPPROTO_UDP;
  short_udp.dport = 53;
  short_udp.payload = 0;
  short_udp.cut = 4;
  Spec v6_fragment;
  v6_fragment.v6 = true;
  v6_fragment.src = "2001:db8::2";
  v6_fragment.dst = kVip6;
  v6_fragment.v6_fragment = true;
  Spec v6_short = v6_fragment;
  v6_short.v6_fragment = false;
  v6_short.payload = 0;
  v6_short.cut = 12;

  for (const Spec& s : {first_fragment, later_fragment, v6_fragment}) {
    CHECK(runProgram(f.program(), build(s)).verdict == XDP_DROP);
  }
  for (const Spec& s : {short_tcp, short_udp, v6_short}) {
    CHECK(runProgram(f.program(), build(s)).verdict == XDP_DROP);
  }
  CHECK(f.program().stat(FULCRUM_XDP_DROP_FRAGMENT) == 3);
  CHECK(f.program().stat(FULCRUM_XDP_DROP_TRUNCATED) == 3);
  CHECK(dropsTotal(f.program()) == 6);
  CHECK(f.program().stat(FULCRUM_XDP_TX) == 0);
}

TEST_CASE("IPv6 VIPs are encapsulated in IPv6 to the userspace Maglev choice", "[xdp]") {
  Fixture f;
  for (uint16_t i = 0; i < 100; ++i) {
    Spec s;
    s.v6 = true;
    s.src = fmt::format("2001:db8:9::{:x}", i + 1);
    s.dst = kVip6;
    s.sport = static_cast<uint16_t>(50000 + i);
    const Packet p = build(s);
    REQUIRE(checkEncapsulated(runProgram(f.program(), p), p, true) ==
            expectedBackend(f.pool6, s));
  }
}

TEST_CASE("a backend going down: pinned flows elsewhere stay, its flows are re-picked",
          "[xdp]") {
  Fixture f;
  std::vector<std::pair<Spec, std::string>> before;
  for (uint16_t i = 0; i < 200; ++i) {
    Spec s = tcp4(static_cast<uint16_t>(10000 + i * 3));
    const Packet p = build(s);
    before.emplace_back(s, checkEncapsulated(runProgram(f.program(), p), p, false));
  }

  // Backend 0 goes down, as the health checker would do it: state, rebuild, publish. The
  // publish itself reprograms both IPv4 VIPs (they share the pool), so the timer's sync
  // finds nothing left to do.
  const uint64_t programmed = f.manager->programmedTotal();
  f.pool4.backends()[0].state = pool::BackendState::Down;
  f.pool4.rebuild();
  REQUIRE(f.manager->programmedTotal() == programmed + 2);
  REQUIRE(f.manager->sync() == 0);

  size_t moved = 0;
  for (const auto& [s, old_dst] : before) {
    const Packet p = build(s);
    const std::string dst = checkEncapsulated(runProgram(f.program(), p), p, false);
    REQUIRE(dst != kBackends4[0]);
    if (old_dst != kBackends4[0]) {
      REQUIRE(dst == old_dst);  // Flows on healthy backends stay where they were.
    } else {
      REQUIRE(dst == expectedBackend(f.pool4, s));  // Re-picked per the new table.
      ++moved;
    }
  }
  CHECK(moved > 30);

  // New flows avoid the downed backend and follow the userspace choice.
  for (uint16_t i = 0; i < 100; ++i) {
    Spec s = tcp4(static_cast<uint16_t>(60000 + i));
    const Packet p = build(s);
    const std::string dst = checkEncapsulated(runProgram(f.program(), p), p, false);
    REQUIRE(dst != kBackends4[0]);
    REQUIRE(dst == expectedBackend(f.pool4, s));
  }
}

TEST_CASE("a VIP with no backend up drops and counts", "[xdp]") {
  Fixture f;
  for (auto& b : f.pool4.backends()) {
    b.state = pool::BackendState::Down;
  }
  f.pool4.rebuild();
  CHECK(runProgram(f.program(), build(tcp4(43000))).verdict == XDP_DROP);
  CHECK(f.program().stat(FULCRUM_XDP_DROP_NO_BACKEND) == 1);
  CHECK(dropsTotal(f.program()) == 1);
}

int main(int argc, char* argv[]) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "xdp_prog_test: needs root (BPF and a network namespace); skipped\n");
    return 77;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("xdp_prog_test: unshare(CLONE_NEWNET)");
    return 77;
  }
  fulcrum::setLogLevel(fulcrum::LogLevel::Warn);
  setUpNamespace();
  return Catch::Session().run(argc, argv);
}
