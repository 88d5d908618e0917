/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy connection tracking: flows a hook allowed, recorded per endpoint
 * and direction in sluice_conntrack, so that their replies (and ICMP
 * errors about them) pass and their forward packets skip the policy while
 * it is unchanged. The semantics are in internal/datapath/doc.go
 * ("Connection tracking"); service NAT keeps its own table (see lb.h).
 */
#ifndef SLUICE_LIB_CONNTRACK_H
#define SLUICE_LIB_CONNTRACK_H

#include "maps.h"
#include "parse.h"

/* Conntrack lifetimes since the last packet of a flow; set before load. */
volatile const __u64 ct_timeout_tcp_ns = 21600ULL * 1000000000ULL;
volatile const __u64 ct_timeout_other_ns = 60ULL * 1000000000ULL;
/* How stale last_seen may get before a packet rewrites it: fewer writes
 * to a shared cache line, at the price of a timeout up to this late. */
#define CT_REFRESH_NS 1000000000ULL

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

#endif /* SLUICE_LIB_CONNTRACK_H */
