package routesync

import (
	"context"
	"errors"
	"testing"

	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/scheme"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// fakeKernel installs every wanted route except those in conflicts, which
// it reports as another owner's.
type fakeKernel struct {
	conflicts map[string]string // destination -> the existing route
	err       error
}

func (k *fakeKernel) Sync(want []Route) (Outcome, error) {
	var out Outcome
	for _, w := range want {
		if existing, ok := k.conflicts[w.Dst.String()]; ok {
			out.Conflicts = append(out.Conflicts, Conflict{Want: w, Existing: existing})
			continue
		}
		out.Installed++
	}
	return out, k.err
}

// cluster is node a, and nodes b and c with a pod range each.
func cluster() []client.Object {
	b, c := node("b", "192.168.0.2"), node("c", "192.168.0.3")
	nb, nc := network("b", "10.0.2.0/24"), network("c", "10.0.3.0/24")
	a := node("a", "192.168.0.1")
	return []client.Object{&a, &b, &c, &nb, &nc}
}

func TestSyncStatusAndEvents(t *testing.T) {
	ctx := context.Background()
	reader := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(cluster()...).Build()
	kernel := &fakeKernel{}
	rec := events.NewFakeRecorder(10)
	s := New(Config{Log: testr.New(t), Node: "a", Reader: reader, Kernel: kernel, Events: rec})

	if st := s.Status(); st.Synced {
		t.Fatalf("status before the first sync: %+v", st)
	}
	sync := func() Status {
		t.Helper()
		if err := s.SyncOnce(ctx); err != nil && kernel.err == nil {
			t.Fatal(err)
		}
		return s.Status()
	}
	noEvent := func() {
		t.Helper()
		select {
		case e := <-rec.Events:
			t.Fatalf("unexpected event %q", e)
		default:
		}
	}

	if st := sync(); !st.Synced || st.Routes != 2 || len(st.Problems) != 0 || st.Err != "" {
		t.Fatalf("status: %+v, want 2 routes and no problem", st)
	}
	noEvent()

	// A conflict: a problem in the status and one Event, not one a sync.
	kernel.conflicts = map[string]string{"10.0.3.0/24": "10.0.3.0/24 via 192.168.0.99 dev eth0 proto static"}
	st := sync()
	wantProblem := Problem{Dst: "10.0.3.0/24", Node: "c", Reason: v1.ReasonRouteConflict,
		Message: "route to 10.0.3.0/24 via 192.168.0.3 (node c): a route the agent doesn't own is there (10.0.3.0/24 via 192.168.0.99 dev eth0 proto static); not replaced"}
	if st.Routes != 1 || len(st.Problems) != 1 || st.Problems[0] != wantProblem {
		t.Fatalf("status: %+v, want 1 route and the conflict %+v", st, wantProblem)
	}
	if e := <-rec.Events; e != "Warning RouteConflict "+wantProblem.Message {
		t.Fatalf("event %q", e)
	}
	sync()
	noEvent()

	// Gone, then back: announced again.
	kernel.conflicts = nil
	if st := sync(); st.Routes != 2 || len(st.Problems) != 0 {
		t.Fatalf("status: %+v", st)
	}
	kernel.conflicts = map[string]string{"10.0.3.0/24": "10.0.3.0/24 via 192.168.0.99 dev eth0 proto static"}
	sync()
	if e := <-rec.Events; e != "Warning RouteConflict "+wantProblem.Message {
		t.Fatalf("event %q", e)
	}

	// A failed write is in the status.
	kernel.err = errors.New("add route 10.0.2.0/24: network is unreachable")
	if st := sync(); st.Err != kernel.err.Error() || len(st.Problems) != 1 {
		t.Fatalf("status: %+v, want the error", st)
	}
}

// TestSyncEventReachesAPIServer records through client-go's events
// broadcaster, as the agent does, and finds the Event on the Node.
func TestSyncEventReachesAPIServer(t *testing.T) {
	cfg, sch := testenv.StartFor(t)
	k8s, err := client.New(cfg, client.Options{Scheme: sch})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, o := range cluster() {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The NodeNetworks' ranges are status.
	for _, name := range []string{"b", "c"} {
		nn := &v1.NodeNetwork{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, nn); err != nil {
			t.Fatal(err)
		}
		nn.Status.CIDRs = []v1.CIDR{v1.CIDR(map[string]string{"b": "10.0.2.0/24", "c": "10.0.3.0/24"}[name])}
		if err := k8s.Status().Update(ctx, nn); err != nil {
			t.Fatal(err)
		}
	}
	self := &corev1.Node{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "a"}, self); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	stop := make(chan struct{})
	b.StartRecordingToSink(stop)
	t.Cleanup(func() { close(stop); b.Shutdown() })

	kernel := &fakeKernel{conflicts: map[string]string{"10.0.3.0/24": "10.0.3.0/24 via 192.168.0.99 dev eth0 proto static"}}
	s := New(Config{Log: testr.New(t), Node: "a", Reader: k8s, Kernel: kernel, Events: b.NewRecorder(sch, "sluice-agent")})
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Eventually(func(g Gomega) {
		var list eventsv1.EventList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(metav1.NamespaceDefault))).To(Succeed())
		g.Expect(list.Items).To(ConsistOf(Satisfy(func(e eventsv1.Event) bool {
			return e.Type == corev1.EventTypeWarning && e.Reason == v1.ReasonRouteConflict &&
				e.Action == EventActionInstallRoute && e.Regarding.Kind == "Node" && e.Regarding.Name == "a" &&
				e.Regarding.UID == self.UID && e.ReportingController == "sluice-agent"
		})))
		g.Expect(list.Items[0].Note).To(ContainSubstring("10.0.3.0/24 via 192.168.0.99 dev eth0 proto static"))
	}).Should(Succeed())
}
