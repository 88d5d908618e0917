// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Sluice's NetworkPolicy datapath: two tc (tcx) programs on a pod's
 * host-side veth.
 *
 *   sluice_from_pod  tcx ingress of the host veth: packets leaving the pod,
 *                    checked against the source endpoint's egress policy.
 *   sluice_to_pod    tcx egress of the host veth: packets entering the pod,
 *                    checked against the destination endpoint's ingress
 *                    policy.
 *
 * The maps hold what internal/policy compiles (see internal/policy/
 * entries.go), written by internal/datapath. Every address is kept as 16
 * bytes: IPv6 as is, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one code
 * path and one set of maps serves both families.
 *
 * Two generations: `state` holds the epoch, a counter the loader bumps on
 * every snapshot; its low bit says which of two copies of (endpoints,
 * ipcache, policy) is live. The loader rewrites the idle copy, flips `state`, and
 * waits for running programs to finish (a map-in-map update waits for an
 * RCU grace period) before it touches the copy that was live. A program
 * reads the generation once and uses only that copy, so every packet sees
 * one whole snapshot: never a half-written policy, never an ipcache that
 * belongs to another snapshot than the policy.
 */
#include "sluice_bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define DIR_INGRESS 0
#define DIR_EGRESS 1

#define CLASS_ANY 0
#define CLASS_WORLD 2

/*
 * The key of an inner policy map's mask entry (see struct policy_key); no
 * class has this number.
 */
#define CLASS_MASK 0xffffffffU
/* Mask bit for (class, ProtoAny) entries; bits 0-16 are port prefix lengths. */
#define MASK_PROTO_ANY (1U << 17)

/* Conntrack lifetimes since the last packet of a flow; set before load. */
volatile const __u64 ct_timeout_tcp_ns = 21600ULL * 1000000000ULL;
volatile const __u64 ct_timeout_other_ns = 60ULL * 1000000000ULL;
/* How stale last_seen may get before a packet rewrites it. */
#define CT_REFRESH_NS 1000000000ULL

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
	__u8 direction;
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
	__u8 direction;
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
 * Inner-map definitions reach their key and value types only through
 * pointers, which clang emits as forward declarations; these references
 * put the whole types into BTF (needed by the loader and by bpf2go -type).
 */
const struct endpoint_info *unused_endpoint_info __attribute__((unused));
const struct ipcache_key *unused_ipcache_key __attribute__((unused));
const struct policy_key *unused_policy_key __attribute__((unused));
const struct iface_info *unused_iface_info __attribute__((unused));

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

/* A conntrack tuple as the hook sees it; for ICMP echo see struct ct_key. */
struct flow {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
};

/* What the parser found. */
struct pkt {
	__u8 saddr[16];  /* the packet's addresses: endpoint and policy peer */
	__u8 daddr[16];
	__u8 proto;
	__u8 has_ports;  /* TCP/UDP/SCTP with its ports: port entries apply */
	__u8 has_tuple;  /* ct may be the reply of a recorded flow */
	__u8 track;      /* a new flow the hook may record when allowed */
	/*
	 * The conntrack tuple: the packet's own, or for an ICMP error the
	 * flow it reports on, reversed (the error travels like a reply of
	 * the packet that caused it).
	 */
	struct flow ct;
};

enum parse_result {
	PARSE_OK,
	PARSE_PASS, /* not ours to judge: non-IP, IPv6 neighbour discovery */
	PARSE_DROP, /* an IP header the stack would drop anyway */
};

struct iphdr_min {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct ipv6hdr_min {
	__be32 vtc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline void map_v4(__u8 *dst, const __u8 *v4)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, v4, 4);
}

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1];
}

/* The IPv6 extension headers in front of the transport header, at most
 * this many (more: the packet is judged as protocol "unknown", which only
 * ProtoAny entries allow). */
#define MAX_IPV6_EXT 6

/* ICMP errors that quote the packet they report on (RFC 792, RFC 4443). */
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMP_ECHOREPLY 0
#define ICMPV6_ECHO_REPLY 129

