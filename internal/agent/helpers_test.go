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
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/internal/agent/endpoint"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/policy"
	"github.com/sluice-dev/sluice/internal/scheme"
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
		return nil, &endpoint.BadInterfaceError{Msg: "no such link"}
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

// rig is the agent's parts on fakes, running, the endpoint API on a
// socket.
type rig struct {
	t      *testing.T
	p      *parts
	dp     *fakeDP
	att    *fakeAttacher
	reader client.Client
	client *cni.AgentClient
	state  string // the state file
}

type rigOpt func(*partsConfig)

func newRig(t *testing.T, att *fakeAttacher, objs []client.Object, opts ...rigOpt) *rig {
	t.Helper()
	reader := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
	dp := &fakeDP{counters: map[uint32]datapath.Counters{}}
	cfg := partsConfig{
		log: testr.New(t), node: testNode, reader: reader, dp: dp, attacher: att,
		statePath: filepath.Join(t.TempDir(), "state.json"), registerTimeout: 2 * time.Second, retryDelay: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := assemble(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	synced := func(context.Context) bool { return true } // the fake reader has no informers
	wg.Go(func() { _ = p.policy.Run(ctx, synced) })
	wg.Go(func() { p.applier.Run(ctx) })
	wg.Go(func() { p.endpoints.Run(ctx, time.Hour) })

	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p.endpoints.Handler(), BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		wg.Wait()
	})
	r := &rig{t: t, p: p, dp: dp, att: att, reader: reader, client: cni.NewAgentClient(sock), state: cfg.statePath}
	NewWithT(t).Eventually(p.endpoints.NotReady, 5*time.Second).Should(BeEmpty(), "the agent gets ready")
	return r
}

// endpointIDs maps the addresses in force to their IDs.
func (r *rig) endpointIDs() map[string]uint32 {
	res, _ := r.p.slot.Result()
	out := map[string]uint32{}
	if res.InForce != nil {
		for a, e := range res.InForce.Endpoints {
			out[a.String()] = e.ID
		}
	}
	return out
}

// prod is the tests' namespace.
func prod() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}}
}

// pod is a running pod of namespace prod.
func pod(name, node string, labels map[string]string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: name, Labels: labels},
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

func cniEndpoint(ns, name, ip, hostIf string, idx int) cni.Endpoint {
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

func (d *fakeDP) first() *policy.Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.applied) == 0 {
		return nil
	}
	return d.applied[0]
}
