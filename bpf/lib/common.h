/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What every part of the datapath shares: the numbers Go writes into the
 * maps and the address helpers.
 *
 * The enums here are the datapath's contract with Go. bpf2go exports each
 * (-type in internal/datapath/gen.go) as generated Go constants, and
 * internal/datapath's contract test holds internal/policy's constants to
 * them, so a number is written once, here. Enums rather than #defines for
 * that reason: only types reach BTF, and bpf2go reads BTF.
 */
#ifndef SLUICE_LIB_COMMON_H
#define SLUICE_LIB_COMMON_H

#include "sluice_bpf.h"

/* Which of an endpoint's policies a hook applies (policy.Direction). */
enum direction {
	DIR_INGRESS = 0, /* traffic to the endpoint: sluice_to_pod */
	DIR_EGRESS = 1,  /* traffic from the endpoint: sluice_from_pod */
};

/* Peer classes with a fixed number (policy.ClassAny, policy.ClassWorld). */
enum peer_class {
	CLASS_ANY = 0,   /* in a policy entry: a peer of any class */
	CLASS_WORLD = 2, /* a peer the ipcache has no prefix for */
	/*
	 * Not a class: the key class of an inner policy map's mask entry
	 * (see struct policy_key). No class may take this number.
	 */
	CLASS_MASK = 0xffffffffU,
};

/* The mask entry's value: bits 0-16 say entries with that port prefix
 * length exist, MASK_PROTO_ANY that (class, ProtoAny) entries do. */
enum policy_mask {
	MASK_PROTO_ANY = 1U << 17,
};

/* An IPv4 address as the maps hold it: IPv4-mapped IPv6 (::ffff:a.b.c.d). */
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

#endif /* SLUICE_LIB_COMMON_H */