static __always_inline int is_icmp_error(int v6, __u8 type)
{
	if (v6)
		return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

/*
 * The tuple of the packet an ICMP error at off quotes (its IP header
 * follows the 8-byte ICMP header), reversed into p->ct. Only a quote that
 * names a flow conntrack could hold is used: same family, TCP/UDP/SCTP
 * with ports or an ICMP echo request, no IPv6 extension headers.
 */
static __always_inline int parse_quoted(struct __sk_buff *skb, __u32 off, int v6, struct pkt *p)
{
	__u8 *qs, *qd;
	__u8 proto;
	__u32 l4;
	union {
		struct iphdr_min v4;
		struct ipv6hdr_min v6;
	} q;
	union {
		__be16 ports[2];
		__u8 icmp[8];
	} t;

	if (v6) {
		if (bpf_skb_load_bytes(skb, off, &q.v6, sizeof(q.v6)) < 0)
			return 0;
		if ((q.v6.vtc_flow & 0xf0) != 0x60)
			return 0;
		qs = q.v6.saddr;
		qd = q.v6.daddr;
		proto = q.v6.nexthdr;
		l4 = off + sizeof(q.v6);
	} else {
		if (bpf_skb_load_bytes(skb, off, &q.v4, sizeof(q.v4)) < 0)
			return 0;
		if ((q.v4.ver_ihl >> 4) != 4 || (q.v4.ver_ihl & 0xf) < 5)
			return 0;
		qs = q.v4.saddr;
		qd = q.v4.daddr;
		proto = q.v4.protocol;
		l4 = off + (q.v4.ver_ihl & 0xf) * 4;
	}

	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, l4, t.ports, sizeof(t.ports)) < 0)
			return 0;
		p->ct.sport = t.ports[1];
		p->ct.dport = t.ports[0];
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (bpf_skb_load_bytes(skb, l4, t.icmp, sizeof(t.icmp)) < 0)
			return 0;
		if (t.icmp[0] != (v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO))
			return 0;
		p->ct.sport = 0;
		__builtin_memcpy(&p->ct.dport, t.icmp + 4, 2);
		break;
	default:
		return 0;
	}
	if (v6) {
		__builtin_memcpy(p->ct.saddr, qd, 16);
		__builtin_memcpy(p->ct.daddr, qs, 16);
	} else {
		map_v4(p->ct.saddr, qd);
		map_v4(p->ct.daddr, qs);
	}
	p->ct.proto = proto;
	return 1;
}

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	__u32 l4off;
	int nonfirst_fragment = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr_min ip;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
			return PARSE_DROP;
		if ((ip.ver_ihl >> 4) != 4 || (ip.ver_ihl & 0xf) < 5)
			return PARSE_DROP;
		map_v4(p->saddr, ip.saddr);
		map_v4(p->daddr, ip.daddr);
		p->proto = ip.protocol;
		l4off = ETH_HLEN + (ip.ver_ihl & 0xf) * 4;
		/* Fragment offset (the low 13 bits) non-zero: no L4 header. */
		nonfirst_fragment = (bpf_ntohs(ip.frag_off) & 0x1fff) != 0;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr_min ip6;
		__u8 nh;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
			return PARSE_DROP;
		if ((ip6.vtc_flow & 0xf0) != 0x60)
			return PARSE_DROP;
		__builtin_memcpy(p->saddr, ip6.saddr, 16);
		__builtin_memcpy(p->daddr, ip6.daddr, 16);
		nh = ip6.nexthdr;
		l4off = ETH_HLEN + sizeof(ip6);
