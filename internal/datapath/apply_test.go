package datapath

import (
	"testing"

	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/policy"
)

// TestUnchangedApplyKeepsTheEpoch: a snapshot the maps already hold is not
// applied again (the programs' epoch stays, so tracked flows aren't sent
// back to the policy); a changed one is, and so is any snapshot after a
// restart found pinned policy maps it can't compare.
func TestUnchangedApplyKeepsTheEpoch(t *testing.T) {
	d := newDatapath(t, Options{})
	liveEpoch := func() uint32 {
		t.Helper()
		var epoch uint32
		if err := d.objs.SluiceState.Lookup(uint32(0), &epoch); err != nil {
			t.Fatal(err)
		}
		if epoch != d.epoch {
			t.Fatalf("the programs' epoch is %d, the loader's %d", epoch, d.epoch)
		}
		return epoch
	}
	isolateB := func(entries ...policy.Entry) *policy.Snapshot {
		return snapshot(func(_, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = entries
		})
	}
	http := entry(classA, policy.ProtoTCP, 80, 16)
	dns := entry(policy.ClassAny, policy.ProtoUDP, 53, 16)

	for i, step := range []struct {
		name    string
		snap    *policy.Snapshot
		changes bool
	}{
		{"first", isolateB(http, dns), true},
		{"same again", isolateB(http, dns), false},
		{"same entries in another order, one twice", isolateB(dns, http, dns), false},
		{"an entry less", isolateB(http), true},
		{"an endpoint less", func() *policy.Snapshot { s := isolateB(http); s.Endpoints = s.Endpoints[:3]; return s }(), true},
		{"an ipcache class changed", func() *policy.Snapshot {
			s := isolateB(http)
			s.Endpoints = s.Endpoints[:3]
			s.IPCache[2].Class = classCIDR + 1
			return s
		}(), true},
		{"nothing isolated", snapshot(nil), true},
		{"nothing isolated again", snapshot(nil), false},
	} {
		before := liveEpoch()
		if err := d.Apply(step.snap); err != nil {
			t.Fatalf("step %d (%s): %v", i, step.name, err)
		}
		after := liveEpoch()
		if changed := after != before; changed != step.changes {
			t.Errorf("step %d (%s): epoch %d -> %d, want a bump: %v", i, step.name, before, after, step.changes)
		}
	}
	// The snapshot that is in force still enforces after unchanged applies.
	if err := d.Apply(isolateB(http)); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(isolateB(http)); err != nil {
		t.Fatal(err)
	}
	if !mustVerdict(t, d, tcp(ipA, ipB, 80)) || mustVerdict(t, d, tcp(ipA, ipB, 81)) {
		t.Error("B's policy is not in force after an unchanged Apply")
	}
}

// TestFirstApplyAfterARestartRuns: the policy maps a restarted Datapath
// finds pinned are unknown to it, so its first Apply writes even the
// snapshot the last run left in force.
func TestFirstApplyAfterARestartRuns(t *testing.T) {
	pin := netlabtest.PrivateBPFFS(t)
	snap := snapshot(func(_, b *policy.EndpointPolicy) {
		b.IngressIsolated = true
		b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 80, 16)}
	})
	d1 := newDatapath(t, Options{PinDir: pin})
	if err := d1.Apply(snap); err != nil {
		t.Fatal(err)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := newDatapath(t, Options{PinDir: pin})
	before := d2.epoch
	if err := d2.Apply(snap); err != nil {
		t.Fatal(err)
	}
	if d2.epoch != before+1 {
		t.Errorf("epoch %d -> %d: the first Apply after a restart was skipped", before, d2.epoch)
	}
	if err := d2.Apply(snap); err != nil {
		t.Fatal(err)
	}
	if d2.epoch != before+1 {
		t.Errorf("epoch %d -> %d: the second, unchanged Apply was not skipped", before+1, d2.epoch)
	}
}
