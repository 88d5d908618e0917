package policy

import "net/netip"

// RandomCase exposes the random cluster generator to the external test
// package (policy_test), which checks the BPF datapath against the
// evaluator: a cluster, the addresses worth probing, and a picker of
// (protocol, port) probes.
func RandomCase(data []byte) (*Cluster, []netip.Addr, func() (uint8, uint16)) {
	r := &bytesRand{data: data}
	c := genCluster(r)
	return c, probeAddrs(c), func() (uint8, uint16) {
		p := pick(r, genProbe)
		return p.proto, p.port
	}
}

// SeedBytes is seedBytes for policy_test.
var SeedBytes = seedBytes
