/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps and their key and value types: everything internal/datapath
 * reads or writes. Each struct here is exported to Go by bpf2go (-type in
 * internal/datapath/gen.go); internal/datapath/doc.go draws the layout.
 *
 * Two generations: sluice_state holds the epoch, a counter the loader
 * bumps on every snapshot; its low bit says which of two copies of
 * (endpoints, ipcache, policy) is live. The loader rewrites the idle copy,
 * flips sluice_state, and waits for running programs to finish (a
 * map-in-map update waits for an RCU grace period) before it touches the
 * copy that was live. A program reads the generation once and uses only
 * that copy, so every packet sees one whole snapshot: never a half-written
 * policy, never an ipcache that belongs to another snapshot than the
 * policy.
 */
#ifndef SLUICE_LIB_MAPS_H
#define SLUICE_LIB_MAPS_H

#include "common.h"

struct endpoint_info {
	__u32 id;
	__u8 ingress_isolated;
	__u8 egress_isolated;
	__u8 pad[2];
};

struct ipcache_key {
	__u32 prefixlen; /* 0..128; IPv4 prefixes are 96 + bits */
	__u8 addr[16];
};

/*
 * One entry of an endpoint's policy in one direction: the peer class, the
 * protocol (0: any protocol, with plen and port 0) and a destination port
 * prefix of plen bits (0-16; port in network order, the bits past plen
 * zero). A hash lookup per prefix length the map uses keeps the cost of a
 * lookup independent of the number of entries (an LPM trie grows deeper).
 *
 * Each inner map also holds one mask entry, key {CLASS_MASK, 0, 0, 0}: bit
 * n says entries with port prefix length n exist, MASK_PROTO_ANY that
 * (class, ProtoAny) entries do; a packet is looked up only at those.
 */
struct policy_key {
	__u32 class;
	__u8 proto;
	__u8 plen;
	__u8 port[2];
};

struct policy_outer_key {
	__u32 endpoint;
	__u8 direction; /* enum direction */
	__u8 generation;
	__u8 pad[2];
};

/*
 * A flow as the hook that allowed it saw it: recorded per endpoint and
 * direction. For ICMP echo, sport is the identifier of a request and dport
 * that of a reply, so reversing a reply's tuple gives its request's.
 */
struct ct_key {
	__u32 endpoint;
	__u8 direction; /* enum direction */
	__u8 proto;
	__u8 pad[2];
	__be16 sport;
	__be16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
};

/*
 * epoch: the snapshot under which the hook last judged this flow's forward
 * packets against the policy. While it is the live epoch, the policy's
 * answer can't have changed and the next forward packet passes on this
 * entry alone: per-packet cost of an established flow is a hash lookup,
 * whatever the size of the policy.
 */
struct ct_value {
	__u64 last_seen_ns;
	__u32 epoch;
	__u32 pad;
};

/*
 * A pod's host-side veth (key: its ifindex) and the addresses its pod may
 * send from; unused slots are all zero. spoofed counts the packets dropped
 * for another source.
 */
struct iface_info {
	__u8 addr[2][16];
	__u64 spoofed;
};

struct counters {
	__u64 ingress_allowed;
	__u64 ingress_dropped;
	__u64 egress_allowed;
	__u64 egress_dropped;
};

/*
 * Types Go needs that no map definition names in full: inner-map key and
 * value types are reached only through pointers, which clang emits as
 * forward declarations, and enums used only as numbers don't reach BTF at
 * all. A global pointer to a struct holding them puts the whole types into
 * BTF (for the loader and for bpf2go -type); nothing reads it.
 */
struct btf_anchor {
	struct endpoint_info endpoint_info;
	struct ipcache_key ipcache_key;
	struct policy_key policy_key;
	struct iface_info iface_info;
	enum direction direction;
	enum peer_class peer_class;
	enum policy_mask policy_mask;
	enum tcx_action_base tcx_action_base;
};
const struct btf_anchor *unused_btf_anchor __attribute__((unused));

/* Sizes below are placeholders: the loader sets every max_entries. */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* the live epoch; its low bit is the generation */
} sluice_state SEC(".maps");

struct endpoints_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u8[16]);
	__type(value, struct endpoint_info);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct endpoints_inner);
} sluice_endpoints SEC(".maps");

struct ipcache_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct ipcache_key);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct ipcache_inner);
} sluice_ipcache SEC(".maps");

struct policy_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct policy_key);
	__type(value, __u32); /* 1; the mask entry: the mask */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, struct policy_outer_key);
	__array(values, struct policy_inner);
} sluice_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
} sluice_conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} sluice_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iface_info);
} sluice_ifaces SEC(".maps");

#endif /* SLUICE_LIB_MAPS_H */
