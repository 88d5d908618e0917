package endpoint

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/internal/cni"
)

const testNode = "node-a"

// fakePolicy publishes what the test says; PodChanged records the pods
// and answers the next batch number.
type fakePolicy struct {
	mu       sync.Mutex
	notReady string
	next     uint64
	changed  []string
	enf      Enforcement
	ch       chan struct{}
}

func newFakePolicy() *fakePolicy { return &fakePolicy{next: 1, ch: make(chan struct{})} }

func (p *fakePolicy) NotReady() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.notReady
}

func (p *fakePolicy) PodChanged(namespace, name string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changed = append(p.changed, namespace+"/"+name)
	return p.next
}

func (p *fakePolicy) Enforcement() (Enforcement, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enf, p.ch
}

func (p *fakePolicy) publish(enf Enforcement) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enf = enf
	close(p.ch)
	p.ch = make(chan struct{})
}

// fakeAttacher has the links 11 (slc1) and 12 (slc2).
type fakeAttacher struct {
	mu   sync.Mutex
	live map[int]int
}

type closer func() error

func (c closer) Close() error { return c() }

func (a *fakeAttacher) Attach(name string, idx int, _ []netip.Addr) (io.Closer, error) {
	if ok, _ := a.Exists(name, idx); !ok {
		return nil, &BadInterfaceError{Msg: "no such link"}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.live[idx]++
	var once sync.Once
	return closer(func() error {
		once.Do(func() { a.mu.Lock(); a.live[idx]--; a.mu.Unlock() })
		return nil
	}), nil
}

func (a *fakeAttacher) Exists(name string, idx int) (bool, error) {
	return map[int]string{11: "slc1", 12: "slc2"}[idx] == name, nil
}

func (a *fakeAttacher) Sweep(map[int]bool) error { return nil }

func (a *fakeAttacher) Spoofed(int) (uint64, error) { return 0, nil }

func (a *fakeAttacher) attached(idx int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.live[idx]
}

func newRegistry(t *testing.T, p *fakePolicy, timeout time.Duration, objs ...client.Object) (*Registry, *fakeAttacher) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	att := &fakeAttacher{live: map[int]int{}}
	r, err := New(Config{
		Log: testr.New(t), Node: testNode, Pods: fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build(),
		Attacher: att, Policy: p, RegisterTimeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.recover()
	return r, att
}

func pod(name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: name}, Spec: corev1.PodSpec{NodeName: node}}
}

// ep is a registration of 10.1.0.5 for pod prod/name.
func ep(name, hostIf string, idx int) cni.Endpoint {
	return cni.Endpoint{Namespace: "prod", Name: name, IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}, HostIfName: hostIf, HostIfIndex: idx}
}

func TestOnePerFamily(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		in, want []netip.Addr
	}{
		{nil, nil},
		{[]netip.Addr{a("10.0.0.1")}, []netip.Addr{a("10.0.0.1")}},
		{[]netip.Addr{a("10.0.0.1"), a("10.0.0.2")}, []netip.Addr{a("10.0.0.1")}},
		{[]netip.Addr{a("fd00::1"), a("10.0.0.1"), a("fd00::2")}, []netip.Addr{a("fd00::1"), a("10.0.0.1")}},
		{[]netip.Addr{{}, a("fe80::1%eth0"), a("fd00::1")}, []netip.Addr{a("fd00::1")}},
	} {
		if got := OnePerFamily(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("OnePerFamily(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	for k, want := range map[Kind]int{
		Internal: http.StatusInternalServerError, Invalid: http.StatusBadRequest, NotFound: http.StatusNotFound,
		Conflict: http.StatusConflict, Unavailable: http.StatusServiceUnavailable,
	} {
		rec := httptest.NewRecorder()
		reply(rec, nil, errorf(k, "no"))
		if rec.Code != want || !strings.Contains(rec.Body.String(), `"message":"no"`) {
			t.Errorf("kind %d: %d %s, want %d", k, rec.Code, rec.Body.String(), want)
		}
	}
	rec := httptest.NewRecorder()
	reply(rec, nil, errors.New("plain"))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("a plain error: %d", rec.Code)
	}
}

