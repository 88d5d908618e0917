package datapath

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/policy"
)

// An agent restart: the pinned maps keep enforcing, a new Datapath picks
// them up, tracked flows survive, and its Apply starts from what is there.
func TestPinnedStateSurvivesRestart(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	pin := netlabtest.PrivateBPFFS(t)
	snap := snapshot(func(a, b *policy.EndpointPolicy) {
		a.IngressIsolated = true
		b.IngressIsolated = true
		b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 80, 16)}
	})
	d1, err := New(Options{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Apply(snap); err != nil {
		t.Fatal(err)
	}
	flow := tcp(ipA, ipB, 80)
	if !mustVerdict(t, d1, flow) {
		t.Fatal("flow dropped")
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sluice_state", "sluice_endpoints", "sluice_ipcache", "sluice_policy", "sluice_conntrack", "sluice_counters"} {
		if _, err := os.Stat(filepath.Join(pin, name)); err != nil {
			t.Errorf("pin %s: %v", name, err)
		}
	}

	d2 := newDatapath(t, Options{PinDir: pin})
	if !mustVerdict(t, d2, reply(flow)) {
		t.Error("the tracked flow's reply was dropped after the restart")
	}
	if mustVerdict(t, d2, tcp(ipA, ipB, 81)) {
		t.Error("the pinned policy stopped enforcing")
	}
	if c, err := d2.Counters(idB); err != nil || c.IngressAllowed != 1 {
		t.Errorf("B's counters after the restart: %+v, %v", c, err)
	}
	// The new snapshot drops A and opens B; what the old run left is
	// replaced.
	next := snapshot(nil)
	next.Endpoints = next.Endpoints[1:]
	if err := d2.Apply(next); err != nil {
		t.Fatal(err)
	}
	if !mustVerdict(t, d2, tcp(ipA, ipB, 81)) {
		t.Error("B is still isolated")
	}
	if _, err := d2.Counters(idA); err == nil {
		t.Error("A's counters outlived A")
	}
	var k sluicePolicyOuterKey
	var id uint32
	if it := d2.objs.SluicePolicy.Iterate(); it.Next(&k, &id) {
		t.Errorf("policy entry %+v left", k)
	}
}

// Pinned links outlive Close and are taken over, not doubled, by the next
// Datapath; closing the attachment detaches and unpins.
func TestPinnedLinks(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	pin := netlabtest.PrivateBPFFS(t)
	netns := netlabtest.NewNetNS(t)
	count := func() (n int) {
		t.Helper()
		if err := netns.Do(func(ns.NetNS) error {
			var err error
			n, err = netlab.TCXPrograms("veth0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var ifindex int
	if err := netns.Do(func(ns.NetNS) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "peer0"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		l, err := netlink.LinkByName("veth0")
		ifindex = l.Attrs().Index
		return err
	}); err != nil {
		t.Fatal(err)
	}
	attach := func(d *Datapath) (c interface{ Close() error }) {
		t.Helper()
		if err := netns.Do(func(ns.NetNS) error {
			var err error
			c, err = d.Attach(ifindex)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c
	}

	d1, err := New(Options{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	attach(d1)
	if n := count(); n != 2 {
		t.Fatalf("%d programs attached, want 2", n)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("after Close: %d programs attached, want the 2 pinned", n)
	}
	d2 := newDatapath(t, Options{PinDir: pin})
	att := attach(d2)
	if n := count(); n != 2 {
		t.Fatalf("after a second Attach: %d programs attached, want 2", n)
	}
	if err := att.Close(); err != nil {
		t.Fatal(err)
	}
	if err := att.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after detaching: %d programs attached", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(pin, "links")); len(entries) != 0 {
		t.Errorf("pins left: %v", entries)
	}
}

// An upgrade that changed a map's layout: New replaces the pinned maps
// (here the old LPM-trie policy maps did not fit) instead of failing, and
// the result works.
func TestIncompatiblePinsAreReplaced(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	pin := netlabtest.PrivateBPFFS(t)
	d1, err := New(Options{PinDir: pin, MaxEndpoints: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Apply(snapshot(nil)); err != nil {
		t.Fatal(err)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	// The policy map of an older build: an outer hash of LPM tries.
	oldInner := &ebpf.MapSpec{Type: ebpf.LPMTrie, KeySize: 12, ValueSize: 1, MaxEntries: 16, Flags: unix.BPF_F_NO_PREALLOC}
	policyPin := filepath.Join(pin, "sluice_policy")
	if err := os.Remove(policyPin); err != nil {
		t.Fatal(err)
	}
	outer, err := ebpf.NewMap(&ebpf.MapSpec{
		Type: ebpf.HashOfMaps, KeySize: 8, ValueSize: 4, MaxEntries: 4 * 64, InnerMap: oldInner,
	})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := ebpf.NewMap(oldInner)
	if err != nil {
		t.Fatal(err)
	}
	if err := outer.Update(sluicePolicyOuterKey{Endpoint: idB}, inner, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if err := outer.Pin(policyPin); err != nil {
		t.Fatal(err)
	}
	_ = inner.Close()
	_ = outer.Close()
	counters, err := os.Stat(filepath.Join(pin, "sluice_counters"))
	if err != nil {
		t.Fatal(err)
	}

	d2 := newDatapath(t, Options{PinDir: pin, MaxEndpoints: 64})
	snap := snapshot(func(a, b *policy.EndpointPolicy) {
		a.IngressIsolated = true // replies to A pass only on conntrack
		b.IngressIsolated = true
		b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 80, 16)}
	})
	if err := d2.Apply(snap); err != nil {
		t.Fatal(err)
	}
	if !mustVerdict(t, d2, tcp(ipA, ipB, 80)) || mustVerdict(t, d2, tcp(ipA, ipB, 81)) {
		t.Error("the replaced maps don't enforce the snapshot")
	}
	after, err := os.Stat(filepath.Join(pin, "sluice_counters"))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(counters, after) {
		t.Error("the counters map was kept with a replaced state map")
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	// Compatible pins are reused.
	d3 := newDatapath(t, Options{PinDir: pin, MaxEndpoints: 64})
	if !mustVerdict(t, d3, reply(tcp(ipA, ipB, 80))) {
		t.Error("the tracked flow was lost across a restart without layout change")
	}
}
