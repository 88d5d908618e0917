/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Service load balancing and NAT: the plan. Nothing here is compiled into
 * the datapath yet, and sluice.c doesn't include this header; it marks
 * where the code goes and the decisions it must keep.
 *
 * Maps (one set per family, keys in the 16-byte address form):
 *   frontend  {VIP, port, proto, scope}  -> {service id, backend count, flags}
 *             protocol and scope (iTP/eTP Local) in the key from the start;
 *   backend   {service id, slot}         -> {address, port}
 *   nat       LRU {proto, saddr, daddr, sport, dport} as translated
 *             -> {original VIP and port, service id}; its size is
 *             DataplaneConfig's bpfMaps.natEntries.
 *
 * Order in a hook: sluice_from_pod translates (DNAT to a backend) before
 * judge(), so egress policy and the policy conntrack see the backend, not
 * the VIP (NetworkPolicy never names VIPs); sluice_to_pod judges the wire
 * tuple first (a reply is looked up as the translated flow's reply) and
 * then reverse-translates the source back to the VIP.
 *
 * NAT state lives in its own tuple-keyed table, not in sluice_conntrack:
 * the reasons and the price are in internal/datapath/doc.go ("Service NAT
 * and conntrack"). Rewrites need bpf_skb_store_bytes and
 * bpf_l3_csum_replace/bpf_l4_csum_replace; internal/packet parses a
 * program's output so tests can check the rewritten addresses, ports and
 * checksums.
 */
#ifndef SLUICE_LIB_LB_H
#define SLUICE_LIB_LB_H
#endif /* SLUICE_LIB_LB_H */
