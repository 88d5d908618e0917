package policy_test

import (
	"testing"

	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/policy"
)

// TestDatapathMatchesEvaluator runs random clusters' probes through the
// real BPF programs (BPF_PROG_TEST_RUN) and through the Go evaluator over
// the same compiled entries: the two engines of `sluicectl policy
// verdicts` must agree on every probe.
func TestDatapathMatchesEvaluator(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	dp, err := datapath.New(datapath.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dp.Close() }()

	seeds := 120
	if testing.Short() {
		seeds = 20
	}
	probes := 0
	for seed := range uint64(seeds) {
		c, addrs, next := policy.RandomCase(policy.SeedBytes(seed, 4096))
		snap, err := policy.Compile(c)
		if err != nil {
			t.Fatalf("seed %d: compile: %v", seed, err)
		}
		if err := dp.Apply(snap); err != nil {
			t.Fatalf("seed %d: apply: %v", seed, err)
		}
		if err := dp.ResetConntrack(); err != nil {
			t.Fatal(err)
		}
		// A fresh source port per probe keeps one probe's conntrack entry
		// from answering for another.
		sport := uint16(20000)
		for _, src := range addrs {
			for _, dst := range addrs {
				if src.Is4() != dst.Is4() {
					continue // no packet has one address of each family
				}
				proto, port := next()
				sport++
				probes++
				want := snap.Allowed(src, dst, proto, port)
				got, err := dp.Verdict(datapath.Packet{Src: src, Dst: dst, Proto: proto, SrcPort: sport, DstPort: port})
				if err != nil {
					t.Fatalf("seed %d: verdict: %v", seed, err)
				}
				if got != want {
					t.Fatalf("seed %d: %s -> %s proto %d port %d: datapath %v, evaluator %v", seed, src, dst, proto, port, got, want)
				}
			}
		}
	}
	t.Logf("%d clusters, %d probes agree", seeds, probes)
}
