package ipam

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// BenchmarkOverlay5000Nodes: a fresh 10.0.0.0/8 pool of /24 blocks, one
// block for each of 5,000 nodes, per op.
func BenchmarkOverlay5000Nodes(b *testing.B) {
	cidrs := mps("10.0.0.0/8")
	b.ReportAllocs()
	for b.Loop() {
		s, err := NewSpace(cidrs, 24, 0)
		if err != nil {
			b.Fatal(err)
		}
		for range 5000 {
			if _, err := s.Allocate(IPv4); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// subnetBatches is what 5,000 nodes with 250 pods each hold in Subnet mode:
// batches of 16 (/28) out of 10.0.0.0/11.
func subnetBatches(tb testing.TB) (cidrs []netip.Prefix, blockLen, nodes, perNode int) {
	blockLen, err := BatchLen(IPv4, 16)
	if err != nil {
		tb.Fatal(err)
	}
	return mps("10.0.0.0/11"), blockLen, 5000, BatchesWanted(250, 8, 250, 16)
}

// BenchmarkSubnet5000Nodes250Pods: a fresh 10.0.0.0/11 pool of /28 batches,
// 5,000 nodes × 16 batches (80,000 Allocate calls) per op.
func BenchmarkSubnet5000Nodes250Pods(b *testing.B) {
	cidrs, bl, nodes, perNode := subnetBatches(b)
	if perNode != 16 {
		b.Fatalf("BatchesWanted(250, 8, 250, 16) = %d, want 16", perNode)
	}
	b.ReportAllocs()
	for b.Loop() {
		s, err := NewSpace(cidrs, bl, 0)
		if err != nil {
			b.Fatal(err)
		}
		for range nodes * perNode {
			if _, err := s.Allocate(IPv4); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkRebuild80000Claims: what a restarted operator does: a fresh
// space and one Claim per IPAMBlock object (80,000 batches, in the random
// order a List returns them after churn).
func BenchmarkRebuild80000Claims(b *testing.B) {
	cidrs, bl, nodes, perNode := subnetBatches(b)
	s, err := NewSpace(cidrs, bl, 0)
	if err != nil {
		b.Fatal(err)
	}
	blocks := make([]netip.Prefix, 0, nodes*perNode)
	for range nodes * perNode {
		p, err := s.Allocate(IPv4)
		if err != nil {
			b.Fatal(err)
		}
		blocks = append(blocks, p)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(blocks), func(i, j int) { blocks[i], blocks[j] = blocks[j], blocks[i] })
	b.ReportAllocs()
	for b.Loop() {
		s, err := NewSpace(cidrs, bl, 0)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range blocks {
			if err := s.Claim(p); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAllocateReleaseChurn: steady state of a busy Subnet pool (80,000
// of 131,072 batches in use): each op releases a random held batch and
// allocates one.
func BenchmarkAllocateReleaseChurn(b *testing.B) {
	for _, tc := range []struct {
		name   string
		cidrs  []netip.Prefix
		l4, l6 int
		f      Family
		held   int
	}{
		{"v4-subnet", mps("10.0.0.0/11"), 28, 0, IPv4, 80000},
		{"v6-overlay-sparse", mps("fd00::/64"), 0, 120, IPv6, 80000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := NewSpace(tc.cidrs, tc.l4, tc.l6)
			if err != nil {
				b.Fatal(err)
			}
			held := make([]netip.Prefix, 0, tc.held)
			for range tc.held {
				p, err := s.Allocate(tc.f)
				if err != nil {
					b.Fatal(err)
				}
				held = append(held, p)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			b.ReportAllocs()
			for b.Loop() {
				i := rng.IntN(len(held))
				if err := s.Release(held[i]); err != nil {
					b.Fatal(err)
				}
				p, err := s.Allocate(tc.f)
				if err != nil {
					b.Fatal(err)
				}
				held[i] = p
			}
		})
	}
}