#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT; i++) {
			__u8 ext[4];

			if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS &&
			    nh != IPPROTO_FRAGMENT && nh != IPPROTO_AH)
				break;
			if (bpf_skb_load_bytes(skb, l4off, ext, sizeof(ext)) < 0)
				return PARSE_DROP;
			if (nh == IPPROTO_FRAGMENT) {
				/* offset is the high 13 bits of bytes 2-3 */
				if (((ext[2] << 8) | ext[3]) & 0xfff8)
					nonfirst_fragment = 1;
				l4off += 8;
			} else if (nh == IPPROTO_AH) {
				l4off += (ext[1] + 2) * 4;
			} else {
				l4off += (ext[1] + 1) * 8;
			}
			nh = ext[0];
		}
		p->proto = nh;
	} else {
		return PARSE_PASS;
	}

	if (nonfirst_fragment)
		return PARSE_OK; /* no ports, no tuple: see bpf/README.md */

	/* The packet's own tuple (an ICMP error replaces it). */
	__builtin_memcpy(p->ct.saddr, p->saddr, 16);
	__builtin_memcpy(p->ct.daddr, p->daddr, 16);
	p->ct.proto = p->proto;

	switch (p->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__be16 ports[2];

		/* A first fragment too short to hold the ports is judged
		 * without them (tiny-fragment attack). */
		if (bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)) < 0)
			return PARSE_OK;
		p->ct.sport = ports[0];
		p->ct.dport = ports[1];
		p->has_ports = 1;
		p->has_tuple = 1;
		p->track = 1;
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 icmp[8];
		__be16 id;
		int v6 = p->proto == IPPROTO_ICMPV6;

		if (bpf_skb_load_bytes(skb, l4off, icmp, sizeof(icmp)) < 0)
			return PARSE_OK;
		/* Neighbour discovery (router/neighbour solicitation and
		 * advertisement, redirect) is IPv6's ARP. */
		if (v6 && icmp[0] >= 133 && icmp[0] <= 137)
			return PARSE_PASS;
		if (is_icmp_error(v6, icmp[0])) {
			/* Related to the flow it quotes, or judged as ICMP. */
			p->has_tuple = parse_quoted(skb, l4off + sizeof(icmp), v6, p);
			return PARSE_OK;
		}
		__builtin_memcpy(&id, icmp + 4, 2);
		if (icmp[0] == (v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO)) {
			p->ct.sport = id;
			p->has_tuple = 1;
			p->track = 1;
		} else if (icmp[0] == (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY)) {
			p->ct.dport = id;
			p->has_tuple = 1;
		}
		break;
	}
	}
	return PARSE_OK;
}

/*
 * Does a packet leaving a pod's veth carry a source the pod may not use?
 * Only veths the loader registered (Attach with addresses) are checked.
 * IPv6 link-local and unspecified sources pass: the kernel never forwards
 * them off the link, and the pod needs them for neighbour discovery and
 * multicast listener reports.
 */
static __always_inline int spoofed(struct __sk_buff *skb, const struct pkt *p)
{
	__u32 ifindex = skb->ifindex;
	struct iface_info *ifc = bpf_map_lookup_elem(&sluice_ifaces, &ifindex);
	const __u64 *s = (const __u64 *)p->saddr;

	if (!ifc)
		return 0;
	if (addr_eq(p->saddr, ifc->addr[0]) || addr_eq(p->saddr, ifc->addr[1]))
		return 0;
	if ((p->saddr[0] == 0xfe && (p->saddr[1] & 0xc0) == 0x80) || (s[0] == 0 && s[1] == 0))
		return 0;
	__sync_fetch_and_add(&ifc->spoofed, 1);
	return 1;
}

static __always_inline __u64 ct_timeout(__u8 proto)
{
	return proto == IPPROTO_TCP ? ct_timeout_tcp_ns : ct_timeout_other_ns;
}

static __always_inline void ct_fill(struct ct_key *k, __u32 id, __u8 dir, const struct flow *f, int reverse)
{
	k->endpoint = id;
	k->direction = dir;
	k->proto = f->proto;
	if (reverse) {
		k->sport = f->dport;
		k->dport = f->sport;
		__builtin_memcpy(k->saddr, f->daddr, 16);
		__builtin_memcpy(k->daddr, f->saddr, 16);
	} else {
		k->sport = f->sport;
		k->dport = f->dport;
		__builtin_memcpy(k->saddr, f->saddr, 16);
		__builtin_memcpy(k->daddr, f->daddr, 16);
	}
}

