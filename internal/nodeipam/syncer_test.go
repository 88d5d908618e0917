package nodeipam

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/cni"
	sluicescheme "github.com/sluice-dev/sluice/internal/scheme"
	"github.com/sluice-dev/sluice/internal/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) {
	scheme := sluicescheme.New()
	env := testenv.Environment(scheme)
	cfg, err := testenv.Start(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodeipam:", err)
		os.Exit(1)
	}
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "nodeipam:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// givenNode creates a NodeNetwork as the operator would have left it.
func givenNode(t *testing.T, name string, status v1.NodeNetworkStatus) {
	t.Helper()
	ctx := context.Background()
	nn := &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Create(ctx, nn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), nn) })
	nn.Status = status
	if err := k8s.Status().Update(ctx, nn); err != nil {
		t.Fatal(err)
	}
}

// givenPods reserves n addresses in the plugin's state, as n ADDs would.
func givenPods(t *testing.T, stateDir string, alloc cni.Allocation, n int) {
	t.Helper()
	store, err := cni.OpenStore(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	for i := range n {
		if _, _, err := store.Reserve(alloc, "container-"+string(rune('a'+i)), "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Save(); err != nil {
		t.Fatal(err)
	}
}

func syncer(t *testing.T, node string) *Syncer {
	dir := t.TempDir()
	return &Syncer{Client: k8s, NodeName: node,
		AllocationFile: filepath.Join(dir, "run", "allocation.json"), StateDir: filepath.Join(dir, "state")}
}

func getNN(t *testing.T, name string) *v1.NodeNetwork {
	t.Helper()
	nn := &v1.NodeNetwork{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, nn); err != nil {
		t.Fatal(err)
	}
	return nn
}

func TestOverlayMirrorsStatusAndReportsUse(t *testing.T) {
	ctx := context.Background()
	givenNode(t, "overlay-node", v1.NodeNetworkStatus{
		Pool: "p", Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.244.3.0/24"},
		ExcludeIPs: []string{"10.244.3.0", "10.244.3.255"}, MaxPods: 250,
	})
	s := syncer(t, "overlay-node")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	alloc, err := cni.ReadAllocation(s.AllocationFile)
	if err != nil {
		t.Fatal(err)
	}
	want := cni.Allocation{Node: "overlay-node", Pool: "p", Mode: cni.ModeOverlay, CIDRs: []string{"10.244.3.0/24"},
		ExcludeIPs: []string{"10.244.3.0", "10.244.3.255"}, MaxPods: 250}
	if !equalAllocation(alloc, want) {
		t.Fatalf("allocation = %+v, want %+v", alloc, want)
	}

	givenPods(t, s.StateDir, alloc, 5)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := getNN(t, "overlay-node").Spec; got.IPsInUse != 5 || len(got.ReleaseCIDRs) != 0 {
		t.Fatalf("spec = %+v, want 5 in use and nothing released", got)
	}

	// A second sync with nothing new writes nothing.
	rv := getNN(t, "overlay-node").ResourceVersion
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if getNN(t, "overlay-node").ResourceVersion != rv {
		t.Fatal("a settled sync wrote the NodeNetwork")
	}
}

func TestSubnetReleasesOnlyUnusedBatchesAboveTheHighWatermark(t *testing.T) {
	ctx := context.Background()
	batches := []v1.CIDR{"10.50.0.0/28", "10.50.0.16/28", "10.50.0.32/28"}
	givenNode(t, "subnet-node", v1.NodeNetworkStatus{
		Pool: "subnet-pool", Mode: v1.IPAMModeSubnet, CIDRs: batches,
		ExcludeIPs: []string{"10.50.0.0", "10.50.0.1", "10.50.0.2", "10.50.0.3"}, MaxPods: 250,
		MinFreeIPs: ptr.To[int32](4), MaxFreeIPs: ptr.To[int32](20),
	})
	s := syncer(t, "subnet-node")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	alloc, err := cni.ReadAllocation(s.AllocationFile)
	if err != nil {
		t.Fatal(err)
	}
	// 3 pods take the lowest addresses: 10.50.0.4-6, all in the first batch.
	// Free: 12+16+16-3 = 41 > maxFree 20, so the highest unused batches go
	// while at least minFree 4 stay free: 41-16 = 25 > 20, 25-16 = 9 >= 4.
	givenPods(t, s.StateDir, alloc, 3)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	nn := getNN(t, "subnet-node")
	if want := []v1.CIDR{"10.50.0.16/28", "10.50.0.32/28"}; !slices.Equal(nn.Spec.ReleaseCIDRs, want) || nn.Spec.IPsInUse != 3 {
		t.Fatalf("spec = %+v, want 3 in use and %v released", nn.Spec, want)
	}
	alloc, err = cni.ReadAllocation(s.AllocationFile)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(alloc.CIDRs, []string{"10.50.0.0/28"}) {
		t.Fatalf("allocation file still offers %v; released batches must leave it before they are reported", alloc.CIDRs)
	}

	// The operator drops the batches from status; the node then stops
	// listing them.
	nn.Status.CIDRs = batches[:1]
	if err := k8s.Status().Update(ctx, nn); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := getNN(t, "subnet-node").Spec; len(got.ReleaseCIDRs) != 0 {
		t.Fatalf("spec still releases %v after status dropped them", got.ReleaseCIDRs)
	}
}

func TestSubnetKeepsBatchesThatHoldAPod(t *testing.T) {
	ctx := context.Background()
	givenNode(t, "busy-node", v1.NodeNetworkStatus{
		Pool: "subnet-pool-2", Mode: v1.IPAMModeSubnet, CIDRs: []v1.CIDR{"10.50.1.0/28", "10.50.1.16/28"}, MaxPods: 250,
		MinFreeIPs: ptr.To[int32](0), MaxFreeIPs: ptr.To[int32](1),
	})
	s := syncer(t, "busy-node")
	// One pod in each batch: nothing can be given back.
	store, err := cni.OpenStore(s.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	for i, cidr := range []string{"10.50.1.0/28", "10.50.1.16/28"} {
		if _, _, err := store.Reserve(cni.Allocation{Mode: cni.ModeSubnet, CIDRs: []string{cidr}}, []string{"x", "y"}[i], "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Save(); err != nil {
		t.Fatal(err)
	}
	_ = store.Close()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := getNN(t, "busy-node").Spec; len(got.ReleaseCIDRs) != 0 || got.IPsInUse != 2 {
		t.Fatalf("spec = %+v, want 2 in use and nothing released", got)
	}
}

func TestSubnetReleasesNothingWithoutPublishedWatermarks(t *testing.T) {
	ctx := context.Background()
	// Status as an operator that doesn't publish watermarks leaves it.
	givenNode(t, "unmarked-node", v1.NodeNetworkStatus{
		Pool: "subnet-pool-3", Mode: v1.IPAMModeSubnet, CIDRs: []v1.CIDR{"10.50.2.0/28", "10.50.2.16/28"}, MaxPods: 250,
	})
	s := syncer(t, "unmarked-node")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := getNN(t, "unmarked-node").Spec; len(got.ReleaseCIDRs) != 0 {
		t.Fatalf("spec releases %v of an idle node; without watermarks the node must keep what it holds", got.ReleaseCIDRs)
	}
}

func TestNoAllocationMeansNoFile(t *testing.T) {
	givenNode(t, "empty-node", v1.NodeNetworkStatus{})
	s := syncer(t, "empty-node")
	if err := os.MkdirAll(filepath.Dir(s.AllocationFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.AllocationFile, []byte(`{"mode":"Overlay","cidrs":["10.9.9.0/24"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.AllocationFile); !os.IsNotExist(err) {
		t.Fatalf("a stale allocation file survived a node with no addresses: %v", err)
	}
	// And a node the operator hasn't registered yet is not an error.
	if err := syncer(t, "unknown-node").Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestChooseReleases(t *testing.T) {
	p := netip.MustParsePrefix
	batches := []netip.Prefix{p("10.0.0.0/28"), p("10.0.0.16/28"), p("10.0.0.32/28"), p("10.0.0.48/28")}
	tests := []struct {
		name     string
		inUse    []netip.Addr
		wm       watermarks
		released []netip.Prefix
	}{
		{"below the high watermark: keep all", addrs(40), watermarks{minFree: 8, maxFree: 32}, nil},
		{"above it: release from the top", addrs(2), watermarks{minFree: 8, maxFree: 32}, []netip.Prefix{p("10.0.0.48/28"), p("10.0.0.32/28")}},
		{"never below the low watermark", addrs(2), watermarks{minFree: 50, maxFree: 51}, nil},
		{"skip a batch with a pod", append(addrs(2), netip.MustParseAddr("10.0.0.50")), watermarks{minFree: 8, maxFree: 32},
			[]netip.Prefix{p("10.0.0.32/28"), p("10.0.0.16/28")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kept, released := chooseReleases(batches, tt.inUse, nil, tt.wm)
			if !slices.Equal(released, tt.released) {
				t.Fatalf("released %v, want %v", released, tt.released)
			}
			if len(kept)+len(released) != len(batches) {
				t.Fatalf("kept %v + released %v lose batches", kept, released)
			}
		})
	}
}

// addrs are the first n addresses of 10.0.0.0/24.
func addrs(n int) []netip.Addr {
	out := make([]netip.Addr, 0, n)
	a := netip.MustParseAddr("10.0.0.0")
	for range n {
		out = append(out, a)
		a = a.Next()
	}
	return out
}

func equalAllocation(a, b cni.Allocation) bool {
	return a.Node == b.Node && a.Pool == b.Pool && a.Mode == b.Mode && a.MaxPods == b.MaxPods &&
		slices.Equal(a.CIDRs, b.CIDRs) && slices.Equal(a.ExcludeIPs, b.ExcludeIPs)
}
