// SPDX-License-Identifier: GPL-2.0
/* Backend-side decapsulation for kernels built without IPIP / ip6tnl tunnel
 * devices: strips the outer IPv4 header of an IPIP packet (protocol 4) or the
 * outer IPv6 header of an IPv6-in-IPv6 packet (next header 41) and passes the
 * inner packet, addressed to the VIP, to the stack. scripts/dsr-backend.sh
 * attaches it when `ip link add ... type ipip` is not available.
 *
 * Only the outer header is removed; the inner packet is not checked, as the
 * kernel validates it like any other received packet. Everything else passes
 * untouched.
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* Moves the Ethernet header forward over the outer header and drops it. */
static __always_inline int strip(struct xdp_md *ctx, int outer_len,
				 __u16 inner_proto)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr eth_copy;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end) {
		return XDP_PASS;
	}
	__builtin_memcpy(&eth_copy, eth, sizeof(eth_copy));
	if (bpf_xdp_adjust_head(ctx, outer_len)) {
		return XDP_PASS;
	}

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end) {
		return XDP_DROP;
	}
	__builtin_memcpy(eth, &eth_copy, sizeof(*eth));
	eth->h_proto = bpf_htons(inner_proto);
	return XDP_PASS;
}

SEC("xdp")
int fulcrum_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end) {
		return XDP_PASS;
	}

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_IPIP) {
			return XDP_PASS;
		}
		/* Fulcrum writes a 20-byte outer header without options. */
		if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3FFF))) {
			return XDP_PASS;
		}
		return strip(ctx, sizeof(*ip), ETH_P_IP);
	}

	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_IPV6) {
			return XDP_PASS;
		}
		return strip(ctx, sizeof(*ip6), ETH_P_IPV6);
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
