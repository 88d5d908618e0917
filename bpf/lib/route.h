/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Routing between nodes: the plan. Nothing here is compiled into the
 * datapath yet, and sluice.c doesn't include this header.
 *
 * The ipcache will carry, next to a prefix's class, the node that holds
 * it. In native routing the kernel's routes (installed by the agent) move
 * pod traffic and this header stays small; tunnel mode encapsulates to the
 * node from BPF (bpf_skb_set_tunnel_key) and may short-cut the stack with
 * bpf_fib_lookup plus bpf_redirect_neigh. Traffic leaving the cluster is
 * masqueraded to the node's address through lb.h's NAT table. Each helper
 * added for this is copied into include/sluice_bpf.h as bpf/README.md
 * describes.
 */
#ifndef SLUICE_LIB_ROUTE_H
#define SLUICE_LIB_ROUTE_H
#endif /* SLUICE_LIB_ROUTE_H */
