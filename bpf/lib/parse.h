/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The packet parser: from an skb to what the hooks judge (struct pkt).
 * Headers are read with bpf_skb_load_bytes into small local structs, which
 * also works on non-linear skbs; nothing here writes to the packet.
 */
#ifndef SLUICE_LIB_PARSE_H
#define SLUICE_LIB_PARSE_H

#include "common.h"

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
/* Neighbour discovery (router/neighbour solicitation and advertisement,
 * redirect, RFC 4861) is IPv6's ARP. */
#define ICMPV6_ND_FIRST 133
#define ICMPV6_ND_LAST 137

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

/*
 * The IPv4 header: addresses and protocol into p, the transport header's
 * offset into l4off, and whether this is a fragment other than the first
 * (which carries no transport header).
 */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct pkt *p, __u32 *l4off, int *nonfirst_fragment)
{
	struct iphdr_min ip;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return PARSE_DROP;
	if ((ip.ver_ihl >> 4) != 4 || (ip.ver_ihl & 0xf) < 5)
		return PARSE_DROP;
	map_v4(p->saddr, ip.saddr);
	map_v4(p->daddr, ip.daddr);
	p->proto = ip.protocol;
	*l4off = ETH_HLEN + (ip.ver_ihl & 0xf) * 4;
	/* Fragment offset (the low 13 bits) non-zero: no L4 header. */
	*nonfirst_fragment = (bpf_ntohs(ip.frag_off) & 0x1fff) != 0;
	return PARSE_OK;
}

/* The IPv6 header and up to MAX_IPV6_EXT extension headers, as parse_ipv4. */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct pkt *p, __u32 *l4off, int *nonfirst_fragment)
{
	struct ipv6hdr_min ip6;
	__u32 off;
	__u8 nh;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
		return PARSE_DROP;
	if ((ip6.vtc_flow & 0xf0) != 0x60)
		return PARSE_DROP;
	__builtin_memcpy(p->saddr, ip6.saddr, 16);
	__builtin_memcpy(p->daddr, ip6.daddr, 16);
	nh = ip6.nexthdr;
	off = ETH_HLEN + sizeof(ip6);
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		__u8 ext[4];

		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS &&
		    nh != IPPROTO_FRAGMENT && nh != IPPROTO_AH)
			break;
		if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)) < 0)
			return PARSE_DROP;
		if (nh == IPPROTO_FRAGMENT) {
			/* offset is the high 13 bits of bytes 2-3 */
			if (((ext[2] << 8) | ext[3]) & 0xfff8)
				*nonfirst_fragment = 1;
			off += 8;
		} else if (nh == IPPROTO_AH) {
			off += (ext[1] + 2) * 4;
		} else {
			off += (ext[1] + 1) * 8;
		}
		nh = ext[0];
	}
	p->proto = nh;
	*l4off = off;
	return PARSE_OK;
}

/* The ports of a TCP, UDP or SCTP header at l4off: a tuple to track. */
static __always_inline int parse_ports(struct __sk_buff *skb, __u32 l4off, struct pkt *p)
{
	__be16 ports[2];

	/* A first fragment too short to hold the ports is judged without
	 * them (tiny-fragment attack). */
	if (bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)) < 0)
		return PARSE_OK;
	p->ct.sport = ports[0];
	p->ct.dport = ports[1];
	p->has_ports = 1;
	p->has_tuple = 1;
	p->track = 1;
	return PARSE_OK;
}

/*
 * An ICMP or ICMPv6 header at l4off: echo requests are tracked like a
 * flow (their identifier as sport), echo replies and errors are looked up
 * as replies, neighbour discovery isn't judged.
 */
static __always_inline int parse_icmp(struct __sk_buff *skb, __u32 l4off, struct pkt *p)
{
	__u8 icmp[8];
	__be16 id;
	int v6 = p->proto == IPPROTO_ICMPV6;

	if (bpf_skb_load_bytes(skb, l4off, icmp, sizeof(icmp)) < 0)
		return PARSE_OK;
	if (v6 && icmp[0] >= ICMPV6_ND_FIRST && icmp[0] <= ICMPV6_ND_LAST)
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
	return PARSE_OK;
}

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	__u32 l4off = 0;
	int nonfirst_fragment = 0;
	int ret;

	if (skb->protocol == bpf_htons(ETH_P_IP))
		ret = parse_ipv4(skb, p, &l4off, &nonfirst_fragment);
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		ret = parse_ipv6(skb, p, &l4off, &nonfirst_fragment);
	else
		return PARSE_PASS;
	if (ret != PARSE_OK)
		return ret;

	/*
	 * No ports and no tuple: judged as a protocol without ports (why:
	 * "Connection tracking" in internal/datapath/doc.go).
	 */
	if (nonfirst_fragment)
		return PARSE_OK;

	/* The packet's own tuple (an ICMP error replaces it). */
	__builtin_memcpy(p->ct.saddr, p->saddr, 16);
	__builtin_memcpy(p->ct.daddr, p->daddr, 16);
	p->ct.proto = p->proto;

	switch (p->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		return parse_ports(skb, l4off, p);
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return parse_icmp(skb, l4off, p);
	}
	return PARSE_OK;
}

#endif /* SLUICE_LIB_PARSE_H */
