package ipam

import (
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

func mp(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mps(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = mp(s)
	}
	return out
}

func mustSpace(t testing.TB, cidrs []netip.Prefix, l4, l6 int) *Space {
	t.Helper()
	s, err := NewSpace(cidrs, l4, l6)
	if err != nil {
		t.Fatalf("NewSpace(%v, %d, %d): %v", cidrs, l4, l6, err)
	}
	return s
}

func TestFamilyOf(t *testing.T) {
	for _, tc := range []struct {
		p    netip.Prefix
		want Family
	}{
		{mp("10.0.0.0/8"), IPv4},
		{mp("fd00::/64"), IPv6},
		{mp("::ffff:10.0.0.0/104"), IPv6},
		{netip.Prefix{}, 0},
	} {
		if got := FamilyOf(tc.p); got != tc.want {
			t.Errorf("FamilyOf(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestNewSpaceErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cidrs  []netip.Prefix
		l4, l6 int
		want   []string // substrings of the error
	}{
		{"no cidrs", nil, 24, 120, []string{"no cidrs"}},
		{"invalid prefix", []netip.Prefix{mp("10.0.0.0/8"), {}}, 24, 120, []string{"cidr #1", "not a valid prefix"}},
		{"host bits v4", mps("10.0.0.1/8"), 24, 0, []string{"10.0.0.1/8", "host bits", "10.0.0.0/8"}},
		{"host bits v6", mps("fd00::1/64"), 0, 120, []string{"fd00::1/64", "host bits", "fd00::/64"}},
		{"overlap", mps("10.0.0.0/8", "10.1.0.0/16"), 24, 0, []string{"10.1.0.0/16 overlaps cidr 10.0.0.0/8"}},
		{"duplicate", mps("fd00::/64", "fd00::/64"), 0, 120, []string{"fd00::/64 overlaps cidr fd00::/64"}},
		{"smaller than block v4", mps("10.0.0.0/8", "192.168.0.0/25"), 24, 0, []string{"192.168.0.0/25 is smaller than one /24 block"}},
		{"smaller than block v6", mps("fd00::/121"), 24, 120, []string{"fd00::/121 is smaller than one /120 block"}},
		{"too many blocks", mps("fd00::/48"), 0, 120, []string{"fd00::/48", "2^72", "more than 2^62"}},
		{"v4 block length 0", mps("10.0.0.0/8"), 0, 120, []string{"10.0.0.0/8", "ipv4 block length 0", "1..32"}},
		{"v4 block length 33", mps("10.0.0.0/8"), 33, 120, []string{"ipv4 block length 33", "1..32"}},
		{"v6 block length 0", mps("10.0.0.0/8", "fd00::/64"), 24, 0, []string{"fd00::/64", "ipv6 block length 0", "1..128"}},
		{"v6 block length 129", mps("fd00::/64"), 24, 129, []string{"ipv6 block length 129"}},
		{"ipv4-mapped", mps("::ffff:10.0.0.0/104"), 24, 120, []string{"::ffff:10.0.0.0/104", "ipv4-mapped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSpace(tc.cidrs, tc.l4, tc.l6)
			if err == nil {
				t.Fatalf("NewSpace succeeded, want error containing %q", tc.want)
			}
			if s != nil {
				t.Errorf("NewSpace returned a space with its error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "ipam: ") || msg != strings.ToLower(msg[:1])+msg[1:] {
				t.Errorf("error %q: want lower-case and prefixed with ipam:", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q doesn't contain %q", msg, w)
				}
			}
		})
	}
}

func TestNewSpaceAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cidrs  []netip.Prefix
		l4, l6 int
	}{
		{"v4 only, v6 length ignored", mps("10.0.0.0/8"), 24, 0},
		{"v6 only, v4 length ignored", mps("fd00::/64"), 0, 120},
		{"cidr exactly one block", mps("10.0.0.0/24", "fd00::/120"), 24, 120},
		{"62 bits of blocks", mps("fd00::/66"), 0, 128},
		{"whole v4 space of /32s", mps("0.0.0.0/0"), 32, 0},
		{"adjacent", mps("10.0.0.0/24", "10.0.1.0/24"), 28, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustSpace(t, tc.cidrs, tc.l4, tc.l6)
		})
	}
	s := mustSpace(t, mps("10.0.0.0/8"), 24, 0)
	if s.BlockLen(IPv4) != 24 || s.BlockLen(IPv6) != 0 || s.BlockLen(0) != 0 {
		t.Errorf("BlockLen = %d, %d, %d; want 24, 0, 0", s.BlockLen(IPv4), s.BlockLen(IPv6), s.BlockLen(0))
	}
}

func allocN(t *testing.T, s *Space, f Family, n int) []string {
	t.Helper()
	var out []string
	for range n {
		p, err := s.Allocate(f)
		if err != nil {
			t.Fatalf("Allocate(%v) after %v: %v", f, out, err)
		}
		out = append(out, p.String())
	}
	return out
}

func TestAllocateOrder(t *testing.T) {
	s := mustSpace(t, mps("10.1.0.0/23", "fd00::/119", "10.0.0.0/24", "fd00:1::/120"), 24, 120)
	if got, want := strings.Join(allocN(t, s, IPv4, 2), " "), "10.1.0.0/24 10.1.1.0/24"; got != want {
		t.Errorf("first IPv4 blocks = %s, want %s", got, want)
	}
	if got, want := strings.Join(allocN(t, s, IPv6, 1), " "), "fd00::/120"; got != want {
		t.Errorf("first IPv6 block = %s, want %s", got, want)
	}
	// Next CIDR of the family, in the order given (not address order).
	if got, want := strings.Join(allocN(t, s, IPv4, 1), " "), "10.0.0.0/24"; got != want {
		t.Errorf("third IPv4 block = %s, want %s", got, want)
	}
	if got, want := strings.Join(allocN(t, s, IPv6, 2), " "), "fd00::100/120 fd00:1::/120"; got != want {
		t.Errorf("IPv6 blocks = %s, want %s", got, want)
	}
	// Lowest free first after a release in the first CIDR.
	if err := s.Release(mp("10.1.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(mp("fd00::100/120")); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(allocN(t, s, IPv4, 1), " "), "10.1.0.0/24"; got != want {
		t.Errorf("IPv4 after release = %s, want %s", got, want)
	}
	if got, want := strings.Join(allocN(t, s, IPv6, 1), " "), "fd00::100/120"; got != want {
		t.Errorf("IPv6 after release = %s, want %s", got, want)
	}
}

func TestAllocateSkipsClaimed(t *testing.T) {
	s := mustSpace(t, mps("10.0.0.0/26"), 28, 0)
	for _, b := range []string{"10.0.0.0/28", "10.0.0.32/28"} {
		if err := s.Claim(mp(b)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(allocN(t, s, IPv4, 2), " "), "10.0.0.16/28 10.0.0.48/28"; got != want {
		t.Errorf("Allocate = %s, want %s", got, want)
	}
}

func TestAllocateUnknownFamily(t *testing.T) {
	s := mustSpace(t, mps("10.0.0.0/8"), 24, 0)
	if _, err := s.Allocate(0); err == nil || errors.Is(err, ErrExhausted) {
		t.Errorf("Allocate(0) = %v, want an unknown-family error", err)
	}
	if _, err := s.Allocate(IPv6); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "no ipv6 cidr") {
		t.Errorf("Allocate(IPv6) on an IPv4 space = %v, want ErrExhausted naming the missing family", err)
	}
}

func TestClaimErrors(t *testing.T) {
	s := mustSpace(t, mps("10.0.0.0/16", "fd00::/112"), 24, 120)
	for _, b := range []string{"10.0.5.0/24", "fd00::500/120"} {
		if err := s.Claim(mp(b)); err != nil {
			t.Fatalf("Claim(%s): %v", b, err)
		}
	}
	for _, tc := range []struct {
		block netip.Prefix
		want  string
		inUse bool
	}{
		{mp("10.1.0.0/24"), "not inside any cidr", false},
		{mp("fd01::/120"), "not inside any cidr", false},
		{mp("10.0.0.1/24"), "not aligned to a /24 boundary", false},
		{mp("fd00::1/120"), "not aligned to a /120 boundary", false},
		{mp("10.0.0.0/25"), "wrong length: ipv4 blocks are /24", false},
		{mp("10.0.0.0/16"), "wrong length: ipv4 blocks are /24", false},
		{mp("fd00::/121"), "wrong length: ipv6 blocks are /120", false},
		{mp("10.0.5.0/24"), "block already in use", true},
		{mp("fd00::500/120"), "block already in use", true},
		{netip.Prefix{}, "not a valid prefix", false},
	} {
		err := s.Claim(tc.block)
		if err == nil {
			t.Errorf("Claim(%v) succeeded, want error %q", tc.block, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "ipam: claim ") {
			t.Errorf("Claim(%v) = %q, want it to contain %q", tc.block, err, tc.want)
		}
		if errors.Is(err, ErrInUse) != tc.inUse {
			t.Errorf("Claim(%v): errors.Is(err, ErrInUse) = %v, want %v", tc.block, !tc.inUse, tc.inUse)
		}
		if s.Contains(tc.block) != tc.inUse {
			t.Errorf("Contains(%v) = %v, want %v", tc.block, !tc.inUse, tc.inUse)
		}
	}
	v4 := mustSpace(t, mps("10.0.0.0/8"), 24, 0)
	if err := v4.Claim(mp("fd00::/120")); err == nil || !strings.Contains(err.Error(), "space has no ipv6 cidr") {
		t.Errorf("Claim of IPv6 block in IPv4 space = %v", err)
	}
}

func TestReleaseErrors(t *testing.T) {
	s := mustSpace(t, mps("10.0.0.0/16"), 24, 0)
	b := mp("10.0.7.0/24")
	if err := s.Release(b); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("Release of unclaimed block = %v, want ErrNotClaimed", err)
	}
	if err := s.Claim(b); err != nil {
		t.Fatal(err)
	}
	if !s.InUse(b) {
		t.Errorf("InUse(%v) = false after Claim", b)
	}
	if err := s.Release(b); err != nil {
		t.Errorf("Release: %v", err)
	}
	if s.InUse(b) {
		t.Errorf("InUse(%v) = true after Release", b)
	}
	if err := s.Release(b); !errors.Is(err, ErrNotClaimed) || !strings.Contains(err.Error(), "ipam: release 10.0.7.0/24: block not claimed") {
		t.Errorf("second Release = %v, want ErrNotClaimed", err)
	}
	for _, tc := range []struct {
		block netip.Prefix
		want  string
	}{
		{mp("10.1.0.0/24"), "not inside any cidr"},
		{mp("10.0.0.128/24"), "not aligned"},
		{mp("10.0.0.0/25"), "wrong length"},
		{mp("fd00::/120"), "no ipv6 cidr"},
	} {
		if err := s.Release(tc.block); err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrNotClaimed) {
			t.Errorf("Release(%v) = %v, want error containing %q", tc.block, err, tc.want)
		}
		if s.InUse(tc.block) {
			t.Errorf("InUse(%v) = true", tc.block)
		}
	}
}

func TestExhaustionAndRecovery(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cidrs    []netip.Prefix
		l4, l6   int
		f        Family
		denseMax uint64
	}{
		{"v4 one level", mps("10.0.0.0/26", "10.0.1.0/28"), 30, 0, IPv4, denseLevelMaxWords},
		{"v4 three levels", mps("10.0.0.0/16", "10.1.0.0/24"), 28, 0, IPv4, denseLevelMaxWords},
		{"v4 three levels sparse", mps("10.0.0.0/16", "10.1.0.0/24"), 28, 0, IPv4, 0},
		{"v6 two cidrs", mps("fd00::/116", "fd01::/120"), 0, 124, IPv6, denseLevelMaxWords},
		{"single block", mps("10.0.0.0/24"), 24, 0, IPv4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSpace(tc.cidrs, tc.l4, tc.l6, tc.denseMax)
			if err != nil {
				t.Fatal(err)
			}
			n := int(s.Stats(tc.f).Blocks)
			all := refBlocks(tc.cidrs, tc.f, s.BlockLen(tc.f))
			if len(all) != n {
				t.Fatalf("Stats.Blocks = %d, reference has %d", n, len(all))
			}
			var got []netip.Prefix
			for i := range n {
				p, err := s.Allocate(tc.f)
				if err != nil {
					t.Fatalf("Allocate #%d of %d: %v", i, n, err)
				}
				if want := all[i]; p != want {
					t.Fatalf("Allocate #%d = %v, want %v", i, p, want)
				}
				got = append(got, p)
			}
			if _, err := s.Allocate(tc.f); !errors.Is(err, ErrExhausted) {
				t.Fatalf("Allocate with every block in use = %v, want ErrExhausted", err)
			}
			if st := s.Stats(tc.f); st.BlocksInUse != st.Blocks || st.AddressesInUse != st.Addresses {
				t.Errorf("Stats when full = %+v", st)
			}
			// Free a few in the middle and at the ends; they come back lowest first.
			free := slices.Compact([]int{0, n / 2, n - 1})
			for _, i := range slices.Backward(free) {
				if err := s.Release(got[i]); err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range free {
				p, err := s.Allocate(tc.f)
				if err != nil {
					t.Fatalf("Allocate after release: %v", err)
				}
				if p != got[i] {
					t.Errorf("Allocate after release = %v, want %v", p, got[i])
				}
			}
			if _, err := s.Allocate(tc.f); !errors.Is(err, ErrExhausted) {
				t.Fatalf("Allocate when full again = %v, want ErrExhausted", err)
			}
		})
	}
}

func TestStats(t *testing.T) {
	s := mustSpace(t, mps("10.0.0.0/16", "10.1.0.0/24", "fd00::/64", "fd01::/112"), 24, 120)
	for range 3 {
		if _, err := s.Allocate(IPv4); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Allocate(IPv6); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Stats(IPv4), (Stats{Blocks: 257, BlocksInUse: 3, Addresses: 257 * 256, AddressesInUse: 3 * 256}); got != want {
		t.Errorf("Stats(IPv4) = %+v, want %+v", got, want)
	}
	if got, want := s.Stats(IPv6), (Stats{Blocks: 1<<56 + 256, BlocksInUse: 1, Addresses: math.MaxUint64, AddressesInUse: 256}); got != want {
		t.Errorf("Stats(IPv6) = %+v, want %+v", got, want)
	}
	if got := s.Stats(0); got != (Stats{}) {
		t.Errorf("Stats(0) = %+v, want zero", got)
	}
	// Block counts saturate too: five CIDRs of 2^62 blocks.
	big := mustSpace(t, mps("fd00::/66", "fd01::/66", "fd02::/66", "fd03::/66", "fd04::/66"), 0, 128)
	if got := big.Stats(IPv6); got.Blocks != math.MaxUint64 || got.Addresses != math.MaxUint64 {
		t.Errorf("Stats of 5×2^62 blocks = %+v, want saturated", got)
	}
	whole := mustSpace(t, mps("0.0.0.0/0"), 32, 0)
	if got, want := whole.Stats(IPv4), (Stats{Blocks: 1 << 32, Addresses: 1 << 32}); got != want {
		t.Errorf("Stats(0.0.0.0/0 of /32) = %+v, want %+v", got, want)
	}
}

func TestHugeSparseSpace(t *testing.T) {
	// 2^62 blocks: 11 levels, all but the top ones sparse.
	s := mustSpace(t, mps("fd00::/66"), 0, 128)
	last := mp("fd00::3fff:ffff:ffff:ffff/128")
	first := mp("fd00::/128")
	for _, b := range []netip.Prefix{last, first} {
		if err := s.Claim(b); err != nil {
			t.Fatal(err)
		}
	}
	got := allocN(t, s, IPv6, 3)
	if want := "fd00::1/128 fd00::2/128 fd00::3/128"; strings.Join(got, " ") != want {
		t.Errorf("Allocate = %v, want %s", got, want)
	}
	if !s.InUse(last) || s.InUse(mp("fd00::3fff:ffff:ffff:fffe/128")) {
		t.Errorf("InUse wrong near the top of the space")
	}
	if err := s.Claim(mp("fd00::4000:0:0:0/128")); err == nil {
		t.Errorf("Claim just past the space succeeded")
	}
}

func TestConcurrentUse(t *testing.T) {
	s := mustSpace(t, mps("10.0.0.0/16", "fd00::/112"), 28, 124)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[netip.Prefix]bool{}
	for g := range 8 {
		wg.Go(func() {
			f := IPv4
			if g%2 == 1 {
				f = IPv6
			}
			var mine []netip.Prefix
			for i := range 200 {
				p, err := s.Allocate(f)
				if err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, p)
				if i%3 == 0 {
					if err := s.Release(mine[0]); err != nil {
						t.Error(err)
					}
					mine = mine[1:]
				}
				_ = s.Stats(f)
				_ = s.InUse(p)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range mine {
				if seen[p] {
					t.Errorf("%v held twice", p)
				}
				seen[p] = true
			}
		})
	}
	wg.Wait()
	var n uint64
	for p := range seen {
		if !s.InUse(p) {
			t.Errorf("%v not in use", p)
		}
		n++
	}
	if got := s.Stats(IPv4).BlocksInUse + s.Stats(IPv6).BlocksInUse; got != n {
		t.Errorf("BlocksInUse = %d, want %d", got, n)
	}
}

// refBlocks lists every block of family f in a small space, in allocation
// order, computed with netip alone.
func refBlocks(cidrs []netip.Prefix, f Family, bl int) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range cidrs {
		if FamilyOf(c) != f {
			continue
		}
		for a := c.Addr(); a.IsValid() && c.Contains(a); {
			b := netip.PrefixFrom(a, bl)
			out = append(out, b)
			for range 1 << (f.bits() - bl) { // to the next block
				a = a.Next()
			}
		}
	}
	return out
}
