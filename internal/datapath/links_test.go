package datapath

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
)

func TestLinkPinIfindex(t *testing.T) {
	for _, tc := range []struct {
		name string
		idx  int
		ok   bool
	}{
		{"12_from_pod", 12, true},
		{"7_to_pod", 7, true},
		{"12_sideways", 0, false},
		{"12", 0, false},
		{"x_to_pod", 0, false},
		{"0_to_pod", 0, false},
		{"-3_to_pod", 0, false},
		{"012_to_pod", 0, false},
		{"12_to_pod_old", 0, false},
	} {
		idx, ok := linkPinIfindex(tc.name)
		if idx != tc.idx || ok != tc.ok {
			t.Errorf("linkPinIfindex(%q) = %d, %v; want %d, %v", tc.name, idx, ok, tc.idx, tc.ok)
		}
	}
}

// TestSweepInterfaces: the pins of an interface that is gone go, those of
// one that exists stay whether kept or not, and only kept veths keep
// their pod addresses. The names Attach pins under are the ones the sweep
// reads.
func TestSweepInterfaces(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	d := newDatapath(t, Options{PinDir: netlabtest.PrivateBPFFS(t)})
	netns := netlabtest.NewNetNS(t)
	in := func(fn func() error) {
		t.Helper()
		if err := netns.Do(func(ns.NetNS) error { return fn() }); err != nil {
			t.Fatal(err)
		}
	}
	ifindex := map[string]int{}
	for i, name := range []string{"kept0", "other0", "gone0"} {
		in(func() error {
			veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "peer" + name[:len(name)-1]}
			if err := netlink.LinkAdd(veth); err != nil {
				return err
			}
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			ifindex[name] = l.Attrs().Index
			// Attached and then left pinned, as by an agent that stopped.
			_, err = d.Attach(l.Attrs().Index, netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}))
			return err
		})
	}
	in(func() error { return netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "gone0"}}) })

	in(func() error { return d.SweepInterfaces(map[int]bool{ifindex["kept0"]: true}) })

	entries, err := os.ReadDir(filepath.Join(d.opts.PinDir, "links"))
	if err != nil {
		t.Fatal(err)
	}
	var pinned []int
	for _, e := range entries {
		idx, ok := linkPinIfindex(e.Name())
		if !ok {
			t.Errorf("pin %q is not of the layout the sweep reads", e.Name())
		}
		pinned = append(pinned, idx)
	}
	want := []int{ifindex["kept0"], ifindex["kept0"], ifindex["other0"], ifindex["other0"]}
	slices.Sort(pinned)
	slices.Sort(want)
	if !slices.Equal(pinned, want) {
		t.Errorf("pins of ifindexes %v left, want %v (kept0 %d, other0 %d, gone0 %d)", pinned, want, ifindex["kept0"], ifindex["other0"], ifindex["gone0"])
	}
	if _, err := d.Spoofed(ifindex["kept0"]); err != nil {
		t.Errorf("the kept veth lost its pod address: %v", err)
	}
	if _, err := d.Spoofed(ifindex["other0"]); err == nil {
		t.Error("a veth not kept still has its pod address")
	}
}
