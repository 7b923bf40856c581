// SPDX-License-Identifier: GPL-2.0
/* Fulcrum's XDP fast path: packets to a configured VIP (address, port, TCP or
 * UDP) go to a backend chosen by Maglev, encapsulated in IPIP (IPv4 VIPs) or
 * IPv6-in-IPv6 (IPv6 VIPs), so the backend answers the client directly (DSR).
 * Everything else passes to the kernel untouched.
 *
 * Per packet: parse, look the VIP up, find the flow in the LRU connection
 * table or pick from the VIP's active Maglev slot, prepend the outer header,
 * look the next hop up in the FIB and send (XDP_TX on the same interface,
 * bpf_redirect otherwise). Each outcome bumps one per-CPU counter; there are
 * no logs here.
 *
 * Map layouts and the flow hash live in fulcrum_xdp.h, shared with lb/xdp/.
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "fulcrum_xdp.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_ALEN 6
#define AF_INET 2
#define AF_INET6 10
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define NEXTHDR_FRAGMENT 44
#define OUTER_TTL 64

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FULCRUM_XDP_MAX_VIPS);
	__type(key, struct fulcrum_vip_key);
	__type(value, struct fulcrum_vip);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FULCRUM_XDP_MAX_VIPS);
	__type(key, struct fulcrum_vip_addr);
	__type(value, __u32);
} vip_addrs SEC(".maps");

/* Row (vip id * 2 + slot), column hash % size; values are backend slots. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FULCRUM_XDP_MAX_VIPS * 2 * FULCRUM_XDP_MAX_TABLE);
	__type(key, __u32);
	__type(value, __u32);
} maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FULCRUM_XDP_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct fulcrum_backend);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FULCRUM_XDP_CONN_ENTRIES);
	__type(key, struct fulcrum_flow);
	__type(value, struct fulcrum_conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FULCRUM_XDP_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct fulcrum_counter);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FULCRUM_XDP_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct fulcrum_counter);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FULCRUM_XDP_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Bumps a global counter and returns the verdict, so every exit reads as
 * "return count(VERDICT, REASON)". */
static __always_inline int count(int verdict, __u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &stat);

	if (value) {
		*value += 1;
	}
	return verdict;
}

static __always_inline void add(void *map, __u32 index, __u64 bytes)
{
	struct fulcrum_counter *c = bpf_map_lookup_elem(map, &index);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* A packet to a VIP address that cannot be steered: dropped (the kernel does
 * not own the address either), else passed. */
static __always_inline int unsteerable(struct fulcrum_flow *f, __u32 stat)
{
	struct fulcrum_vip_addr key = {};

	__builtin_memcpy(key.addr, f->dst, sizeof(key.addr));
	key.family = f->family;
	if (bpf_map_lookup_elem(&vip_addrs, &key)) {
		return count(XDP_DROP, stat);
	}
	return count(XDP_PASS, FULCRUM_XDP_PASS);
}

/* Reads the ports at l4; returns -1 when the L4 header is cut short. */
static __always_inline int parse_ports(void *l4, void *end,
				       struct fulcrum_flow *f)
{
	if (f->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end) {
			return -1;
		}
		f->sport = th->source;
		f->dport = th->dest;
		return 0;
	}

	struct udphdr *uh = l4;

	if ((void *)(uh + 1) > end) {
		return -1;
	}
	f->sport = uh->source;
	f->dport = uh->dest;
	return 0;
}

/* Backend slot for a flow: the connection table while its backend is still
 * up and still the same backend, else the VIP's active Maglev slot. */
static __always_inline __u32 pick(struct fulcrum_flow *f,
				  struct fulcrum_vip *vip,
				  struct fulcrum_backend **out)
{
	struct fulcrum_conn *conn = bpf_map_lookup_elem(&conns, f);
	struct fulcrum_backend *be;
	__u32 slot, size, index;

	if (conn) {
		slot = conn->backend;
		be = bpf_map_lookup_elem(&backends, &slot);
		if (be && be->up && be->generation == conn->generation) {
			*out = be;
			count(0, FULCRUM_XDP_CONN_HIT);
			return slot;
		}
	}

	size = vip->table_size[vip->active & 1];
	if (size == 0 || size > FULCRUM_XDP_MAX_TABLE) {
		return 0;
	}
	index = (vip->id * 2 + (vip->active & 1)) * FULCRUM_XDP_MAX_TABLE +
		(__u32)(fulcrum_xdp_flow_hash(f, vip->hash_key) % size);

