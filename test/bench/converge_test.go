package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/controllers"
	"github.com/sluice-dev/sluice/internal/testenv"
)

const (
	benchNodes = 1000
	// benchPoolCIDR holds 4096 /24 blocks, four times what the nodes need.
	benchPoolCIDR = "10.64.0.0/12"
	// creators create the nodes in parallel, as a scale-up would.
	creators = 32
	// pollEvery is how often the benchmark counts allocated nodes.
	pollEvery = 200 * time.Millisecond
	// convergeTimeout fails an iteration that doesn't converge.
	convergeTimeout = 10 * time.Minute
	// benchLabel on a node names the iteration (and pool) it belongs to.
	benchLabel = "bench.sluice.dev/run"
)

// BenchmarkConverge1000Nodes measures how long the operator takes to give
// 1,000 new nodes a block each: from the first node created (by 32
// parallel creators, which take part of that time) until every NodeNetwork
// reports Allocated=True, as a direct List sees it (polled every 200 ms,
// so the figure is up to 200 ms late). The IPAMPool and NodeNetwork
// reconcilers run in-process against envtest, with a client rate limit
// (QPS 500, burst 1000) high enough not to be the bottleneck; the
// operator's own default is lower.
//
// Every iteration uses a fresh Overlay pool on 10.64.0.0/12 and fresh node
// names; between iterations (timer stopped) the nodes are deleted, their
// blocks released and the pool deleted, so each iteration starts from the
// same empty cluster. An iteration takes tens of seconds: run it with
// -benchtime 1x (the default benchtime also stops after one).
//
// Reported per iteration: s/converge, nodes/s, the operator's API writes
// (writes/node) and NodeNetwork reconciles (reconciles/node); ns/op also
// counts verifying the allocation. A breakdown of the writes by verb and
// resource is logged (-v). BENCH_NODENETWORK_WORKERS sets the NodeNetwork
// controller's MaxConcurrentReconciles (default: the operator's, 16).
func BenchmarkConverge1000Nodes(b *testing.B) {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))

	cfg, scheme := testenv.StartFor(b)
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}

	writes := &writeCounter{counts: map[string]int{}}
	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.WrapTransport = writes.wrap
	ctx, cancel := context.WithCancel(context.Background())
	stopped := startManager(ctx, b, mgrCfg, scheme)
	b.Cleanup(func() {
		cancel()
		<-stopped
	})

	var converge, create time.Duration
	var writesTotal, reconcilesTotal float64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		run := fmt.Sprintf("run%d", i)
		pool := overlayPool("bench-"+run, run)
		if err := c.Create(ctx, pool); err != nil {
			b.Fatalf("create IPAMPool: %v", err)
		}
		// The pool's status shows the controllers run and know the pool.
		waitFor(ctx, b, "IPAMPool "+pool.Name+" status", time.Minute, func() (bool, string) {
			got := &v1.IPAMPool{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(pool), got); err != nil {
				return false, err.Error()
			}
			return got.Status.Capacity == 4096*256, fmt.Sprintf("capacity %d", got.Status.Capacity)
		})
		names := make([]string, benchNodes)
		for n := range names {
			names[n] = fmt.Sprintf("bench-%s-%04d", run, n)
		}
		writes.reset()
		reconcilesBefore := reconciles()
		b.StartTimer()

		start := time.Now()
		created := make(chan time.Duration, 1)
		go func() {
			forEach(ctx, b, names, func(name string) error {
				return c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{benchLabel: run}}})
			})
			created <- time.Since(start)
		}()
		nns := waitAllocated(ctx, b, c, pool.Name)
		elapsed := time.Since(start)
		createdIn := <-created
		create += createdIn
		converge += elapsed
		w := writes.snapshot()
		writesTotal += float64(w.total)
		reconcilesTotal += reconciles() - reconcilesBefore

		verify(b, nns, names)
		b.StopTimer()
		b.Logf("iteration %d: %d nodes allocated in %s (nodes created in %s); %d API writes by the operator: %s",
			i, benchNodes, elapsed.Round(time.Millisecond), createdIn.Round(time.Millisecond), w.total, w)
		if i < b.N-1 {
			cleanup(ctx, b, c, pool, names)
		}
		b.StartTimer()
	}
	b.StopTimer()

	n := float64(b.N)
	b.ReportMetric(converge.Seconds()/n, "s/converge")
	b.ReportMetric(benchNodes*n/converge.Seconds(), "nodes/s")
	b.ReportMetric(create.Seconds()/n, "s/create")
	b.ReportMetric(writesTotal/(benchNodes*n), "writes/node")
	b.ReportMetric(reconcilesTotal/(benchNodes*n), "reconciles/node")
}

