package ipam

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// refSpace is the reference model: per CIDR, the set of used block indices.
type refSpace struct {
	cidrs []netip.Prefix
	bl    map[Family]int
	n     []uint64
	used  []map[uint64]bool
	list  [][2]uint64 // used (cidr, index) pairs, for deterministic random picks
	memo  map[[2]uint64]netip.Prefix
}

func (r *refSpace) claim(j int, i uint64) {
	r.used[j][i] = true
	r.list = append(r.list, [2]uint64{uint64(j), i})
}

func (r *refSpace) release(j int, i uint64) {
	delete(r.used[j], i)
	k := slices.Index(r.list, [2]uint64{uint64(j), i})
	r.list[k] = r.list[len(r.list)-1]
	r.list = r.list[:len(r.list)-1]
}

func newRef(cidrs []netip.Prefix, l4, l6 int) *refSpace {
	r := &refSpace{cidrs: cidrs, bl: map[Family]int{IPv4: l4, IPv6: l6}, memo: map[[2]uint64]netip.Prefix{}}
	for _, c := range cidrs {
		r.n = append(r.n, uint64(1)<<(r.bl[FamilyOf(c)]-c.Bits()))
		r.used = append(r.used, map[uint64]bool{})
	}
	return r
}

// block is block i of CIDR j, computed with math/big.
func (r *refSpace) block(j int, i uint64) netip.Prefix {
	key := [2]uint64{uint64(j), i}
	if p, ok := r.memo[key]; ok {
		return p
	}
	c := r.cidrs[j]
	f := FamilyOf(c)
	bl := r.bl[f]
	v := new(big.Int).SetBytes(c.Addr().AsSlice())
	v.Add(v, new(big.Int).Lsh(new(big.Int).SetUint64(i), uint(f.bits()-bl)))
	buf := make([]byte, f.bits()/8)
	a, _ := netip.AddrFromSlice(v.FillBytes(buf))
	p := netip.PrefixFrom(a, bl)
	r.memo[key] = p
	return p
}

func (r *refSpace) lowestFree(f Family) (int, uint64, bool) {
	for j, c := range r.cidrs {
		if FamilyOf(c) != f || uint64(len(r.used[j])) == r.n[j] {
			continue
		}
		for i := uint64(0); ; i++ {
			if !r.used[j][i] {
				return j, i, true
			}
		}
	}
	return 0, 0, false
}

func (r *refSpace) count(f Family) uint64 {
	var n uint64
	for j, c := range r.cidrs {
		if FamilyOf(c) == f {
			n += uint64(len(r.used[j]))
		}
	}
	return n
}

// randomBlock picks a block of the space, biased to the ends of a CIDR.
func (r *refSpace) randomBlock(rng *rand.Rand) (int, uint64) {
	j := rng.IntN(len(r.cidrs))
	n := r.n[j]
	switch k := min(n, 64); rng.IntN(4) {
	case 0:
		return j, rng.Uint64N(k)
	case 1:
		return j, n - 1 - rng.Uint64N(k)
	case 2:
		return j, rng.Uint64N(n)
	default:
		return j, rng.Uint64N(min(n, uint64(len(r.used[j]))+8))
	}
}

// randomUsed picks a used block, or false if there is none.
func (r *refSpace) randomUsed(rng *rand.Rand) (int, uint64, bool) {
	if len(r.list) == 0 {
		return 0, 0, false
	}
	x := r.list[rng.IntN(len(r.list))]
	return int(x[0]), x[1], true
}

// invalidBlock is something near a block of the space that isn't one.
func (r *refSpace) invalidBlock(rng *rand.Rand) netip.Prefix {
	j, i := r.randomBlock(rng)
	b := r.block(j, i)
	switch rng.IntN(3) {
	case 0: // wrong length
		if b.Bits() > 0 {
			return netip.PrefixFrom(b.Addr(), b.Bits()-1)
		}
		return netip.PrefixFrom(b.Addr(), b.Bits()+1)
	case 1: // misaligned
		if b.Bits() < b.Addr().BitLen() {
			return netip.PrefixFrom(lastAddr(b), b.Bits())
		}
		return netip.PrefixFrom(b.Addr(), b.Bits()-1)
	default: // just past the CIDR (invalid when nothing follows it in the space)
		c := r.cidrs[j]
		next := lastAddr(c).Next()
		if !next.IsValid() {
			return netip.Prefix{}
		}
		return netip.PrefixFrom(next, b.Bits())
	}
}

