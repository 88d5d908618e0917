package ipam

import (
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestBatchesWanted(t *testing.T) {
	for _, tc := range []struct {
		name                           string
		inUse, minFree, maxPods, batch int
		want                           int
	}{
		{"idle node", 0, 8, 250, 16, 1},
		{"inUse 0, minFree 0", 0, 0, 250, 16, 1},
		{"inUse 0, minFree a batch", 0, 16, 250, 16, 1},
		{"inUse 0, minFree more than a batch", 0, 17, 250, 16, 2},
		{"exactly fits", 8, 8, 250, 16, 1},
		{"one over", 9, 8, 250, 16, 2},
		{"minFree 0, full batch", 16, 0, 250, 16, 1},
		{"minFree 0, one more", 17, 0, 250, 16, 2},
		{"250 pods", 250, 8, 250, 16, 16},
		{"near max, capped by maxPods", 240, 16, 250, 16, 16},
		{"inUse = maxPods", 110, 8, 110, 16, 7},
		{"inUse above maxPods keeps its IPs", 200, 8, 110, 16, 13},
		{"maxPods 0", 0, 8, 0, 16, 1},
		{"batch 1", 5, 3, 250, 1, 8},
		{"batch 1, capped", 249, 3, 250, 1, 250},
		{"batch 1, inUse = maxPods", 250, 3, 250, 1, 250},
		{"batch 256", 0, 8, 250, 256, 1},
		{"batch 256, many pods", 300, 8, 1000, 256, 2},
		{"batch 256, capped", 250, 8, 250, 256, 1},
		{"negative inputs", -5, -1, -3, 16, 1},
		{"batch 0 taken as 1", 3, 2, 10, 0, 5},
		{"no overflow", math.MaxInt, math.MaxInt, math.MaxInt, 16, math.MaxInt/16 + 1},
	} {
		if got := BatchesWanted(tc.inUse, tc.minFree, tc.maxPods, tc.batch); got != tc.want {
			t.Errorf("%s: BatchesWanted(%d, %d, %d, %d) = %d, want %d", tc.name, tc.inUse, tc.minFree, tc.maxPods, tc.batch, got, tc.want)
		}
	}
	// The documented formula, exhaustively for small values.
	ceil := func(a, b int) int { return (a + b - 1) / b }
	for _, b := range []int{1, 2, 4, 16, 64} {
		for inUse := 0; inUse <= 70; inUse++ {
			for minFree := 0; minFree <= 20; minFree++ {
				for maxPods := 0; maxPods <= 70; maxPods += 7 {
					want := max(min(ceil(inUse+minFree, b), ceil(maxPods, b)), ceil(inUse, b), 1)
					got := BatchesWanted(inUse, minFree, maxPods, b)
					if got != want {
						t.Fatalf("BatchesWanted(%d, %d, %d, %d) = %d, want %d", inUse, minFree, maxPods, b, got, want)
					}
					if got*b-inUse < minFree && got < ceil(maxPods, b) {
						t.Fatalf("BatchesWanted(%d, %d, %d, %d) = %d leaves fewer than minFree free below the cap", inUse, minFree, maxPods, b, got)
					}
				}
			}
		}
	}
	if got := BatchesWanted(250, 8, 250, 16); got != 16 {
		t.Errorf("BatchesWanted(250, 8, 250, 16) = %d, want 16", got)
	}
}

func TestBatchLen(t *testing.T) {
	for _, tc := range []struct {
		f       Family
		size    int
		want    int
		wantErr string
	}{
		{IPv4, 1, 32, ""},
		{IPv4, 16, 28, ""},
		{IPv4, 256, 24, ""},
		{IPv4, 1 << 32, 0, ""},
		{IPv6, 1, 128, ""},
		{IPv6, 16, 124, ""},
		{IPv6, 256, 120, ""},
		{IPv6, 1 << 62, 66, ""},
		{IPv4, 0, 0, "batch size 0 is not a power of two"},
		{IPv4, -16, 0, "batch size -16 is not a power of two"},
		{IPv4, 24, 0, "batch size 24 is not a power of two"},
		{IPv6, 3, 0, "batch size 3 is not a power of two"},
		{IPv4, 1 << 33, 0, "larger than the whole ipv4 address space"},
		{0, 16, 0, "unknown family"},
	} {
		got, err := BatchLen(tc.f, tc.size)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("BatchLen(%v, %d) = %d, %v; want error %q", tc.f, tc.size, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("BatchLen(%v, %d) = %d, %v; want %d", tc.f, tc.size, got, err, tc.want)
		}
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestExcludedAddresses(t *testing.T) {
	pool4 := mps("10.0.0.0/11")
	pool46 := mps("10.0.0.0/11", "10.64.0.0/30", "fd00::/64")
	for _, tc := range []struct {
		name  string
		mode  Mode
		block netip.Prefix
		pool  []netip.Prefix
		want  []netip.Addr
	}{
		{"overlay v4", Overlay, mp("10.244.3.0/24"), mps("10.244.0.0/16"), addrs("10.244.3.0", "10.244.3.255")},
		{"overlay v4 ignores pool", Overlay, mp("10.244.0.0/24"), nil, addrs("10.244.0.0", "10.244.0.255")},
		{"overlay v4 /32", Overlay, mp("10.244.0.7/32"), nil, addrs("10.244.0.7")},
		{"overlay v6", Overlay, mp("fd00::100/120"), mps("fd00::/64"), addrs("fd00::100")},
		{"overlay unmasked block", Overlay, mp("10.244.3.9/24"), nil, addrs("10.244.3.0", "10.244.3.255")},
		{"subnet v4 first batch", Subnet, mp("10.0.0.0/28"), pool4, addrs("10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3")},
		{"subnet v4 last batch", Subnet, mp("10.31.255.240/28"), pool4, addrs("10.31.255.255")},
		{"subnet v4 middle batch", Subnet, mp("10.0.0.16/28"), pool4, nil},
		{"subnet v4 batch of 2", Subnet, mp("10.0.0.2/31"), pool4, addrs("10.0.0.2", "10.0.0.3")},
		{"subnet v4 tiny cidr", Subnet, mp("10.64.0.0/30"), pool46, addrs("10.64.0.0", "10.64.0.1", "10.64.0.2", "10.64.0.3")},
		{"subnet v4 second cidr only", Subnet, mp("10.64.0.0/31"), pool46, addrs("10.64.0.0", "10.64.0.1")},
		{"subnet block covers whole cidr", Subnet, mp("10.0.0.0/8"), mps("10.0.0.0/24"), addrs("10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.255")},
		{"subnet v6 first batch", Subnet, mp("fd00::/124"), pool46, addrs("fd00::", "fd00::1", "fd00::2", "fd00::3")},
		{"subnet v6 last batch has no broadcast", Subnet, mp("fd00::ffff:ffff:ffff:fff0/124"), pool46, nil},
		{"subnet v6 middle batch", Subnet, mp("fd00::10/124"), pool46, nil},
		{"subnet outside pool", Subnet, mp("192.168.0.0/28"), pool46, nil},
		{"invalid block", Subnet, netip.Prefix{}, pool46, nil},
	} {
		got := ExcludedAddresses(tc.mode, tc.block, tc.pool)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: ExcludedAddresses(%v, %v, %v) = %v, want %v", tc.name, tc.mode, tc.block, tc.pool, got, tc.want)
		}
		if !slices.IsSortedFunc(got, netip.Addr.Compare) {
			t.Errorf("%s: not sorted: %v", tc.name, got)
		}
	}
}
