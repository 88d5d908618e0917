package policysync

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/internal/policy"
)

const testNode = "node-a"

// registry is a fake endpoint registry: fixed registrations, IDs handed
// out in order of first sight.
type registry struct {
	mu   sync.Mutex
	regs map[string][]netip.Addr
	ids  map[netip.Addr]uint32
}

func (r *registry) RegisteredIPs() map[string][]netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.regs
}

func (r *registry) AssignIDs(local map[netip.Addr]string) map[netip.Addr]uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[netip.Addr]uint32{}
	}
	out := map[netip.Addr]uint32{}
	for _, ip := range slices.SortedFunc(func(yield func(netip.Addr) bool) {
		for ip := range local {
			if !yield(ip) {
				return
			}
		}
	}, netip.Addr.Compare) {
		if r.ids[ip] == 0 {
			r.ids[ip] = uint32(len(r.ids) + 100)
		}
		out[ip] = r.ids[ip]
	}
	return out
}

// output keeps the views it is handed.
type output struct {
	mu    sync.Mutex
	views []*View
}

func (o *output) Submit(v *View, _ time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.views = append(o.views, v)
}

func (o *output) last() *View {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.views) == 0 {
		return nil
	}
	return o.views[len(o.views)-1]
}

type rig struct {
	s      *Sync
	out    *output
	reader client.Client
}

func newRig(t *testing.T, reg *registry, objs ...client.Object) *rig {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	out := &output{}
	s := New(Config{Log: testr.New(t), Node: testNode, Reader: reader, Endpoints: reg, Output: out, RetryDelay: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx, func(context.Context) bool { return true }) }()
	t.Cleanup(func() { cancel(); <-done })
	NewWithT(t).Eventually(out.last).ShouldNot(BeNil(), "the first view")
	return &rig{s: s, out: out, reader: reader}
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func pod(ns, name, node string, labels map[string]string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	return p
}

func endpointIn(v *View, ip string) (policy.EndpointPolicy, bool) {
	if v == nil {
		return policy.EndpointPolicy{}, false
	}
	for _, ep := range v.Snapshot.Endpoints {
		if ep.IP == netip.MustParseAddr(ip) {
			return ep, true
		}
	}
	return policy.EndpointPolicy{}, false
}

// TestChangesReachTheView: events in, views out; another node's pod is a
// peer (in the ipcache) and no endpoint; this node's endpoints carry the
// registry's IDs.
func TestChangesReachTheView(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, &registry{}, namespace("prod"), namespace("dev"),
		pod("prod", "web", testNode, map[string]string{"app": "web"}, "10.1.0.5"),
		pod("dev", "far", "node-b", nil, "10.1.1.9"))
	v := r.out.last()
	g.Expect(v.Snapshot.IPCache).To(ContainElement(HaveField("Prefix", netip.MustParsePrefix("10.1.1.9/32"))))
	ep, ok := endpointIn(v, "10.1.0.5")
	g.Expect(ok).To(BeTrue())
	g.Expect(ep.IngressIsolated).To(BeFalse())
	g.Expect(ep.ID).To(BeEquivalentTo(100))
	g.Expect(v.Endpoints).To(Equal(map[netip.Addr]Endpoint{netip.MustParseAddr("10.1.0.5"): {PodKey: "prod/web", ID: 100}}))

	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	g.Expect(r.reader.Create(context.Background(), np)).To(Succeed())
	r.s.queue.add(objKey{kind: kindPolicy, namespace: "prod", name: "deny"})
	g.Eventually(func(g Gomega) {
		ep, ok := endpointIn(r.out.last(), "10.1.0.5")
		g.Expect(ok).To(BeTrue())
		g.Expect(ep.IngressIsolated).To(BeTrue())
	}).Should(Succeed(), "the policy isolates web")
	_, far := endpointIn(r.out.last(), "10.1.1.9")
	g.Expect(far).To(BeFalse(), "node-b's pod is an endpoint")

	// The pod leaves: no endpoint.
	g.Expect(r.reader.Delete(context.Background(), pod("prod", "web", testNode, nil))).To(Succeed())
	batch := r.s.PodChanged("prod", "web")
	g.Eventually(func(g Gomega) {
		v := r.out.last()
		g.Expect(v.Batch).To(BeNumerically(">=", batch))
		g.Expect(v.Endpoints).To(BeEmpty())
	}).Should(Succeed(), "web leaves the view")
}

// TestRegisteredPodIsThisNodes: a registered pod is this node's with its
// registered address, whatever the API says, and a refused one is named
// in the view's PodErrors (pods are taken in name order: holder first).
func TestRegisteredPodIsThisNodes(t *testing.T) {
	g := NewWithT(t)
	reg := &registry{regs: map[string][]netip.Addr{
		"prod/web":   {netip.MustParseAddr("10.1.0.5")},
		"prod/newer": {netip.MustParseAddr("10.1.0.7")},
	}}
	r := newRig(t, reg, namespace("prod"),
		pod("prod", "web", "", nil),
		pod("prod", "holder", "node-b", nil, "10.1.0.7"),
		pod("prod", "newer", "", nil))
	g.Eventually(func(g Gomega) {
		v := r.out.last()
		g.Expect(v.Endpoints).To(HaveKeyWithValue(netip.MustParseAddr("10.1.0.5"), HaveField("PodKey", "prod/web")))
		g.Expect(v.PodErrors).To(HaveKeyWithValue("prod/newer", ContainSubstring("already belongs to pod prod/holder")))
	}).Should(Succeed())
}

// TestRefusedPolicyFailsClosed: a policy the compiler refuses still
// isolates the pods it selects, with none of its rules.
func TestRefusedPolicyFailsClosed(t *testing.T) {
	g := NewWithT(t)
	r := newRig(t, &registry{}, namespace("prod"),
		pod("prod", "web", testNode, map[string]string{"app": "web"}, "10.1.0.5"),
		pod("prod", "db", testNode, map[string]string{"app": "db"}, "10.1.0.6"))
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "broken"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				// except outside its cidr: the compiler refuses the policy.
				IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"192.168.0.0/24"}},
			}}}},
		},
	}
	_, err := policy.Compile(&policy.Cluster{Namespaces: []policy.Namespace{{Name: "prod"}}, Policies: []networkingv1.NetworkPolicy{*np}})
	g.Expect(err).To(HaveOccurred(), "the test's policy must be one the compiler refuses")
	g.Expect(r.reader.Create(context.Background(), np)).To(Succeed())
	r.s.queue.add(objKey{kind: kindPolicy, namespace: "prod", name: "broken"})
	g.Eventually(func(g Gomega) {
		ep, ok := endpointIn(r.out.last(), "10.1.0.5")
		g.Expect(ok).To(BeTrue())
		g.Expect(ep.IngressIsolated).To(BeTrue())
	}).Should(Succeed(), "web is isolated for ingress")
	v := r.out.last()
	web, _ := endpointIn(v, "10.1.0.5")
	db, _ := endpointIn(v, "10.1.0.6")
	g.Expect(v.Snapshot.Allowed(netip.MustParseAddr("10.0.0.7"), web.IP, policy.ProtoTCP, 80)).To(BeFalse(), "the refused rule was let through")
	g.Expect(db.IngressIsolated).To(BeFalse(), "a pod the policy doesn't select was isolated")
}
