package endpoint

import "net/netip"

// OnePerFamily keeps the first valid address of each family, in order. A
// pod has at most one IPv4 and one IPv6 address in the datapath (the
// policy compiler holds one address per pod; a dual-stack pod is two), so
// these are the addresses a registration waits to see enforced, and the
// ones the policy loop takes from a pod.
func OnePerFamily(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	var have4, have6 bool
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" {
			continue
		}
		if a.Is4() && !have4 {
			have4 = true
			out = append(out, a)
		} else if a.Is6() && !have6 {
			have6 = true
			out = append(out, a)
		}
	}
	return out
}
