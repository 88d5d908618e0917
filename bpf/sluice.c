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
 * Two generations: `state` says which of two copies of (endpoints, ipcache,
 * policy) is live. The loader rewrites the idle copy, flips `state`, and
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

/* Policy key prefix lengths (bits of class, proto, port). */
#define PL_CLASS 32
#define PL_PROTO (PL_CLASS + 8)
#define PL_PORT (PL_PROTO + 16)

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
 * class (32 bits, host order) | proto (8) | destination port (16, network
 * order, so its high bits come first). A (class, ProtoAny) entry has
 * prefix length 32, a whole protocol 40, a port prefix 40 + n.
 */
struct policy_key {
	__u32 prefixlen;
	__u32 class;
	__u8 proto;
	__u8 port[2];
	__u8 pad;
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

struct ct_value {
	__u64 last_seen_ns;
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

/* Sizes below are placeholders: the loader sets every max_entries. */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* the live generation, 0 or 1 */
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
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct policy_key);
	__type(value, __u8);
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

/* What the parser found. */
struct pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;    /* conntrack tuple; for ICMP echo see struct ct_key */
	__be16 dport;    /* also the policy port when has_ports */
	__u8 proto;
	__u8 has_ports;  /* TCP/UDP/SCTP with its ports: port entries apply */
	__u8 has_tuple;  /* may be the reply of a recorded flow */
	__u8 track;      /* a new flow the hook may record when allowed */
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

	switch (p->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__be16 ports[2];

		/* A first fragment too short to hold the ports is judged
		 * without them (tiny-fragment attack). */
		if (bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)) < 0)
			return PARSE_OK;
		p->sport = ports[0];
		p->dport = ports[1];
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
		__builtin_memcpy(&id, icmp + 4, 2);
		if (icmp[0] == (v6 ? 128 : 8)) { /* echo request */
			p->sport = id;
			p->has_tuple = 1;
			p->track = 1;
		} else if (icmp[0] == (v6 ? 129 : 0)) { /* echo reply */
			p->dport = id;
			p->has_tuple = 1;
		}
		break;
	}
	}
	return PARSE_OK;
}

static __always_inline __u64 ct_timeout(__u8 proto)
{
	return proto == IPPROTO_TCP ? ct_timeout_tcp_ns : ct_timeout_other_ns;
}

/*
 * Is p the reply of a flow that this endpoint's other hook allowed? A flow
 * the endpoint sent (recorded at its egress) is answered at its ingress,
 * and the other way round; the reply's tuple is the flow's, reversed.
 */
static __always_inline int ct_is_reply(__u32 id, __u8 dir, const struct pkt *p, __u64 now)
{
	struct ct_key k = {
		.endpoint = id,
		.direction = dir ^ 1,
		.proto = p->proto,
		.sport = p->dport,
		.dport = p->sport,
	};
	struct ct_value *v;

	__builtin_memcpy(k.saddr, p->daddr, 16);
	__builtin_memcpy(k.daddr, p->saddr, 16);
	v = bpf_map_lookup_elem(&sluice_conntrack, &k);
	if (!v)
		return 0;
	__u64 last = v->last_seen_ns;
	if (now - last > ct_timeout(p->proto))
		return 0;
	if (now - last > CT_REFRESH_NS)
		v->last_seen_ns = now;
	return 1;
}

static __always_inline void ct_record(__u32 id, __u8 dir, const struct pkt *p, __u64 now)
{
	struct ct_key k = {
		.endpoint = id,
		.direction = dir,
		.proto = p->proto,
		.sport = p->sport,
		.dport = p->dport,
	};
	struct ct_value *v, nv = { .last_seen_ns = now };

	__builtin_memcpy(k.saddr, p->saddr, 16);
	__builtin_memcpy(k.daddr, p->daddr, 16);
	v = bpf_map_lookup_elem(&sluice_conntrack, &k);
	if (v) {
		if (now - v->last_seen_ns > CT_REFRESH_NS)
			v->last_seen_ns = now;
		return;
	}
	bpf_map_update_elem(&sluice_conntrack, &k, &nv, BPF_ANY);
}

/* Does the endpoint's policy in dir (generation gen) allow p from/to peer? */
static __always_inline int policy_allows(__u32 gen, __u32 id, __u8 dir, const __u8 *peer,
					 const struct pkt *p)
{
	struct policy_outer_key ok = { .endpoint = id, .direction = dir, .generation = gen };
	struct ipcache_key ik = { .prefixlen = 128 };
	struct policy_key pk = {};
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

	/*
	 * With ports: the full key, which entries of the class on any
	 * protocol (/32), on the protocol (/40) or on a port prefix (/40+n)
	 * match. Without (ICMP, other protocols, non-first fragments): a /32
	 * lookup, which only (class, ProtoAny) entries can match.
	 */
	pk.prefixlen = p->has_ports ? PL_PORT : PL_CLASS;
	pk.class = class;
	pk.proto = p->proto;
	__builtin_memcpy(pk.port, &p->dport, 2);
	if (bpf_map_lookup_elem(pol, &pk))
		return 1;
	pk.class = CLASS_ANY;
	return bpf_map_lookup_elem(pol, &pk) != 0;
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

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct pkt p = {};
	struct endpoint_info *ep;
	__u32 zero = 0, gen, id;
	__u32 *genp;
	__u8 isolated;
	void *eps;
	int allowed;
	__u64 now;

	switch (parse(skb, &p)) {
	case PARSE_OK:
		break;
	case PARSE_PASS:
		return TCX_PASS;
	default:
		return TCX_DROP;
	}
	if (addr_eq(p.saddr, p.daddr))
		return TCX_PASS; /* a pod can't block itself */

	genp = bpf_map_lookup_elem(&sluice_state, &zero);
	if (!genp)
		return TCX_PASS;
	gen = *(volatile __u32 *)genp & 1;
	eps = bpf_map_lookup_elem(&sluice_endpoints, &gen);
	if (!eps)
		return TCX_PASS; /* nothing loaded yet */
	ep = bpf_map_lookup_elem(eps, dir == DIR_EGRESS ? p.saddr : p.daddr);
	if (!ep)
		return TCX_PASS; /* not a pod of ours */
	id = ep->id;
	isolated = dir == DIR_EGRESS ? ep->egress_isolated : ep->ingress_isolated;

	now = bpf_ktime_get_ns();
	if (p.has_tuple && ct_is_reply(id, dir, &p, now)) {
		allowed = 1;
	} else {
		allowed = !isolated ||
			  policy_allows(gen, id, dir, dir == DIR_EGRESS ? p.daddr : p.saddr, &p);
		if (allowed && p.track)
			ct_record(id, dir, &p, now);
	}
	count(id, dir, allowed);
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