/* Is v a live entry? Refreshes it if so. */
static __always_inline int ct_live(struct ct_value *v, __u8 proto, __u64 now)
{
	__u64 last = v->last_seen_ns;

	if (now - last > ct_timeout(proto))
		return 0;
	if (now - last > CT_REFRESH_NS)
		v->last_seen_ns = now;
	return 1;
}

/*
 * Is p the reply of a flow that this endpoint's other hook allowed (or an
 * ICMP error about one)? A flow the endpoint sent (recorded at its egress)
 * is answered at its ingress, and the other way round; the reply's tuple
 * is the flow's, reversed.
 */
static __always_inline int ct_is_reply(__u32 id, __u8 dir, const struct pkt *p, __u64 now)
{
	struct ct_key k = {};
	struct ct_value *v;

	ct_fill(&k, id, dir ^ 1, &p->ct, 1);
	v = bpf_map_lookup_elem(&sluice_conntrack, &k);
	return v && ct_live(v, p->ct.proto, now);
}

/* This hook's record of p's own flow, if any. */
static __always_inline struct ct_value *ct_forward(__u32 id, __u8 dir, const struct pkt *p)
{
	struct ct_key k = {};

	ct_fill(&k, id, dir, &p->ct, 0);
	return bpf_map_lookup_elem(&sluice_conntrack, &k);
}

/* Records an allowed flow under the live epoch (v: its entry, if any). */
static __always_inline void ct_record(struct ct_value *v, __u32 id, __u8 dir, const struct pkt *p,
				      __u32 epoch, __u64 now)
{
	struct ct_key k = {};
	struct ct_value nv = { .last_seen_ns = now, .epoch = epoch };

	if (v) {
		v->last_seen_ns = now;
		v->epoch = epoch;
		return;
	}
	ct_fill(&k, id, dir, &p->ct, 0);
	bpf_map_update_elem(&sluice_conntrack, &k, &nv, BPF_ANY);
}

/* Is there an entry of class or CLASS_ANY for key (class unset)? */
static __always_inline int policy_hit(void *pol, __u32 class, struct policy_key *key)
{
	key->class = class;
	if (bpf_map_lookup_elem(pol, key))
		return 1;
	key->class = CLASS_ANY;
	return bpf_map_lookup_elem(pol, key) != 0;
}

/*
 * Does the inner policy map pol allow p from a peer of class? Packets with
 * ports are looked up at every port prefix length the map uses, longest
 * first; every packet (ICMP, other protocols, non-first fragments too) at
 * (class, ProtoAny).
 */
static __always_inline int policy_match(void *pol, __u32 class, const struct pkt *p)
{
	struct policy_key key = { .class = CLASS_MASK };
	__u32 *maskp, mask;

	maskp = bpf_map_lookup_elem(pol, &key);
	if (!maskp)
		return 0;
	mask = *maskp;
	if (p->has_ports) {
		__u32 port = bpf_ntohs(p->ct.dport);

		key.proto = p->proto;
#pragma unroll
		for (int plen = 16; plen >= 0; plen--) {
			if (!(mask & (1U << plen)))
				continue;
			__u32 masked = port & (0xffff0000U >> plen);

			key.plen = plen;
			key.port[0] = masked >> 8;
			key.port[1] = masked & 0xff;
			if (policy_hit(pol, class, &key))
				return 1;
		}
	}
	if (!(mask & MASK_PROTO_ANY))
		return 0;
	key.proto = 0;
	key.plen = 0;
	key.port[0] = 0;
	key.port[1] = 0;
	return policy_hit(pol, class, &key);
}

