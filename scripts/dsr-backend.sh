#!/usr/bin/env bash
# Prepares (or undoes) a Linux host as a backend of a Fulcrum XDP listener (direct server
# return). Fulcrum's XDP program sends each client packet to the backend's own address inside
# an IPIP (IPv4 VIP) or IPv6-in-IPv6 (IPv6 VIP) tunnel; the backend takes the inner packet,
# which is addressed to the VIP, and answers the client directly from the VIP.
#
#   scripts/dsr-backend.sh up IFACE VIP...    e.g. up eth0 198.18.100.10 2001:db8:100::10
#   scripts/dsr-backend.sh down IFACE VIP...
#
# IFACE is the interface the balancer's encapsulated packets arrive on.
#
# up:
#   - decapsulation: collect-metadata ("external") tunnel devices fulcrum-ipip and
#     fulcrum-ip6 that take every IPIP / IPv6-in-IPv6 packet sent to a local address; on a
#     kernel built without IPIP or ip6tnl support, the XDP program fulcrum_decap.bpf.o
#     (built into build/ebpf/; another path in FULCRUM_DECAP_OBJ) on IFACE strips the outer
#     header instead;
#   - each VIP on lo (/32 or /128), so the kernel accepts the inner packets and services
#     bound to 0.0.0.0/:: (or to the VIP) answer from the VIP;
#   - rp_filter off on the tunnel devices and "all" (the inner source, the client, is not
#     routed via the tunnel, so strict reverse-path filtering would drop it);
#   - arp_ignore=1 and arp_announce=2, so the backend never answers ARP for the VIP nor uses
#     it as an ARP source: the VIP's traffic must keep arriving at the balancer.
# Run as root, in the backend's network namespace. Idempotent.
set -euo pipefail

action="${1:-}"
iface="${2:-}"
shift 2 || true
if [ "$action" != up ] && [ "$action" != down ] || [ -z "$iface" ] || [ $# -eq 0 ]; then
  echo "usage: dsr-backend.sh up|down IFACE VIP..." >&2
  exit 2
fi
decap_obj="${FULCRUM_DECAP_OBJ:-$(dirname "$0")/../build/ebpf/fulcrum_decap.bpf.o}"

prefix_of() {
  case "$1" in
    *:*) echo 128 ;;
    *) echo 32 ;;
  esac
}

if [ "$action" = down ]; then
  for vip in "$@"; do
    ip addr del "$vip/$(prefix_of "$vip")" dev lo 2>/dev/null || true
  done
  ip link del fulcrum-ipip 2>/dev/null || true
  ip link del fulcrum-ip6 2>/dev/null || true
  ip link set dev "$iface" xdp off 2>/dev/null || true
  exit 0
fi

modprobe -q ipip 2>/dev/null || true
modprobe -q ip6_tunnel 2>/dev/null || true

# Tunnel devices where the kernel has them; else the BPF decapsulator on IFACE.
tunnels=1
if ! ip link show fulcrum-ipip >/dev/null 2>&1; then
  ip link add name fulcrum-ipip type ipip external 2>/dev/null || tunnels=0
fi
if [ "$tunnels" = 1 ] && ! ip link show fulcrum-ip6 >/dev/null 2>&1; then
  ip link add name fulcrum-ip6 type ip6tnl external 2>/dev/null || tunnels=0
fi
if [ "$tunnels" = 1 ]; then
  ip link set fulcrum-ipip up
  ip link set fulcrum-ip6 up
  sysctl -qw net.ipv4.conf.fulcrum-ipip.rp_filter=0
else
  ip link del fulcrum-ipip 2>/dev/null || true
  if [ ! -f "$decap_obj" ]; then
    echo "dsr-backend: this kernel has no IPIP/ip6tnl devices and $decap_obj is missing;" \
         "build Fulcrum or set FULCRUM_DECAP_OBJ" >&2
    exit 1
  fi
  ip link set dev "$iface" xdp obj "$decap_obj" sec xdp
  echo "dsr-backend: no IPIP/ip6tnl in this kernel; decapsulating with XDP on $iface"
fi

for vip in "$@"; do
  ip addr replace "$vip/$(prefix_of "$vip")" dev lo
done

sysctl -qw net.ipv4.conf.all.rp_filter=0
sysctl -qw net.ipv4.conf.default.rp_filter=0
sysctl -qw net.ipv4.conf.all.arp_ignore=1
sysctl -qw net.ipv4.conf.all.arp_announce=2
