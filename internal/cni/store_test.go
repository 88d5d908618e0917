package cni

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func overlay(cidrs []string, exclude []string, maxPods int) Allocation {
	return Allocation{Node: "node-1", Pool: "default", Mode: ModeOverlay, CIDRs: cidrs, ExcludeIPs: exclude, MaxPods: maxPods}
}

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func reserve(t *testing.T, s *Store, a Allocation, id string) []netip.Addr {
	t.Helper()
	ips, reused, err := s.Reserve(a, id, "eth0")
	if err != nil {
		t.Fatalf("reserve %s: %v", id, err)
	}
	if reused {
		t.Fatalf("reserve %s: unexpectedly reused %v", id, ips)
	}
	return ips
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestReserveLowestFreeWithExclusions(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := overlay([]string{"10.244.7.0/24"}, []string{"10.244.7.0", "10.244.7.255", "10.244.7.2"}, 0)
	for i, want := range []string{"10.244.7.1", "10.244.7.3", "10.244.7.4"} {
		got := reserve(t, s, a, "c"+string(rune('a'+i)))
		if !slices.Equal(got, addrs(want)) {
			t.Fatalf("reservation %d: got %v, want %s", i, got, want)
		}
	}
	// Releasing the lowest makes it the next one handed out.
	if rel := s.Release("ca", "eth0"); !slices.Equal(rel, addrs("10.244.7.1")) {
		t.Fatalf("released %v", rel)
	}
	if got := reserve(t, s, a, "cd"); !slices.Equal(got, addrs("10.244.7.1")) {
		t.Fatalf("after release got %v", got)
	}
	// Releasing an unknown attachment is a no-op.
	if rel := s.Release("nope", "eth0"); len(rel) != 0 {
		t.Fatalf("released %v for unknown attachment", rel)
	}
}

func TestReserveReusesAttachment(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := overlay([]string{"10.244.7.0/24"}, []string{"10.244.7.0"}, 0)
	first := reserve(t, s, a, "c1")
	again, reused, err := s.Reserve(a, "c1", "eth0")
	if err != nil || !reused || !slices.Equal(again, first) {
		t.Fatalf("retry: %v reused=%v err=%v, want %v reused", again, reused, err, first)
	}
	// Another interface of the same container is another attachment.
	other, reused, err := s.Reserve(a, "c1", "net1")
	if err != nil || reused || slices.Equal(other, first) {
		t.Fatalf("second interface: %v reused=%v err=%v", other, reused, err)
	}
	if n := len(s.Reservations()); n != 2 {
		t.Fatalf("%d reservations, want 2", n)
	}
}

func TestReserveMaxPods(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := overlay([]string{"10.244.7.0/29"}, nil, 2)
	reserve(t, s, a, "c1")
	reserve(t, s, a, "c2")
	_, _, err := s.Reserve(a, "c3", "eth0")
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Usable != 2 {
		t.Fatalf("want ExhaustedError with 2 usable, got %v", err)
	}
	if !strings.Contains(err.Error(), "pool exhausted on this node: all 2 addresses in use") {
		t.Fatalf("message: %q", err)
	}
}

func TestReserveExhaustsAddresses(t *testing.T) {
	s := openStore(t, t.TempDir())
	// Two /30 batches, given out of order, one address excluded: 7 usable.
	a := Allocation{Mode: ModeSubnet, CIDRs: []string{"10.1.0.20/30", "10.1.0.16/30"}, ExcludeIPs: []string{"10.1.0.16", "10.9.9.9"}}
	var got []netip.Addr
	for i := range 7 {
		got = append(got, reserve(t, s, a, "c"+string(rune('a'+i)))...)
	}
	want := addrs("10.1.0.17", "10.1.0.18", "10.1.0.19", "10.1.0.20", "10.1.0.21", "10.1.0.22", "10.1.0.23")
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	_, _, err := s.Reserve(a, "cz", "eth0")
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Usable != 7 {
		t.Fatalf("want ExhaustedError with 7 usable, got %v", err)
	}
}

func TestReserveDualStack(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := overlay([]string{"fd00:10:244:7::/126", "10.244.7.0/24"}, []string{"10.244.7.0", "fd00:10:244:7::"}, 0)
	got := reserve(t, s, a, "c1")
	if !slices.Equal(got, addrs("10.244.7.1", "fd00:10:244:7::1")) {
		t.Fatalf("got %v", got)
	}
	reserve(t, s, a, "c2")
	reserve(t, s, a, "c3")
	// IPv6 has 3 usable addresses: the fourth pod fails whole, with no
	// IPv4 address left behind.
	_, _, err := s.Reserve(a, "c4", "eth0")
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Family != "IPv6" || ex.Usable != 3 {
		t.Fatalf("want IPv6 ExhaustedError with 3 usable, got %v", err)
	}
	if held := s.Lookup("c4", "eth0"); len(held) != 0 {
		t.Fatalf("partial reservation %v", held)
	}
	if n := len(s.Reservations()); n != 6 {
		t.Fatalf("%d reservations, want 6", n)
	}
}

func TestReserveHugeIPv6PrefixIsQuick(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := overlay([]string{"fd00::/48"}, []string{"fd00::"}, 250)
	for i := range 250 {
		reserve(t, s, a, "c"+strings.Repeat("x", i+1))
	}
	_, _, err := s.Reserve(a, "last", "eth0")
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Usable != 250 {
		t.Fatalf("want ExhaustedError with 250 usable, got %v", err)
	}
}

func TestStorePersistsAndInUse(t *testing.T) {
	dir := t.TempDir()
	a := overlay([]string{"10.244.7.0/24"}, []string{"10.244.7.0"}, 0)
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	reserve(t, s, a, "c1")
	reserve(t, s, a, "c2")
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	reserve(t, s, a, "unsaved")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	inUse, err := InUse(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inUse, addrs("10.244.7.1", "10.244.7.2")) {
		t.Fatalf("InUse %v", inUse)
	}
	s2 := openStore(t, dir)
	if held := s2.Lookup("c2", "eth0"); !slices.Equal(held, addrs("10.244.7.2")) {
		t.Fatalf("after reopen c2 holds %v", held)
	}
	if dropped := s2.ReleaseExcept(map[Attachment]bool{{ContainerID: "c2", IfName: "eth0"}: true}); len(dropped) != 1 || dropped[0].ContainerID != "c1" {
		t.Fatalf("ReleaseExcept dropped %+v", dropped)
	}
	// No temporary files are left next to the state.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != stateFileName && e.Name() != lockFileName {
			t.Errorf("stray file %s", e.Name())
		}
	}
}

