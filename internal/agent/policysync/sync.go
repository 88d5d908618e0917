package policysync

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/policy"
)

// Endpoints is what the loop needs of the endpoint registry.
type Endpoints interface {
	// RegisteredIPs are the addresses of each registered pod
	// (namespace/name), from its latest registration.
	RegisteredIPs() map[string][]netip.Addr
	// AssignIDs makes the registry's ID table hold exactly the given
	// endpoints (address -> pod namespace/name) and returns their IDs.
	AssignIDs(local map[netip.Addr]string) map[netip.Addr]uint32
}

// Output takes each batch's View: the applier's policy slot.
type Output interface {
	Submit(v *View, since time.Time)
}

// Config configures a Sync.
type Config struct {
	Log  logr.Logger
	Node string // this node's name
	// Reader reads the cache the loop's informers fill (see Watch).
	Reader    client.Reader
	Endpoints Endpoints
	Output    Output
	// RetryDelay is how long an object the compiler refused waits before
	// it is tried again (1 s).
	RetryDelay time.Duration
}

// Sync is the policy loop. One worker (Run) owns the compiler; the event
// handlers and PodChanged only queue keys.
type Sync struct {
	cfg    Config
	queue  *queue
	synced atomic.Bool

	// The worker's own.
	compiled *compiled
}

// New returns a Sync; Watch and Run start it.
func New(cfg Config) *Sync {
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	return &Sync{cfg: cfg, queue: newQueue()}
}

// PodChanged makes the loop read a pod again (its registration changed)
// and returns the number of the first batch that will.
func (s *Sync) PodChanged(namespace, name string) uint64 {
	return s.queue.add(objKey{kind: kindPod, namespace: namespace, name: name})
}

// Synced says whether the caches had synced when Run started the worker.
func (s *Sync) Synced() bool { return s.synced.Load() }

// Run waits for the caches to sync, loads the cluster, and then turns
// every batch of changes into a View until ctx ends.
func (s *Sync) Run(ctx context.Context, waitForCacheSync func(context.Context) bool) error {
	if !waitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("informer caches did not sync")
	}
	s.synced.Store(true)
	s.cfg.Log.Info("Caches synced")
	for {
		err := s.initialLoad(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Log.Error(err, "Loading the cluster failed; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.RetryDelay):
		}
	}
	for {
		s.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-s.queue.wake:
		}
	}
}

// initialLoad compiles the whole cluster at once from the synced caches.
func (s *Sync) initialLoad(ctx context.Context) error {
	// What is pending is in the lists below; later events are processed
	// again, which changes nothing.
	s.queue.drop()
	regIPs := s.cfg.Endpoints.RegisteredIPs()

	var (
		nsList  corev1.NamespaceList
		nodes   corev1.NodeList
		pols    networkingv1.NetworkPolicyList
		podList corev1.PodList
	)
	for _, l := range []client.ObjectList{&nsList, &nodes, &pols, &podList} {
		if err := s.cfg.Reader.List(ctx, l); err != nil {
			return fmt.Errorf("list %T: %w", l, err)
		}
	}
	cluster := &policy.Cluster{Policies: pols.Items}
	for i := range nsList.Items {
		cluster.Namespaces = append(cluster.Namespaces, compilerNamespace(&nsList.Items[i]))
	}
	for i := range nodes.Items {
		cluster.Nodes = append(cluster.Nodes, compilerNode(&nodes.Items[i]))
	}
	cpods := map[string][]policy.Pod{}
	for i := range podList.Items {
		p := &podList.Items[i]
		key := p.Namespace + "/" + p.Name
		if cp := compilerPods(p, regIPs[key], s.cfg.Node); len(cp) > 0 {
			cpods[key] = cp
			cluster.Pods = append(cluster.Pods, cp...)
		}
	}
	comp, err := policy.NewCompiler(cluster)
	if err == nil {
		s.compiled = newCompiled(s.cfg, comp)
		s.compiled.cpods = cpods
		for _, ns := range cluster.Namespaces {
			s.compiled.nsKnown[ns.Name] = true
		}
		return nil
	}
	// One bad object (an address two pods claim, say) fails the bulk
	// compile: take them one by one, so only that one waits.
	s.cfg.Log.Info("Compiling the cluster at once failed; adding objects one by one", "error", err.Error())
	if comp, err = policy.NewCompiler(&policy.Cluster{}); err != nil {
		return err
	}
	s.compiled = newCompiled(s.cfg, comp)
	var keys []objKey
	for _, ns := range nsList.Items {
		keys = append(keys, objKey{kind: kindNamespace, name: ns.Name})
	}
	for _, n := range nodes.Items {
		keys = append(keys, objKey{kind: kindNode, name: n.Name})
	}
	for _, p := range pols.Items {
		keys = append(keys, objKey{kind: kindPolicy, namespace: p.Namespace, name: p.Name})
	}
	for _, p := range podList.Items {
		keys = append(keys, objKey{kind: kindPod, namespace: p.Namespace, name: p.Name})
	}
	s.queue.add(keys...)
	return nil
}

// step turns one batch into a View: the pending objects into the
// compiler, the compiler's snapshot into this node's, handed to the
// applier.
func (s *Sync) step(ctx context.Context) {
	keys, batch, since := s.queue.take()
	// Read after the batch is taken: a registration recorded before its
	// PodChanged is seen by the batch that reads its pod.
	regIPs := s.cfg.Endpoints.RegisteredIPs()

	retry := s.compiled.process(ctx, keys, regIPs)
	local := s.compiled.localEndpoints()
	ids := s.cfg.Endpoints.AssignIDs(local)
	snap, eps := nodeView(s.compiled.comp.Snapshot(), local, ids)
	s.cfg.Output.Submit(&View{Batch: batch, Snapshot: snap, Endpoints: eps, PodErrors: clonePodErrors(s.compiled.podErrs)}, since)
	s.cfg.Log.V(1).Info("Compiled", "batch", batch, "changes", len(keys), "endpoints", len(snap.Endpoints), "ipcache", len(snap.IPCache))
	if len(retry) > 0 {
		time.AfterFunc(s.cfg.RetryDelay, func() { s.queue.add(retry...) })
	}
}