func overlayPool(name, run string) *v1.IPAMPool {
	return &v1.IPAMPool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.IPAMPoolSpec{
			Mode:         v1.IPAMModeOverlay,
			CIDRs:        []v1.CIDR{benchPoolCIDR},
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{benchLabel: run}},
		},
	}
}

// startManager runs the IPAM reconcilers as cmd/manager sets them up,
// without webhooks, and returns a channel closed when the manager stops.
func startManager(ctx context.Context, b *testing.B, cfg *rest.Config, scheme *runtime.Scheme) <-chan struct{} {
	b.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := (&controllers.IPAMPoolReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("bench"),
	}).SetupWithManager(mgr); err != nil {
		b.Fatal(err)
	}
	workers := 0 // the operator's default
	if v := os.Getenv("BENCH_NODENETWORK_WORKERS"); v != "" {
		if workers, err = strconv.Atoi(v); err != nil || workers < 1 {
			b.Fatalf("BENCH_NODENETWORK_WORKERS=%q: want a positive number", v)
		}
	}
	if err := (&controllers.NodeNetworkReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("bench"),
		MaxConcurrentReconciles: workers,
	}).SetupWithManager(ctx, mgr); err != nil {
		b.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := mgr.Start(ctx); err != nil {
			b.Errorf("manager: %v", err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		b.Fatal("the manager's cache did not sync")
	}
	return stopped
}

// waitAllocated polls until every NodeNetwork of pool is Allocated and
// returns them.
func waitAllocated(ctx context.Context, b *testing.B, c client.Client, pool string) []v1.NodeNetwork {
	b.Helper()
	var out []v1.NodeNetwork
	waitFor(ctx, b, fmt.Sprintf("%d NodeNetworks of pool %s to be Allocated", benchNodes, pool), convergeTimeout, func() (bool, string) {
		var list v1.NodeNetworkList
		if err := c.List(ctx, &list); err != nil {
			return false, err.Error()
		}
		out = out[:0]
		for _, nn := range list.Items {
			if nn.Status.Pool == pool && meta.IsStatusConditionTrue(nn.Status.Conditions, v1.ConditionAllocated) {
				out = append(out, nn)
			}
		}
		return len(out) == benchNodes, fmt.Sprintf("%d of %d allocated", len(out), benchNodes)
	})
	return out
}

// verify checks that every node holds one /24 of the pool, all distinct.
func verify(b *testing.B, nns []v1.NodeNetwork, names []string) {
	b.Helper()
	poolCIDR := netip.MustParsePrefix(benchPoolCIDR)
	seen := map[string]string{}
	for _, nn := range nns {
		if !slices.Contains(names, nn.Name) {
			b.Fatalf("NodeNetwork %s is not one of this iteration's nodes", nn.Name)
		}
		if len(nn.Status.CIDRs) != 1 {
			b.Fatalf("NodeNetwork %s holds %v; want one block", nn.Name, nn.Status.CIDRs)
		}
		cidr := string(nn.Status.CIDRs[0])
		block, err := netip.ParsePrefix(cidr)
		if err != nil || block.Bits() != 24 || !poolCIDR.Contains(block.Addr()) {
			b.Fatalf("NodeNetwork %s holds %s; want a /24 of %s", nn.Name, cidr, benchPoolCIDR)
		}
		if other, dup := seen[cidr]; dup {
			b.Fatalf("block %s is held by both %s and %s", cidr, other, nn.Name)
		}
		seen[cidr] = nn.Name
	}
	if len(seen) != benchNodes {
		b.Fatalf("%d distinct blocks; want %d", len(seen), benchNodes)
	}
}

// cleanup deletes the iteration's nodes, waits until the operator has
// released their blocks, and deletes the pool.
func cleanup(ctx context.Context, b *testing.B, c client.Client, pool *v1.IPAMPool, names []string) {
	b.Helper()
	forEach(ctx, b, names, func(name string) error {
		return client.IgnoreNotFound(c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	})
	waitFor(ctx, b, "the blocks of pool "+pool.Name+" to be released", convergeTimeout, func() (bool, string) {
		var blocks v1.IPAMBlockList
		if err := c.List(ctx, &blocks, client.MatchingLabels{v1.LabelPool: pool.Name}); err != nil {
			return false, err.Error()
		}
		var nns v1.NodeNetworkList
		if err := c.List(ctx, &nns); err != nil {
			return false, err.Error()
		}
		return len(blocks.Items) == 0 && len(nns.Items) == 0,
			fmt.Sprintf("%d IPAMBlocks, %d NodeNetworks left", len(blocks.Items), len(nns.Items))
	})
	if err := c.Delete(ctx, pool); err != nil {
		b.Fatalf("delete IPAMPool %s: %v", pool.Name, err)
	}
}

// forEach runs fn on every name with `creators` goroutines, failing the
// benchmark on the first error.
func forEach(ctx context.Context, b *testing.B, names []string, fn func(string) error) {
	b.Helper()
	work := make(chan string)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range creators {
		wg.Go(func() {
			for name := range work {
				if err := fn(name); err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	for _, name := range names {
		if ctx.Err() != nil || firstErr.Load() != nil {
			break
		}
		work <- name
	}
	close(work)
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		b.Errorf("%v", *err) // Fatal is for the benchmark goroutine; waitFor stops it
	}
}

// waitFor polls cond every pollEvery until it holds, failing the benchmark
// after timeout.
func waitFor(ctx context.Context, b *testing.B, what string, timeout time.Duration, cond func() (bool, string)) {
	b.Helper()
	ticker := time.NewTicker(pollEvery)
	defer ticker.Stop()
	deadline := time.After(timeout)
	for {
		done, last := cond()
		if done {
			return
		}
		if b.Failed() {
			b.Fatalf("while waiting for %s (last: %s)", what, last)
		}
		select {
		case <-ticker.C:
		case <-deadline:
			b.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
		case <-ctx.Done():
			b.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

// reconciles is the number of NodeNetwork reconciles so far, from
// controller-runtime's metrics.
func reconciles() float64 {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range families {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "nodenetwork" {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// writeCounter counts the manager's API writes by verb and resource.
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			w.mu.Lock()
			w.counts[req.Method+" "+resourceOf(req.URL.Path)]++
			w.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (w *writeCounter) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.counts)
}

type writeCounts struct {
	total  int
	counts map[string]int
}

func (w writeCounts) String() string {
	keys := make([]string, 0, len(w.counts))
	for k := range w.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, w.counts[k]))
	}
	return strings.Join(parts, ", ")
}

func (w *writeCounter) snapshot() writeCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := writeCounts{counts: map[string]int{}}
	for k, v := range w.counts {
		out.counts[k] = v
		out.total += v
	}
	return out
}

// resourceOf turns /apis/<group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<sub>]]
// (or /api/v1/...) into <resource>[/<sub>].
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) > 0 && parts[0] == "api":
		parts = parts[min(2, len(parts)):]
	case len(parts) > 0 && parts[0] == "apis":
		parts = parts[min(3, len(parts)):]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return path
	}
	if len(parts) >= 3 {
		return parts[0] + "/" + parts[2]
	}
	return parts[0]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
