package policysync

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/policy"
)

// TestNodeView: the whole cluster's addresses in the ipcache, only this
// node's pods as endpoints, under the registry's IDs.
func TestNodeView(t *testing.T) {
	ip := netip.MustParseAddr
	cluster := &policy.Cluster{
		Namespaces: []policy.Namespace{{Name: "prod"}},
		Nodes:      []policy.Node{{Name: testNode, IPs: []netip.Addr{ip("192.168.0.1")}}, {Name: "node-b", IPs: []netip.Addr{ip("192.168.0.2")}}},
		Pods: []policy.Pod{
			{Namespace: "prod", Name: "a", IP: ip("10.0.0.1"), Node: testNode, Labels: map[string]string{"app": "a"}},
			{Namespace: "prod", Name: "b", IP: ip("10.0.1.1"), Node: "node-b", Labels: map[string]string{"app": "b"}},
			{Namespace: "prod", Name: "c", IP: ip("10.0.0.2"), Node: testNode, Labels: map[string]string{"app": "b"}},
		},
		Policies: []networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "deny"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		}},
	}
	snap, err := policy.Compile(cluster)
	if err != nil {
		t.Fatal(err)
	}
	local := map[netip.Addr]string{ip("10.0.0.1"): "prod/a", ip("10.0.0.2"): "prod/c"}
	ids := map[netip.Addr]uint32{ip("10.0.0.1"): 1, ip("10.0.0.2"): 40} // not the compiler's
	got, eps := nodeView(snap, local, ids)

	if !slices.Equal(got.IPCache, snap.IPCache) {
		t.Errorf("ipcache filtered: %v, want %v", got.IPCache, snap.IPCache)
	}
	for _, want := range []string{"10.0.0.1/32", "10.0.1.1/32", "10.0.0.2/32", "192.168.0.1/32", "192.168.0.2/32", "0.0.0.0/0"} {
		if !slices.ContainsFunc(got.IPCache, func(e policy.IPCacheEntry) bool { return e.Prefix.String() == want }) {
			t.Errorf("ipcache lacks %s", want)
		}
	}
	if len(got.Endpoints) != 2 || got.Endpoints[0].IP != ip("10.0.0.1") || got.Endpoints[0].ID != 1 || got.Endpoints[1].ID != 40 {
		t.Fatalf("endpoints %+v, want this node's two, by ID", got.Endpoints)
	}
	if eps[ip("10.0.0.2")] != (Endpoint{PodKey: "prod/c", ID: 40}) || len(eps) != 2 {
		t.Errorf("view endpoints %v", eps)
	}
	for _, ep := range got.Endpoints {
		if !ep.IngressIsolated || len(ep.Ingress) == 0 {
			t.Errorf("%s lost its policy: %+v", ep.IP, ep)
		}
	}
	// The view's slices are its own: the compiler may change its own.
	got.IPCache[0].Class = 99
	if snap.IPCache[0].Class == 99 {
		t.Error("the view shares the compiler's ipcache")
	}
	// An endpoint without an ID is left out rather than numbered 0.
	delete(ids, ip("10.0.0.1"))
	if s, _ := nodeView(snap, local, ids); len(s.Endpoints) != 1 {
		t.Errorf("endpoint without ID kept: %+v", s.Endpoints)
	}
}

func TestCompilerPods(t *testing.T) {
	p := pod("prod", "web", "node-b", map[string]string{"app": "web"}, "10.0.0.9", "fd00::9", "10.0.0.10")
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 9090}}
	got := compilerPods(p, nil, testNode)
	if len(got) != 2 || got[0].Name != "web" || got[1].Name != "web/1" || got[0].IP != netip.MustParseAddr("10.0.0.9") ||
		got[1].IP != netip.MustParseAddr("fd00::9") || got[0].Node != "node-b" || len(got[0].Ports) != 1 {
		t.Fatalf("from status: %+v", got)
	}
	got = compilerPods(p, []netip.Addr{netip.MustParseAddr("10.0.0.5")}, testNode)
	if len(got) != 1 || got[0].IP != netip.MustParseAddr("10.0.0.5") || got[0].Node != testNode {
		t.Fatalf("registered: %+v", got)
	}
	for name, edit := range map[string]func(*corev1.Pod){
		"host network": func(p *corev1.Pod) { p.Spec.HostNetwork = true },
		"succeeded":    func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"no address":   func(p *corev1.Pod) { p.Status.PodIPs, p.Status.PodIP = nil, "" },
	} {
		q := p.DeepCopy()
		edit(q)
		if got := compilerPods(q, nil, testNode); len(got) != 0 {
			t.Errorf("%s: %+v", name, got)
		}
	}
	trimmed, _ := trimPod(p)
	tp := trimmed.(*corev1.Pod)
	if tp.Spec.NodeName != "node-b" || len(tp.Status.PodIPs) != 3 || len(tp.Spec.Containers) != 1 ||
		len(tp.Spec.Containers[0].Ports) != 1 || tp.Spec.Containers[0].Image != "" {
		t.Errorf("trimmed pod %+v", tp)
	}
}