/* Does the endpoint's policy in dir (generation gen) allow p from/to peer? */
static __always_inline int policy_allows(__u32 gen, __u32 id, __u8 dir, const __u8 *peer,
					 const struct pkt *p)
{
	struct policy_outer_key ok = { .endpoint = id, .direction = dir, .generation = gen };
	struct ipcache_key ik = { .prefixlen = 128 };
	__u32 class = CLASS_WORLD;
	void *pol, *ipc;
	__u32 *c;

	pol = bpf_map_lookup_elem(&sluice_policy, &ok);
	if (!pol)
		return 0; /* isolated, and no entry allows anything */

	ipc = bpf_map_lookup_elem(&sluice_ipcache, &gen);
	if (ipc) {
		__builtin_memcpy(ik.addr, peer, 16);
		c = bpf_map_lookup_elem(ipc, &ik);
		if (c)
			class = *c;
	}

	return policy_match(pol, class, p);
}

static __always_inline void count(__u32 id, __u8 dir, int allowed)
{
	struct counters *c = bpf_map_lookup_elem(&sluice_counters, &id);

	if (!c)
		return;
	if (dir == DIR_INGRESS) {
		if (allowed)
			c->ingress_allowed++;
		else
			c->ingress_dropped++;
	} else {
		if (allowed)
			c->egress_allowed++;
		else
			c->egress_dropped++;
	}
}

/*
 * Is p allowed? In order: a forward packet of a flow this hook allowed
 * under the live epoch (no policy lookup), a reply or related ICMP error
 * of a flow the endpoint's other hook allowed, and otherwise the policy,
 * recording the flow when it allows a trackable packet.
 */
static __always_inline int judge(__u32 epoch, const struct endpoint_info *ep, __u8 dir, const struct pkt *p)
{
	struct ct_value *fwd = 0;
	/* Jiffy resolution is plenty for timeouts of seconds, and the
	 * coarse clock costs a fraction of the precise one in a VM. */
	__u64 now = bpf_ktime_get_coarse_ns();
	__u32 id = ep->id;
	__u8 isolated = dir == DIR_EGRESS ? ep->egress_isolated : ep->ingress_isolated;
	int allowed;

	if (p->track) {
		fwd = ct_forward(id, dir, p);
		if (fwd && fwd->epoch == epoch && ct_live(fwd, p->ct.proto, now))
			return 1;
	}
	if (p->has_tuple && ct_is_reply(id, dir, p, now))
		return 1;
	allowed = !isolated || policy_allows(epoch & 1, id, dir, dir == DIR_EGRESS ? p->daddr : p->saddr, p);
	if (allowed && p->track)
		ct_record(fwd, id, dir, p, epoch, now);
	return allowed;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct pkt p = {};
	struct endpoint_info *ep;
	__u32 zero = 0, epoch, gen;
	__u32 *statep;
	void *eps;
	int allowed;

	switch (parse(skb, &p)) {
	case PARSE_OK:
		break;
	case PARSE_PASS:
		return TCX_PASS;
	default:
		return TCX_DROP;
	}
	if (dir == DIR_EGRESS && spoofed(skb, &p))
		return TCX_DROP;
	if (addr_eq(p.saddr, p.daddr))
		return TCX_PASS; /* a pod can't block itself */

	statep = bpf_map_lookup_elem(&sluice_state, &zero);
	if (!statep)
		return TCX_PASS;
	epoch = *(volatile __u32 *)statep;
	gen = epoch & 1;
	eps = bpf_map_lookup_elem(&sluice_endpoints, &gen);
	if (!eps)
		return TCX_PASS; /* nothing loaded yet */
	ep = bpf_map_lookup_elem(eps, dir == DIR_EGRESS ? p.saddr : p.daddr);
	if (!ep)
		return TCX_PASS; /* not a pod of ours */

	allowed = judge(epoch, ep, dir, &p);
	count(ep->id, dir, allowed);
	return allowed ? TCX_PASS : TCX_DROP;
}

SEC("tc")
int sluice_from_pod(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

SEC("tc")
int sluice_to_pod(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}
