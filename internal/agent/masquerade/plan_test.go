package masquerade

import (
	"net/netip"
	"testing"

	. "github.com/onsi/gomega"
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
		local, cluster, nonMasq     []netip.Prefix
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
			name:           "invalid prefixes are dropped",
			local:          []netip.Prefix{{}, netip.MustParsePrefix("10.250.1.0/24")},
			cluster:        []netip.Prefix{{}},
			wantSources:    pp("10.250.1.0/24"),
			wantExemptions: pp("10.250.1.0/24"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(tc.local, tc.cluster, tc.nonMasq)
			g := NewWithT(t)
			g.Expect(got.Sources).To(Equal(tc.wantSources), "sources")
			g.Expect(got.Exempt).To(Equal(tc.wantExemptions), "exempt")
		})
	}
}
