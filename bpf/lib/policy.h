/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * NetworkPolicy: the verdict for one packet at one endpoint's hook, from
 * conntrack and the endpoint's policy map in the live generation. The
 * entries are what internal/policy compiles (internal/policy/entries.go);
 * the lookup scheme is drawn in internal/datapath/doc.go ("Maps").
 */
#ifndef SLUICE_LIB_POLICY_H
#define SLUICE_LIB_POLICY_H

#include "conntrack.h"
#include "maps.h"
#include "parse.h"

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

/* Counts a verdict in the endpoint's per-CPU counters. */
static __always_inline void count_verdict(__u32 id, __u8 dir, int allowed)
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

#endif /* SLUICE_LIB_POLICY_H */
