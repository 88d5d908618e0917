package masquerade

import (
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Rules are what the node's table holds: packets to Exempt leave
// untouched, packets from Sources to anywhere else are masqueraded. Both
// lists are masked, sorted, and hold no prefix that another of the same
// list contains.
type Rules struct {
	Sources []netip.Prefix
	Exempt  []netip.Prefix
}

// Inputs are what a node's rules follow from.
type Inputs struct {
	// Local are this node's pod ranges: the sources.
	Local []netip.Prefix
	// ClusterRanges are every node's pod ranges, this one's included.
	ClusterRanges []netip.Prefix
	// NodeAddresses are every node's InternalIPs, as host prefixes: pods
	// reach nodes (their kubelets, host-network pods, the nodes' own
	// listeners) with their own address, as they do in clusters whose
	// egress masquerade leaves the node network alone.
	NodeAddresses []netip.Prefix
	// NonMasquerade are further destinations left alone (a peered
	// network, on-premises ranges).
	NonMasquerade []netip.Prefix
}

// Plan is the rules for a node: packets from its pods to every pod
// range, every node address and the non-masquerade CIDRs are left alone,
// the rest are masqueraded. The local ranges are exempt destinations as
// well, so pod-to-pod on the node is never rewritten even before its
// NodeNetwork shows in the cluster's ranges. Invalid prefixes are dropped.
func Plan(in Inputs) Rules {
	exempt := slices.Concat(in.Local, in.ClusterRanges, in.NodeAddresses, in.NonMasquerade)
	return Rules{Sources: normalize(in.Local), Exempt: normalize(exempt)}
}

// NodeAddresses are the nodes' InternalIPs as host prefixes (/32, /128).
// Host prefixes rather than the node subnet: a Node carries its addresses
// but not their prefix length, and nodes of one cluster may sit in
// different subnets, so the subnet is not something every agent can
// learn alike; exempting more than the nodes (the whole subnet) would
// also be a guess about what else lives there. Addresses that don't parse
// are skipped.
func NodeAddresses(nodes []corev1.Node) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return out
}

// normalize masks, sorts (IPv4 first, then by address, wider first) and
// drops invalid prefixes, duplicates and prefixes inside another.
func normalize(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	// Sorted by address, wider first: a prefix contained in another comes
	// after it, and after every prefix between them that is contained too.
	kept := out[:0]
	for _, p := range out {
		if n := len(kept); n > 0 && kept[n-1].Overlaps(p) {
			continue
		}
		kept = append(kept, p)
	}
	return kept
}
