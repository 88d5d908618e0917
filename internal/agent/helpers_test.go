package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/policy"
)

const testNode = "node-a"

// fakeDP records what is applied.
type fakeDP struct {
	mu       sync.Mutex
	applied  []*policy.Snapshot
	err      error
	counters map[uint32]datapath.Counters
}

func (d *fakeDP) Apply(s *policy.Snapshot) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.applied = append(d.applied, s)
	return nil
}

func (d *fakeDP) Counters(id uint32) (datapath.Counters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.counters[id]
	if !ok {
		return c, errors.New("no counters")
	}
	return c, nil
}

func (d *fakeDP) last() *policy.Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.applied) == 0 {
		return nil
	}
	return d.applied[len(d.applied)-1]
}

// fakeAttacher has a set of links and records attachments.
type fakeAttacher struct {
	mu        sync.Mutex
	links     map[int]string // ifindex -> name
	attachErr error
	attached  map[int]int // ifindex -> live attachments
	attaches  int
	swept     map[int]bool
}

func newFakeAttacher(links map[int]string) *fakeAttacher {
	return &fakeAttacher{links: links, attached: map[int]int{}}
}

type fakeCloser struct {
	a    *fakeAttacher
	idx  int
	once sync.Once
}

func (c *fakeCloser) Close() error {
	c.once.Do(func() {
		c.a.mu.Lock()
		c.a.attached[c.idx]--
		c.a.mu.Unlock()
	})
	return nil
}

func (a *fakeAttacher) Spoofed(int) (uint64, error) { return 0, nil }

func (a *fakeAttacher) Attach(name string, idx int, _ []netip.Addr) (io.Closer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.links[idx] != name {
		return nil, &badInterfaceError{"no such link"}
	}
	if a.attachErr != nil {
		return nil, a.attachErr
	}
	a.attached[idx]++
	a.attaches++
	return &fakeCloser{a: a, idx: idx}, nil
}

func (a *fakeAttacher) Exists(name string, idx int) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.links[idx] == name, nil
}

func (a *fakeAttacher) Sweep(keep map[int]bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.swept = keep
	return nil
}

func (a *fakeAttacher) live(idx int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.attached[idx]
}

// rig is an engine on fakes, its worker running, its API on a socket.
type rig struct {
	t      *testing.T
	e      *engine
	dp     *fakeDP
	att    *fakeAttacher
	reader client.Client
	client *cni.AgentClient
}

type rigOpt func(*engine)

func newRig(t *testing.T, att *fakeAttacher, objs []client.Object, opts ...rigOpt) *rig {
	t.Helper()
	reader := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(objs...).Build()
	dp := &fakeDP{counters: map[uint32]datapath.Counters{}}
	e := newEngine(testr.New(t), testNode, reader, dp, att, filepath.Join(t.TempDir(), "state.json"))
	e.registerTimeout = 2 * time.Second
	e.retryDelay = 50 * time.Millisecond
	for _, o := range opts {
		o(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	e.setSynced()
	go func() { defer close(done); e.runWorker(ctx) }()

	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.socketHandler(), BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		<-done
	})
	r := &rig{t: t, e: e, dp: dp, att: att, reader: reader, client: cni.NewAgentClient(sock)}
	r.waitReady()
	return r
}

func (r *rig) waitReady() {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.e.notReady() != "" {
		if time.Now().After(deadline) {
			r.t.Fatalf("engine not ready: %s", r.e.notReady())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
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

func endpoint(ns, name, ip, hostIf string, idx int) cni.Endpoint {
	return cni.Endpoint{
		Namespace: ns, Name: name, IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr(ip)},
		HostIfName: hostIf, HostIfIndex: idx,
	}
}

// endpointIn returns the endpoint of ip in s.
func endpointIn(s *policy.Snapshot, ip string) (policy.EndpointPolicy, bool) {
	if s == nil {
		return policy.EndpointPolicy{}, false
	}
	for _, ep := range s.Endpoints {
		if ep.IP == netip.MustParseAddr(ip) {
			return ep, true
		}
	}
	return policy.EndpointPolicy{}, false
}
