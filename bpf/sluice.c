// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Sluice's datapath: two tc (tcx) programs on a pod's host-side veth.
 *
 *   sluice_from_pod  tcx ingress of the host veth: packets leaving the pod,
 *                    checked against the source endpoint's egress policy.
 *   sluice_to_pod    tcx egress of the host veth: packets entering the pod,
 *                    checked against the destination endpoint's ingress
 *                    policy.
 *
 * This file holds the entry points and the order of the steps they take;
 * each step lives in lib/ (see bpf/README.md for which header holds what).
 * The maps hold what internal/policy compiles (internal/policy/
 * entries.go), written by internal/datapath. Every address is kept as 16
 * bytes: IPv6 as is, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one code
 * path and one set of maps serves both families.
 */
#include "lib/antispoof.h"
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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
	count_verdict(ep->id, dir, allowed);
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