	__u32 *entry = bpf_map_lookup_elem(&maglev, &index);

	if (!entry || *entry == 0) {
		return 0;
	}
	slot = *entry;
	be = bpf_map_lookup_elem(&backends, &slot);
	if (!be || be->family == 0) {
		return 0;
	}

	struct fulcrum_conn fresh = {
		.backend = slot,
		.generation = be->generation,
	};

	bpf_map_update_elem(&conns, f, &fresh, BPF_ANY);
	count(0, FULCRUM_XDP_CONN_NEW);
	*out = be;
	return slot;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Prepends an outer IPv4 header (protocol 4, IPIP). Returns 0 or -1. */
static __always_inline int encap_v4(struct xdp_md *ctx, struct fulcrum_vip *vip,
				    struct fulcrum_backend *be, __u16 inner_len,
				    __u8 tos)
{
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *outer;
	__u16 *words;
	__u32 sum = 0;
	int i;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr))) {
		return -1;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	outer = data + sizeof(*eth);
	if ((void *)(outer + 1) > end) {
		return -1;
	}

	eth->h_proto = bpf_htons(ETH_P_IP);
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = tos;
	outer->tot_len = bpf_htons(inner_len + sizeof(*outer));
	outer->id = 0;
	outer->frag_off = 0;
	outer->ttl = OUTER_TTL;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = vip->src[0];
	outer->daddr = be->addr[0];

	words = (__u16 *)outer;
	for (i = 0; i < (int)sizeof(*outer) / 2; i++) {
		sum += words[i];
	}
	outer->check = csum_fold(sum);
	return 0;
}

/* Prepends an outer IPv6 header (next header 41, IPv6-in-IPv6). */
static __always_inline int encap_v6(struct xdp_md *ctx, struct fulcrum_vip *vip,
				    struct fulcrum_backend *be, __u16 inner_len)
{
	void *data, *end;
	struct ethhdr *eth;
	struct ipv6hdr *outer;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ipv6hdr))) {
		return -1;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	outer = data + sizeof(*eth);
	if ((void *)(outer + 1) > end) {
		return -1;
	}

	eth->h_proto = bpf_htons(ETH_P_IPV6);
	*(__u32 *)outer = bpf_htonl(0x60000000);
	outer->payload_len = bpf_htons(inner_len);
	outer->nexthdr = IPPROTO_IPV6;
	outer->hop_limit = OUTER_TTL;
	__builtin_memcpy(&outer->saddr, vip->src, 16);
	__builtin_memcpy(&outer->daddr, be->addr, 16);
	return 0;
}

/* Fills the Ethernet header from the FIB and sends the encapsulated packet. */
static __always_inline int forward(struct xdp_md *ctx, struct fulcrum_vip *vip,
				   struct fulcrum_backend *be, __u16 outer_len)
{
	struct bpf_fib_lookup fib = {};
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	int rc;

	if ((void *)(eth + 1) > end) {
		return count(XDP_DROP, FULCRUM_XDP_DROP_ENCAP);
	}

	fib.ifindex = ctx->ingress_ifindex;
	fib.tot_len = outer_len;
	if (be->family == FULCRUM_XDP_FAMILY_V4) {
		fib.family = AF_INET;
		fib.l4_protocol = IPPROTO_IPIP;
		fib.ipv4_src = vip->src[0];
		fib.ipv4_dst = be->addr[0];
	} else {
		fib.family = AF_INET6;
		fib.l4_protocol = IPPROTO_IPV6;
		__builtin_memcpy(fib.ipv6_src, vip->src, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
	}

	/* An output lookup: the outer packet leaves from the balancer's own
	 * address, so the interface need not have forwarding enabled. */
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		return count(XDP_DROP, FULCRUM_XDP_DROP_NO_NEIGH);
	}
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		return count(XDP_DROP, FULCRUM_XDP_DROP_TOO_BIG);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		return count(XDP_DROP, FULCRUM_XDP_DROP_NO_ROUTE);
	}

	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == ctx->ingress_ifindex) {
		return count(XDP_TX, FULCRUM_XDP_TX);
	}
	count(0, FULCRUM_XDP_REDIRECT);
	return bpf_redirect(fib.ifindex, 0);
}

