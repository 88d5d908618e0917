/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The minimal, self-contained set of definitions bpf/sluice.c and bpf/lib
 * need: fixed-width types, the UAPI constants and struct __sk_buff from
 * <linux/bpf.h> and <linux/pkt_cls.h>, the map-definition macros of
 * libbpf's <bpf/bpf_helpers.h>, and the helpers the programs call.
 *
 * Vendored instead of included from /usr/include so that the compiled
 * object (and the BTF in it) depends on nothing but this tree and the
 * pinned clang: `go generate` gives byte-identical output on any machine.
 * See bpf/README.md for where each part comes from.
 */
#ifndef SLUICE_BPF_H
#define SLUICE_BPF_H

/* <asm-generic/int-ll64.h>, <linux/types.h> */
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;

/* <linux/bpf.h>: enum bpf_map_type */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_HASH 5
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_LPM_TRIE 11
#define BPF_MAP_TYPE_ARRAY_OF_MAPS 12
#define BPF_MAP_TYPE_HASH_OF_MAPS 13

/* <linux/bpf.h>: map flags */
#define BPF_F_NO_PREALLOC (1U << 0)

/* <linux/pkt_cls.h>: tc verdicts */
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7

/* <linux/bpf.h> (6.6+): the verdicts of a tcx program. An enum, as in the
 * kernel, which also lets bpf2go hand the values to Go. */
enum tcx_action_base {
	TCX_NEXT = -1,
	TCX_PASS = TC_ACT_OK,
	TCX_DROP = TC_ACT_SHOT,
	TCX_REDIRECT = TC_ACT_REDIRECT,
};

/* <linux/if_ether.h> */
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* <linux/in.h>, <linux/in6.h> */
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60
#define IPPROTO_SCTP 132

/* <linux/bpf.h>: the packet context of tc programs (UAPI, stable). */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	__u64 flow_keys; /* __bpf_md_ptr(struct bpf_flow_keys *, flow_keys) */
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	__u64 sk; /* __bpf_md_ptr(struct bpf_sock *, sk) */
	__u32 gso_size;
	__u8 tstamp_type;
	__u32 : 24;
	__u64 hwtstamp;
};

/* <bpf/bpf_helpers.h> */
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define __always_inline inline __attribute__((always_inline))

/* <bpf/bpf_helper_defs.h>: helper numbers from <linux/bpf.h>. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) = (void *)26;
static __u64 (*bpf_ktime_get_coarse_ns)(void) = (void *)160;

/* <bpf/bpf_endian.h>, for the little-endian target (bpfel) only. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sluice.c is built for bpfel only"
#endif
#define bpf_htons(x) ((__be16)__builtin_bswap16(x))
#define bpf_ntohs(x) ((__u16)__builtin_bswap16(x))

#define BPF_NOEXIST 1
#define BPF_ANY 0

#endif /* SLUICE_BPF_H */
