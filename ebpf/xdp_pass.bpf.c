// SPDX-License-Identifier: GPL-2.0
/* Passes every packet. Tests and the benchmark attach it to the peer of a
 * veth: a frame sent with XDP_TX from a veth in native mode reaches the other
 * end only when that end runs an XDP program too. */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

SEC("xdp")
int fulcrum_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