// TestRegisterWaitsForItsBatch: a PUT answers only once a batch that read
// its pod is in force with its address as the pod's, and attaches only
// then.
func TestRegisterWaitsForItsBatch(t *testing.T) {
	g := NewWithT(t)
	p := newFakePolicy()
	p.next = 5
	r, att := newRegistry(t, p, 5*time.Second, pod("web", testNode))
	inForce := Enforcement{Batch: 4, Endpoints: map[netip.Addr]Enforced{netip.MustParseAddr("10.1.0.5"): {PodKey: "prod/web", ID: 7}}}
	p.publish(inForce) // an older batch already holds the address

	type result struct {
		st  *cni.EndpointStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := r.Register(context.Background(), "c1", ep("web", "slc1", 11))
		done <- result{st, err}
	}()
	g.Eventually(func() []string { p.mu.Lock(); defer p.mu.Unlock(); return slices.Clone(p.changed) }).Should(Equal([]string{"prod/web"}))
	g.Consistently(done, 100*time.Millisecond).ShouldNot(Receive(), "answered before its batch")
	g.Expect(att.attached(11)).To(BeZero())
	inForce.Batch = 5
	p.publish(inForce)
	var res result
	g.Eventually(done).Should(Receive(&res))
	g.Expect(res.err).NotTo(HaveOccurred())
	g.Expect(res.st.Attached).To(BeTrue())
	g.Expect(res.st.Enforced).To(BeTrue())
	g.Expect(res.st.DatapathIDs).To(Equal([]uint32{7}))
	g.Expect(att.attached(11)).To(Equal(1))
	g.Expect(r.RegisteredIPs()).To(HaveKeyWithValue("prod/web", []netip.Addr{netip.MustParseAddr("10.1.0.5")}))
}

// TestRegisterRefusals: each way a PUT fails, with its kind; nothing
// stays registered or attached.
func TestRegisterRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ep      cni.Endpoint
		policy  func(*fakePolicy)
		kind    Kind
		msg     string
		changed bool // the policy loop was told (and told again on failure)
	}{
		{name: "no namespace", ep: cni.Endpoint{Name: "web", IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}, HostIfName: "slc1", HostIfIndex: 11},
			kind: Invalid, msg: "namespace and name"},
		{name: "host veth missing", ep: ep("web", "slc9", 99), kind: Invalid, msg: "does not exist"},
		{name: "pod on another node", ep: ep("far", "slc1", 11), kind: Conflict, msg: "scheduled on node node-b"},
		{name: "not ready", ep: ep("web", "slc1", 11), policy: func(p *fakePolicy) { p.notReady = "the agent is starting: x" },
			kind: Unavailable, msg: "the agent is starting: x"},
		{name: "compile refused the pod", ep: ep("web", "slc1", 11),
			policy: func(p *fakePolicy) {
				p.enf = Enforcement{Batch: 1, PodErrors: map[string]string{"prod/web": "IP taken"}}
			},
			kind: Conflict, msg: "pod prod/web: IP taken", changed: true},
		{name: "apply failed", ep: ep("web", "slc1", 11),
			policy: func(p *fakePolicy) { p.enf = Enforcement{Batch: 1, Err: errors.New("map full")} },
			kind:   Unavailable, msg: "applying the policy snapshot failed: map full", changed: true},
		{name: "pod unknown", ep: ep("ghost", "slc1", 11), kind: Unavailable, msg: "not found", changed: true},
		{name: "not in time", ep: ep("web", "slc1", 11), kind: Unavailable, msg: "policy not applied in time", changed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePolicy()
			if tc.policy != nil {
				tc.policy(p)
			}
			r, att := newRegistry(t, p, 200*time.Millisecond, pod("web", testNode), pod("far", "node-b"))
			_, err := r.Register(context.Background(), "c1", tc.ep)
			var e *Error
			if !errors.As(err, &e) || e.Kind != tc.kind || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("Register: %v; want kind %d with %q", err, tc.kind, tc.msg)
			}
			if _, err := r.Status("c1"); !errors.As(err, &e) || e.Kind != NotFound {
				t.Errorf("a refused endpoint is still registered: %v", err)
			}
			if att.attached(11) != 0 {
				t.Error("a refused endpoint is attached")
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if wantChanges := map[bool]int{false: 0, true: 2}[tc.changed]; len(p.changed) != wantChanges {
				t.Errorf("the policy loop was told of %v, want %d changes", p.changed, wantChanges)
			}
		})
	}
}
