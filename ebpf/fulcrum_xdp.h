/* Map layouts and the flow hash shared by the XDP program
 * (ebpf/fulcrum_xdp.bpf.c) and the control plane (lb/xdp/). Both sides
 * include this one header, so a field added here is seen by both or the
 * build breaks.
 *
 * Byte order: addresses and ports are kept exactly as on the wire (network
 * order); counters and indices are host order. An IPv4 address sits in
 * addr[0], the other three words zero.
 *
 * Slot 0 of the backend table is never a real backend: BPF arrays start
 * zeroed, so a Maglev entry or a connection entry that was never written
 * reads as "none".
 */
#ifndef FULCRUM_EBPF_FULCRUM_XDP_H
#define FULCRUM_EBPF_FULCRUM_XDP_H

#ifndef __bpf__
#include <linux/types.h>
#endif

/* Limits, chosen so the maps stay small (the Maglev array is the big one:
 * 16 VIPs x 2 slots x 65537 entries x 4 bytes = 8.4 MB). */
#define FULCRUM_XDP_MAX_VIPS 16
#define FULCRUM_XDP_MAX_BACKENDS 1024
#define FULCRUM_XDP_MAX_TABLE 65537
#define FULCRUM_XDP_CONN_ENTRIES 262144

#define FULCRUM_XDP_FAMILY_V4 4
#define FULCRUM_XDP_FAMILY_V6 6

/* Which parts of a flow the hash covers; the values of Fulcrum's hash_key. */
#define FULCRUM_XDP_HASH_SOURCE_IP 0
#define FULCRUM_XDP_HASH_SOURCE_IP_PORT 1
#define FULCRUM_XDP_HASH_FIVE_TUPLE 2

/* A flow as the program sees it; also the key of the connection table. */
struct fulcrum_flow {
	__u32 src[4];  /* client address, network order */
	__u32 dst[4];  /* VIP address, network order */
	__u16 sport;   /* network order */
	__u16 dport;   /* network order */
	__u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;   /* FULCRUM_XDP_FAMILY_* */
	__u16 pad;     /* zero, so keys compare bytewise */
};

/* Key of the VIP map: one listener. */
struct fulcrum_vip_key {
	__u32 addr[4]; /* network order */
	__u16 port;    /* network order */
	__u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;   /* FULCRUM_XDP_FAMILY_* */
};

/* Key of the VIP-address set: packets to these addresses that cannot be
 * steered (fragments, truncated L4 headers) are dropped and counted instead
 * of being passed to a kernel that does not own the address. */
struct fulcrum_vip_addr {
	__u32 addr[4]; /* network order */
	__u32 family;  /* FULCRUM_XDP_FAMILY_* */
};

/* Value of the VIP map. The control plane replaces the whole value in one
 * update (hash map), so the program sees the old or the new one, never a mix:
 * it writes the inactive Maglev slot first, then flips `active` here. */
struct fulcrum_vip {
	__u32 id;            /* 0..FULCRUM_XDP_MAX_VIPS-1: counters, Maglev rows */
	__u32 table_size[2]; /* Maglev table size of each slot; 0 = empty */
	__u32 src[4];        /* outer source address (the balancer's own) */
	__u8 active;         /* Maglev slot in use: 0 or 1 */
	__u8 hash_key;       /* FULCRUM_XDP_HASH_* */
	__u16 pad;
};

/* Value of the backend array, indexed by backend slot (1..MAX-1). */
struct fulcrum_backend {
	__u32 addr[4];    /* network order; encapsulation destination */
	__u32 generation; /* bumped when the slot gets another backend */
	__u8 family;      /* FULCRUM_XDP_FAMILY_*; 0 = slot unused */
	__u8 up;          /* 0: connection entries to it are re-picked */
	__u16 pad;
};

/* Value of the connection table (an LRU hash keyed by struct fulcrum_flow). */
struct fulcrum_conn {
	__u32 backend;    /* backend slot */
	__u32 generation; /* the slot's generation when picked */
};

/* Per-CPU packet and byte counters, per VIP and per backend slot. */
struct fulcrum_counter {
	__u64 packets;
	__u64 bytes; /* L3 bytes as received, before encapsulation */
};

/* Global per-CPU counters: index into the stats array. Every drop has one. */
enum fulcrum_xdp_stat {
	FULCRUM_XDP_PASS = 0,          /* not for a VIP: left to the kernel */
	FULCRUM_XDP_TX,                /* encapsulated, sent back out (XDP_TX) */
	FULCRUM_XDP_REDIRECT,          /* encapsulated, redirected elsewhere */
	FULCRUM_XDP_CONN_HIT,          /* flow found in the connection table */
	FULCRUM_XDP_CONN_NEW,          /* flow picked from the Maglev table */
	FULCRUM_XDP_DROP_FRAGMENT,     /* IP fragment to a VIP address */
	FULCRUM_XDP_DROP_TRUNCATED,    /* L4 header cut short, to a VIP address */
	FULCRUM_XDP_DROP_NO_BACKEND,   /* the VIP's table is empty */
	FULCRUM_XDP_DROP_ENCAP,        /* no headroom for the outer header */
	FULCRUM_XDP_DROP_NO_ROUTE,     /* no route to the backend */
	FULCRUM_XDP_DROP_NO_NEIGH,     /* backend's next hop not resolved */
	FULCRUM_XDP_DROP_TOO_BIG,      /* encapsulated packet above the MTU */
	FULCRUM_XDP_STAT_COUNT,
};

/* The flow hash, the same bits in the kernel and in userspace (the userspace
 * Maglev lookup of XDP listeners calls it too), so both sides pick the same
 * backend for a flow. Each 32-bit word is folded in with MurmurHash3's 64-bit
 * finalizer (Austin Appleby, "MurmurHash3", fmix64); addresses and ports are
 * hashed as stored (network order), so equal-endian nodes agree. The seed is
 * fixed: every node must use the same one. */
#define FULCRUM_XDP_HASH_SEED 0x46554c4352554d32ULL /* "FULCRUM2" */

static inline __u64 fulcrum_xdp_mix(__u64 h, __u32 word)
{
	h ^= word;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static inline __u64 fulcrum_xdp_flow_hash(const struct fulcrum_flow *f,
					  __u8 hash_key)
{
	__u64 h = fulcrum_xdp_mix(FULCRUM_XDP_HASH_SEED, f->family);
	int i;

	for (i = 0; i < 4; i++) {
		h = fulcrum_xdp_mix(h, f->src[i]);
	}
	if (hash_key == FULCRUM_XDP_HASH_SOURCE_IP) {
		return h;
	}

	h = fulcrum_xdp_mix(h, f->sport);
	if (hash_key == FULCRUM_XDP_HASH_SOURCE_IP_PORT) {
		return h;
	}

	h = fulcrum_xdp_mix(h, f->proto);
	for (i = 0; i < 4; i++) {
		h = fulcrum_xdp_mix(h, f->dst[i]);
	}
	return fulcrum_xdp_mix(h, f->dport);
}

#endif /* FULCRUM_EBPF_FULCRUM_XDP_H */
