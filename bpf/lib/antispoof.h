/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Source-address checks on packets leaving a pod (sluice_ifaces). */
#ifndef SLUICE_LIB_ANTISPOOF_H
#define SLUICE_LIB_ANTISPOOF_H

#include "maps.h"
#include "parse.h"

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

#endif /* SLUICE_LIB_ANTISPOOF_H */