/* The packet is for this VIP: pick, count, encapsulate and send. */
static __always_inline int steer(struct xdp_md *ctx, struct fulcrum_flow *f,
				 struct fulcrum_vip *vip, __u16 inner_len,
				 __u8 tos)
{
	struct fulcrum_backend *be = 0;
	__u32 slot = pick(f, vip, &be);
	__u16 outer_len;

	add(&vip_stats, vip->id, inner_len);
	if (slot == 0 || !be) {
		return count(XDP_DROP, FULCRUM_XDP_DROP_NO_BACKEND);
	}
	add(&backend_stats, slot, inner_len);

	if (be->family == FULCRUM_XDP_FAMILY_V4) {
		if (encap_v4(ctx, vip, be, inner_len, tos)) {
			return count(XDP_DROP, FULCRUM_XDP_DROP_ENCAP);
		}
		outer_len = inner_len + sizeof(struct iphdr);
	} else {
		if (encap_v6(ctx, vip, be, inner_len)) {
			return count(XDP_DROP, FULCRUM_XDP_DROP_ENCAP);
		}
		outer_len = inner_len + sizeof(struct ipv6hdr);
	}
	return forward(ctx, vip, be, outer_len);
}

static __always_inline int lookup_and_steer(struct xdp_md *ctx,
					    struct fulcrum_flow *f,
					    __u16 inner_len, __u8 tos)
{
	struct fulcrum_vip_key key = {};
	struct fulcrum_vip *vip;

	__builtin_memcpy(key.addr, f->dst, sizeof(key.addr));
	key.port = f->dport;
	key.proto = f->proto;
	key.family = f->family;
	vip = bpf_map_lookup_elem(&vips, &key);
	if (!vip) {
		return count(XDP_PASS, FULCRUM_XDP_PASS);
	}
	return steer(ctx, f, vip, inner_len, tos);
}

static __always_inline int handle_v4(struct xdp_md *ctx, void *l3, void *end)
{
	struct fulcrum_flow f = {};
	struct iphdr *ip = l3;
	__u32 ihl_bytes;

	if ((void *)(ip + 1) > end || ip->ihl < 5) {
		return count(XDP_PASS, FULCRUM_XDP_PASS);
	}
	f.family = FULCRUM_XDP_FAMILY_V4;
	f.src[0] = ip->saddr;
	f.dst[0] = ip->daddr;
	f.proto = ip->protocol;
	if (f.proto != IPPROTO_TCP && f.proto != IPPROTO_UDP) {
		return count(XDP_PASS, FULCRUM_XDP_PASS);
	}

	/* A fragment has no ports (or not all of the payload), so no flow can
	 * be built from it; reassembly is the backend's job, not ours. */
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		return unsteerable(&f, FULCRUM_XDP_DROP_FRAGMENT);
	}

	/* Options are carried through untouched inside the tunnel. */
	ihl_bytes = ip->ihl * 4;
	if (l3 + ihl_bytes > end ||
	    parse_ports(l3 + ihl_bytes, end, &f) < 0) {
		return unsteerable(&f, FULCRUM_XDP_DROP_TRUNCATED);
	}
	return lookup_and_steer(ctx, &f, end - l3, ip->tos);
}

static __always_inline int handle_v6(struct xdp_md *ctx, void *l3, void *end)
{
	struct fulcrum_flow f = {};
	struct ipv6hdr *ip = l3;

	if ((void *)(ip + 1) > end) {
		return count(XDP_PASS, FULCRUM_XDP_PASS);
	}
	f.family = FULCRUM_XDP_FAMILY_V6;
	__builtin_memcpy(f.src, &ip->saddr, 16);
	__builtin_memcpy(f.dst, &ip->daddr, 16);
	f.proto = ip->nexthdr;

	if (f.proto == NEXTHDR_FRAGMENT) {
		return unsteerable(&f, FULCRUM_XDP_DROP_FRAGMENT);
	}
	/* Other extension headers (and ICMPv6, which neighbour discovery for
	 * the VIP needs) go to the kernel. */
	if (f.proto != IPPROTO_TCP && f.proto != IPPROTO_UDP) {
		return count(XDP_PASS, FULCRUM_XDP_PASS);
	}
	if (parse_ports(ip + 1, end, &f) < 0) {
		return unsteerable(&f, FULCRUM_XDP_DROP_TRUNCATED);
	}
	return lookup_and_steer(ctx, &f, end - l3, 0);
}

SEC("xdp")
int fulcrum_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end) {
		return count(XDP_PASS, FULCRUM_XDP_PASS);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		return handle_v4(ctx, eth + 1, end);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		return handle_v6(ctx, eth + 1, end);
	}
	return count(XDP_PASS, FULCRUM_XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