func TestInUseWithoutState(t *testing.T) {
	ips, err := InUse(filepath.Join(t.TempDir(), "missing"))
	if err != nil || len(ips) != 0 {
		t.Fatalf("got %v, %v", ips, err)
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(`{"version":1,"reservations":[`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("want corrupt-state error, got %v", err)
	}
	if _, err := InUse(dir); err == nil {
		t.Fatal("InUse read a corrupt state")
	}
}

func TestStoreLockExcludes(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	acquired := make(chan *Store)
	go func() {
		s2, err := OpenStore(dir)
		if err != nil {
			t.Error(err)
		}
		acquired <- s2
	}()
	select {
	case <-acquired:
		t.Fatal("second OpenStore got the lock while the first held it")
	case <-time.After(200 * time.Millisecond):
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case s2 := <-acquired:
		_ = s2.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("second OpenStore did not get the lock after Close")
	}
}

func TestAllocationRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "allocation.json")
	if _, err := ReadAllocation(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	a := Allocation{Node: "n", Pool: "p", Mode: ModeSubnet, CIDRs: []string{"10.0.0.0/28", "10.0.0.32/28"}, ExcludeIPs: []string{"10.0.0.1"}, MaxPods: 30}
	if err := WriteAllocation(path, a); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAllocation(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != a.Node || got.Mode != a.Mode || !slices.Equal(got.CIDRs, a.CIDRs) || !slices.Equal(got.ExcludeIPs, a.ExcludeIPs) || got.MaxPods != a.MaxPods {
		t.Fatalf("got %+v, want %+v", got, a)
	}
}

func TestAllocationValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    Allocation
		want string
	}{
		{"bad mode", Allocation{Mode: "Bridge"}, "mode"},
		{"bad cidr", Allocation{Mode: ModeOverlay, CIDRs: []string{"10.0.0.0/33"}}, "cidrs"},
		{"host bits", Allocation{Mode: ModeOverlay, CIDRs: []string{"10.0.0.1/24"}}, "host bits"},
		{"overlap", Allocation{Mode: ModeOverlay, CIDRs: []string{"10.0.0.0/24", "10.0.0.16/28"}}, "overlaps"},
		{"bad exclude", Allocation{Mode: ModeOverlay, ExcludeIPs: []string{"10.0.0"}}, "excludeIPs"},
		{"negative maxPods", Allocation{Mode: ModeOverlay, MaxPods: -1}, "maxPods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteAllocation(filepath.Join(t.TempDir(), "a.json"), tc.a)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func TestHostVethName(t *testing.T) {
	n := HostVethName("slc", "0123456789abcdef", "eth0")
	if len(n) != 14 || !strings.HasPrefix(n, "slc") || n != HostVethName("slc", "0123456789abcdef", "eth0") {
		t.Fatalf("name %q", n)
	}
	if n == HostVethName("slc", "0123456789abcdef", "net1") {
		t.Fatal("different interfaces share a host veth name")
	}
}