func (r *refSpace) contains(p netip.Prefix) bool {
	if !p.IsValid() || p.Bits() != r.bl[FamilyOf(p)] || p.Masked() != p {
		return false
	}
	for _, c := range r.cidrs {
		if c.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

type propConfig struct {
	name   string
	cidrs  []netip.Prefix
	l4, l6 int
	// exhaustive: check InUse for every block of the space, not only
	// the used ones and a sample.
	exhaustive bool
}

func TestProperties(t *testing.T) {
	configs := []propConfig{
		{"tiny dual stack", mps("10.0.0.0/27", "fd00::/120", "10.0.1.0/28", "fd01::/122"), 30, 124, true},
		{"two-level v4", mps("10.0.0.0/20", "10.1.0.0/26"), 28, 0, true},
		{"three-level v4", mps("10.0.0.0/16"), 28, 0, false},
		{"huge v6 and large v4", mps("fd00::/66", "10.0.0.0/8", "fd01::/120", "192.168.0.0/30"), 32, 128, false},
	}
	for _, cfg := range configs {
		for _, dm := range []uint64{denseLevelMaxWords, 1, 0} {
			for _, seed := range []uint64{1, 2, 3, 42} {
				t.Run(fmt.Sprintf("%s/denseMax=%d/seed=%d", cfg.name, dm, seed), func(t *testing.T) {
					runProperties(t, cfg, dm, seed, 3000)
				})
			}
		}
	}
}

func runProperties(t *testing.T, cfg propConfig, denseMax, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	s, err := newSpace(cfg.cidrs, cfg.l4, cfg.l6, denseMax)
	if err != nil {
		t.Fatal(err)
	}
	ref := newRef(cfg.cidrs, cfg.l4, cfg.l6)
	var fams []Family
	for _, f := range []Family{IPv4, IPv6} {
		if slices.ContainsFunc(cfg.cidrs, func(c netip.Prefix) bool { return FamilyOf(c) == f }) {
			fams = append(fams, f)
		}
	}
	// Allocation-heavy phases alternate with release-heavy ones so that
	// small spaces fill up and drain again.
	allocWeight := 6
	for op := range ops {
		if op%500 == 0 {
			allocWeight = 10 - allocWeight
		}
		desc := ""
		switch x := rng.IntN(12); {
		case x < allocWeight: // Allocate
			f := fams[rng.IntN(len(fams))]
			desc = fmt.Sprintf("Allocate(%v)", f)
			got, err := s.Allocate(f)
			j, i, ok := ref.lowestFree(f)
			if !ok {
				if !errors.Is(err, ErrExhausted) {
					t.Fatalf("op %d %s = %v, %v; reference is full, want ErrExhausted", op, desc, got, err)
				}
				break
			}
			if want := ref.block(j, i); err != nil || got != want {
				t.Fatalf("op %d %s = %v, %v; want %v", op, desc, got, err, want)
			}
			ref.claim(j, i)
		case x < 9: // Claim a random block, an invalid one, or a used one
			var b netip.Prefix
			var j int
			var i uint64
			valid := true
			switch y := rng.IntN(5); {
			case y < 3:
				j, i = ref.randomBlock(rng)
				b = ref.block(j, i)
			case y == 3:
				var ok bool
				if j, i, ok = ref.randomUsed(rng); !ok {
					j, i = ref.randomBlock(rng)
				}
				b = ref.block(j, i)
			default:
				b, valid = ref.invalidBlock(rng), false
				if ref.contains(b) {
					t.Fatalf("reference: invalid block %v is in the space", b)
				}
			}
			desc = fmt.Sprintf("Claim(%v)", b)
			err := s.Claim(b)
			switch {
			case !valid:
				if err == nil || errors.Is(err, ErrInUse) {
					t.Fatalf("op %d %s = %v, want a not-a-block error", op, desc, err)
				}
				if s.Contains(b) || s.InUse(b) {
					t.Fatalf("op %d: Contains/InUse(%v) true for a non-block", op, b)
				}
			case ref.used[j][i]:
				if !errors.Is(err, ErrInUse) {
					t.Fatalf("op %d %s = %v, want ErrInUse", op, desc, err)
				}
			default:
				if err != nil {
					t.Fatalf("op %d %s = %v", op, desc, err)
				}
				ref.claim(j, i)
			}
		default: // Release a used block or a random one
			j, i, ok := ref.randomUsed(rng)
			if !ok || rng.IntN(4) == 0 {
				j, i = ref.randomBlock(rng)
			}
			b := ref.block(j, i)
			desc = fmt.Sprintf("Release(%v)", b)
			err := s.Release(b)
			if ref.used[j][i] {
				if err != nil {
					t.Fatalf("op %d %s = %v", op, desc, err)
				}
				ref.release(j, i)
			} else if !errors.Is(err, ErrNotClaimed) {
				t.Fatalf("op %d %s = %v, want ErrNotClaimed", op, desc, err)
			}
		}
		// Every invariant is checked after every op; the O(space) and
		// O(blocks in use) scans on every 10th op.
		checkInvariants(t, s, ref, fams, op%10 == 0, cfg.exhaustive, rng, fmt.Sprintf("after op %d %s", op, desc))
	}
}

func checkInvariants(t *testing.T, s *Space, ref *refSpace, fams []Family, full, exhaustive bool, rng *rand.Rand, when string) {
	t.Helper()
	used := ref.list
	if !full && len(used) > 0 { // the latest claim and a sample
		sample := [][2]uint64{used[len(used)-1]}
		for range 8 {
			sample = append(sample, used[rng.IntN(len(used))])
		}
		used = sample
	}
	var inUse []netip.Prefix
	for _, x := range used {
		b := ref.block(int(x[0]), x[1])
		if !s.InUse(b) || !s.Contains(b) {
			t.Fatalf("%s: InUse/Contains(%v) = false, reference has it", when, b)
		}
		inUse = append(inUse, b)
	}
	// No two blocks in use overlap.
	slices.SortFunc(inUse, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if !full {
		inUse = slices.Compact(inUse) // the sample may repeat a block
	}
	for k := 1; k < len(inUse); k++ {
		if inUse[k-1].Overlaps(inUse[k]) {
			t.Fatalf("%s: blocks %v and %v overlap", when, inUse[k-1], inUse[k])
		}
	}
	if full && exhaustive {
		for j := range ref.cidrs {
			for i := range ref.n[j] {
				if b := ref.block(j, i); s.InUse(b) != ref.used[j][i] {
					t.Fatalf("%s: InUse(%v) = %v, reference %v", when, b, !ref.used[j][i], ref.used[j][i])
				}
			}
		}
	} else {
		for range 16 {
			j, i := ref.randomBlock(rng)
			if b := ref.block(j, i); s.InUse(b) != ref.used[j][i] {
				t.Fatalf("%s: InUse(%v) = %v, reference %v", when, b, !ref.used[j][i], ref.used[j][i])
			}
		}
	}
	for _, f := range fams {
		if got, want := s.Stats(f).BlocksInUse, ref.count(f); got != want {
			t.Fatalf("%s: Stats(%v).BlocksInUse = %d, reference %d", when, f, got, want)
		}
		// Allocate returns the reference's lowest free block (then undo it).
		got, err := s.Allocate(f)
		j, i, ok := ref.lowestFree(f)
		if !ok {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("%s: Allocate(%v) = %v, %v; reference full, want ErrExhausted", when, f, got, err)
			}
			continue
		}
		if want := ref.block(j, i); err != nil || got != want {
			t.Fatalf("%s: Allocate(%v) = %v, %v; want %v", when, f, got, err, want)
		}
		if err := s.Release(got); err != nil {
			t.Fatalf("%s: Release(%v): %v", when, got, err)
		}
	}
}
