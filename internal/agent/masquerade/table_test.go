package masquerade

import (
	"net/netip"
	"testing"

	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
)

// TestTableRewrite: writing twice leaves one chain with the plan's rules,
// a smaller plan shrinks the table, Remove removes it, twice.
func TestTableRewrite(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	tbl := &Table{NetNS: netlabtest.NewNetNS(t)}
	count := func() [2]int {
		t.Helper()
		chains, rules, err := tbl.Installed()
		if err != nil {
			t.Fatal(err)
		}
		return [2]int{chains, rules}
	}
	r := Plan(Inputs{
		Local:         []netip.Prefix{netip.MustParsePrefix("10.250.1.0/24"), netip.MustParsePrefix("fd00:250:1::/64")},
		ClusterRanges: []netip.Prefix{netip.MustParsePrefix("10.250.2.0/24")},
		NodeAddresses: []netip.Prefix{netip.MustParsePrefix("192.168.100.2/32"), netip.MustParsePrefix("fd00:100::2/128")},
		NonMasquerade: []netip.Prefix{netip.MustParsePrefix("192.168.200.0/24")},
	})
	for range 2 {
		if err := tbl.Write(r); err != nil {
			t.Fatal(err)
		}
		if got, want := count(), [2]int{1, len(r.Sources) + len(r.Exempt)}; got != want {
			t.Fatalf("chains and rules after a write: %v, want %v", got, want)
		}
	}
	if err := tbl.Write(Plan(Inputs{Local: []netip.Prefix{netip.MustParsePrefix("10.250.1.0/24")}})); err != nil {
		t.Fatal(err)
	}
	if got, want := count(), [2]int{1, 2}; got != want {
		t.Fatalf("chains and rules after a smaller plan: %v, want %v", got, want)
	}
	for range 2 {
		if err := tbl.Remove(); err != nil {
			t.Fatal(err)
		}
		if got := count(); got != [2]int{} {
			t.Fatalf("chains and rules after Remove: %v, want none", got)
		}
	}
}
