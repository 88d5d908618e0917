package integration

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/controllers"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/nodeipam"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// startOperator starts envtest and the IPAM reconcilers in-process.
func startOperator(t *testing.T) client.Client {
	t.Helper()
	cfg, scheme := testenv.StartFor(t)

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := (&controllers.NodeNetworkReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("test"),
	}).SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.IPAMPoolReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("test")}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// localNode is a Node object, its network namespaces, and its node side.
type localNode struct {
	lab    *netlabtest.Node
	syncer *nodeipam.Syncer
}

func newLocalNode(t *testing.T, c client.Client, name, pool string) *localNode {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"kubernetes.azure.com/agentpool": pool},
	}}); err != nil {
		t.Fatal(err)
	}
	lab := netlabtest.NewNode(t)
	return &localNode{lab: lab, syncer: &nodeipam.Syncer{
		Client: c, NodeName: name, AllocationFile: lab.AllocationFile(), StateDir: lab.StateDir(),
	}}
}

// syncUntil runs the node side until cond holds for its allocation file.
func (n *localNode) syncUntil(t *testing.T, what string, cond func(cni.Allocation) bool) cni.Allocation {
	t.Helper()
	var alloc cni.Allocation
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) {
			if err := n.syncer.Sync(ctx); err != nil {
				t.Logf("sync: %v", err)
				return false, nil
			}
			a, err := cni.ReadAllocation(n.lab.AllocationFile())
			if err != nil {
				return false, nil
			}
			alloc = a
			return cond(a), nil
		})
	if err != nil {
		t.Fatalf("node %s: %s: %v (allocation now %+v)", n.syncer.NodeName, what, err, alloc)
	}
	return alloc
}

func pool(name string, mode v1.IPAMMode, cidr v1.CIDR) *v1.IPAMPool {
	return &v1.IPAMPool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.IPAMPoolSpec{
			Mode: mode, CIDRs: []v1.CIDR{cidr},
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.azure.com/agentpool": name}},
		},
	}
}

// addPod wires a pod (no agent: no CNI_ARGS) on the node.
func addPod(t *testing.T, n *localNode, id string) *netlab.Pod {
	t.Helper()
	return n.lab.Wire(t, netlab.PodSpec{ContainerID: id})
}

func TestOverlayPoolToPodAddresses(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	c := startOperator(t)
	ctx := context.Background()
	if err := c.Create(ctx, pool("system", v1.IPAMModeOverlay, "10.60.0.0/16")); err != nil {
		t.Fatal(err)
	}
	node := newLocalNode(t, c, "aks-system-0", "system")
	alloc := node.syncUntil(t, "receive its block", func(a cni.Allocation) bool { return len(a.CIDRs) == 1 })
	block := netip.MustParsePrefix(alloc.CIDRs[0])
	if block.Bits() != 24 || !netip.MustParsePrefix("10.60.0.0/16").Contains(block.Addr()) {
		t.Fatalf("block %s is not a /24 of the pool", block)
	}

	podA, podB := addPod(t, node, "pod-a"), addPod(t, node, "pod-b")
	for _, ip := range []netip.Addr{podA.IP, podB.IP} {
		if !block.Contains(ip) || ip == block.Addr() {
			t.Fatalf("pod IP %s is not a usable address of the node's block %s", ip, block)
		}
	}
	if podA.IP == podB.IP {
		t.Fatalf("both pods got %s", podA.IP)
	}
	if err := netlab.TCPRoundTripOn(podA.NetNS, podA.IP, 7777, podB.NetNS, 5*time.Second); err != nil {
		t.Fatalf("pod-b -> pod-a through the host: %v", err)
	}

	// The node side reports what the plugin handed out.
	if err := node.syncer.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	nn := &v1.NodeNetwork{}
	if err := c.Get(ctx, client.ObjectKey{Name: "aks-system-0"}, nn); err != nil {
		t.Fatal(err)
	}
	if nn.Spec.IPsInUse != 2 {
		t.Fatalf("NodeNetwork spec.ipsInUse = %d, want 2", nn.Spec.IPsInUse)
	}
}

func TestSubnetPoolGrowsAndShrinksWithPods(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	c := startOperator(t)
	ctx := context.Background()
	p := pool("user", v1.IPAMModeSubnet, "10.61.0.0/20")
	p.Spec.MinFreeIPs, p.Spec.MaxFreeIPs = ptr.To[int32](4), ptr.To[int32](20)
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	node := newLocalNode(t, c, "aks-user-0", "user")
	node.syncUntil(t, "receive its first batch", func(a cni.Allocation) bool { return len(a.CIDRs) == 1 })

	// The first batch, 10.61.0.0/28, loses the subnet's four reserved
	// addresses: 12 pods fit. The 13th gets an address only because the
	// node reported its use and the operator sent a second batch.
	var pods []*netlab.Pod
	seen := map[netip.Addr]string{}
	for i := range 20 {
		id := fmt.Sprintf("pod-%d", i)
		if i == 12 {
			node.syncUntil(t, "receive a second batch", func(a cni.Allocation) bool { return len(a.CIDRs) == 2 })
		}
		pod := addPod(t, node, id)
		if other, dup := seen[pod.IP]; dup {
			t.Fatalf("%s and %s both got %s", id, other, pod.IP)
		}
		seen[pod.IP] = id
		pods = append(pods, pod)
	}

	// All pods gone: 28 free > maxFree 20, so the node gives the unused
	// top batch back, the operator takes it off the node and frees it.
	for _, pod := range pods {
		if err := node.lab.DelPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	node.syncUntil(t, "give a batch back", func(a cni.Allocation) bool { return len(a.CIDRs) == 1 })
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := node.syncer.Sync(ctx); err != nil {
			return false, nil
		}
		var blocks v1.IPAMBlockList
		if err := c.List(ctx, &blocks, client.MatchingLabels{v1.LabelNode: "aks-user-0"}); err != nil {
			return false, err
		}
		nn := &v1.NodeNetwork{}
		if err := c.Get(ctx, client.ObjectKey{Name: "aks-user-0"}, nn); err != nil {
			return false, err
		}
		return len(blocks.Items) == 1 && len(nn.Status.CIDRs) == 1 && len(nn.Spec.ReleaseCIDRs) == 0 && nn.Spec.IPsInUse == 0, nil
	})
	if err != nil {
		t.Fatalf("the released batch did not go back to the pool: %v", err)
	}
}
