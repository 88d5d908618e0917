package masquerade

import (
	"net/netip"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

func TestPlan(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		out := []netip.Prefix{}
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, tc := range []struct {
		name                        string
		local, cluster, nodes       []netip.Prefix
		nonMasq                     []netip.Prefix
		wantSources, wantExemptions []netip.Prefix
	}{
		{
			name:  "no ranges yet: nothing masqueraded",
			local: nil, cluster: nil, nonMasq: nil,
			wantSources: pp(), wantExemptions: pp(),
		},
		{
			name:           "two nodes: every pod range exempt, own range the source",
			local:          pp("10.250.1.0/24"),
			cluster:        pp("10.250.2.0/24", "10.250.1.0/24"),
			nonMasq:        pp("192.168.200.0/24"),
			wantSources:    pp("10.250.1.0/24"),
			wantExemptions: pp("10.250.1.0/24", "10.250.2.0/24", "192.168.200.0/24"),
		},
		{
			name:           "own range exempt before its NodeNetwork is listed",
			local:          pp("10.250.1.0/24"),
			cluster:        pp("10.250.2.0/24"),
			wantSources:    pp("10.250.1.0/24"),
			wantExemptions: pp("10.250.1.0/24", "10.250.2.0/24"),
		},
		{
			name:           "a non-masquerade CIDR covering the pool swallows the node ranges",
			local:          pp("10.250.1.0/24"),
			cluster:        pp("10.250.1.0/24", "10.250.2.0/24", "10.251.0.0/24"),
			nonMasq:        pp("10.250.0.0/16"),
			wantSources:    pp("10.250.1.0/24"),
			wantExemptions: pp("10.250.0.0/16", "10.251.0.0/24"),
		},
		{
			name:           "unmasked and duplicate prefixes are normalized",
			local:          pp("10.250.1.7/24", "10.250.1.0/24"),
			cluster:        pp("10.250.1.0/24"),
			wantSources:    pp("10.250.1.0/24"),
			wantExemptions: pp("10.250.1.0/24"),
		},
		{
			name:           "dual stack: each family kept, IPv4 first",
			local:          pp("fd00:250:1::/64", "10.250.1.0/24"),
			cluster:        pp("fd00:250:2::/64", "10.250.2.0/24"),
			nonMasq:        pp("fd00:250::/32"),
			wantSources:    pp("10.250.1.0/24", "fd00:250:1::/64"),
			wantExemptions: pp("10.250.1.0/24", "10.250.2.0/24", "fd00:250::/32"),
		},
		{
			name:           "node addresses exempt as host prefixes, beside the pod ranges",
			local:          pp("10.250.1.0/24"),
			cluster:        pp("10.250.1.0/24", "10.250.2.0/24"),
			nodes:          pp("192.168.100.3/32", "192.168.100.2/32", "fd00:100::2/128"),
			wantSources:    pp("10.250.1.0/24"),
			wantExemptions: pp("10.250.1.0/24", "10.250.2.0/24", "192.168.100.2/32", "192.168.100.3/32", "fd00:100::2/128"),
		},
		{
			name:           "a non-masquerade CIDR covering the node network swallows the node addresses",
			local:          pp("10.250.1.0/24"),
			nodes:          pp("192.168.100.2/32", "192.168.100.3/32"),
			nonMasq:        pp("192.168.0.0/16"),
			wantSources:    pp("10.250.1.0/24"),
			wantExemptions: pp("10.250.1.0/24", "192.168.0.0/16"),
		},
		{
			name:           "invalid prefixes are dropped",
			local:          []netip.Prefix{{}, netip.MustParsePrefix("10.250.1.0/24")},
			cluster:        []netip.Prefix{{}},
			wantSources:    pp("10.250.1.0/24"),
			wantExemptions: pp("10.250.1.0/24"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(Inputs{Local: tc.local, ClusterRanges: tc.cluster, NodeAddresses: tc.nodes, NonMasquerade: tc.nonMasq})
			g := NewWithT(t)
			g.Expect(got.Sources).To(Equal(tc.wantSources), "sources")
			g.Expect(got.Exempt).To(Equal(tc.wantExemptions), "exempt")
		})
	}
}

func TestNodeAddresses(t *testing.T) {
	node := func(addrs ...corev1.NodeAddress) corev1.Node {
		return corev1.Node{Status: corev1.NodeStatus{Addresses: addrs}}
	}
	internal := func(a string) corev1.NodeAddress { return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a} }
	for _, tc := range []struct {
		name  string
		nodes []corev1.Node
		want  []netip.Prefix
	}{
		{name: "no nodes", nodes: nil, want: nil},
		{
			name: "InternalIPs of every node, both families",
			nodes: []corev1.Node{
				node(internal("192.168.100.2"), internal("fd00:100::2")),
				node(internal("192.168.100.3")),
			},
			want: []netip.Prefix{
				netip.MustParsePrefix("192.168.100.2/32"), netip.MustParsePrefix("fd00:100::2/128"),
				netip.MustParsePrefix("192.168.100.3/32"),
			},
		},
		{
			name: "external addresses and host names are not the node network",
			nodes: []corev1.Node{node(
				corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.7"},
				corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-a"},
				internal("192.168.100.2"),
			)},
			want: []netip.Prefix{netip.MustParsePrefix("192.168.100.2/32")},
		},
		{
			name:  "an IPv4-mapped address counts as IPv4; garbage is skipped",
			nodes: []corev1.Node{node(internal("::ffff:192.168.100.4"), internal("not-an-ip"))},
			want:  []netip.Prefix{netip.MustParsePrefix("192.168.100.4/32")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(NodeAddresses(tc.nodes)).To(Equal(tc.want))
		})
	}
}
