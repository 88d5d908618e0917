package agent

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/policy"
)

// dataplane is what the engine needs of *datapath.Datapath.
type dataplane interface {
	Apply(*policy.Snapshot) error
	Counters(id uint32) (datapath.Counters, error)
}

// kind is the kind of an API object the engine follows.
type kind uint8

const (
	kindNamespace kind = iota
	kindNode
	kindPolicy
	kindPod
)

func (k kind) String() string {
	return [...]string{"Namespace", "Node", "NetworkPolicy", "Pod"}[k]
}

// objKey names an object whose current state the next batch reads.
type objKey struct {
	kind            kind
	namespace, name string
}

func (k objKey) String() string {
	if k.namespace == "" {
		return k.kind.String() + " " + k.name
	}
	return k.kind.String() + " " + k.namespace + "/" + k.name
}

// published is what the last batch made the datapath enforce.
type published struct {
	// seq is the batch's number; err its Apply error (nil: applied).
	seq uint64
	err error
	// local are the endpoints in the datapath, with their IDs.
	local map[netip.Addr]localEndpoint
	ids   map[string]uint32
	// podErrs are compile errors by pod (namespace/name).
	podErrs map[string]string
}

// attached is a registration's attachment.
type attached struct {
	closer  io.Closer
	name    string
	ifindex int
	ips     []netip.Addr // the sources the veth admits
}

// engine is the agent without its plumbing: it turns object changes and
// registrations into Apply calls (one worker goroutine owns the compiler)
// and serves the socket API. Unit tests drive it with fakes.
type engine struct {
	log             logr.Logger
	node            string
	reader          client.Reader
	dp              dataplane
	attacher        Attacher
	statePath       string // "": nothing persisted (unit tests)
	metrics         *agentMetrics
	registerTimeout time.Duration
	retryDelay      time.Duration

	mu       sync.Mutex
	pending  map[objKey]struct{}
	since    time.Time // receipt of the oldest pending change
	seq      uint64    // batches started
	wake     chan struct{}
	regs     map[string]*registration // by container ID
	regSeq   uint64
	ids      idAllocator
	pub      published
	changed  chan struct{} // closed and replaced at every publish
	synced   bool          // the informers' caches are synced
	applied  bool          // a snapshot was applied
	ready    bool          // ... and the registered endpoints recovered
	attached map[string]*attached

	// attachMu serialises attaching and detaching.
	attachMu sync.Mutex

	// The worker's own.
	comp     *policy.Compiler
	cpods    map[string][]policy.Pod // by API pod key
	nsKnown  map[string]bool
	podErrs  map[string]string
	lastSnap *policy.Snapshot
	lastErr  error
}

func newEngine(log logr.Logger, node string, reader client.Reader, dp dataplane, att Attacher, statePath string) *engine {
	e := &engine{
		log: log, node: node, reader: reader, dp: dp, attacher: att, statePath: statePath,
		registerTimeout: 25 * time.Second,
		retryDelay:      time.Second,
		pending:         map[objKey]struct{}{},
		wake:            make(chan struct{}, 1),
		regs:            map[string]*registration{},
		changed:         make(chan struct{}),
		attached:        map[string]*attached{},
		cpods:           map[string][]policy.Pod{},
		nsKnown:         map[string]bool{},
		podErrs:         map[string]string{},
	}
	e.metrics = newMetrics(e.counters)
	return e
}

// loadState takes the registrations and IDs of an earlier run.
func (e *engine) loadState(st stateFile) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range st.Endpoints {
		r := st.Endpoints[i]
		e.regSeq++
		r.seq = e.regSeq
		e.regs[r.ContainerID] = &r
	}
	e.ids = st.IDs
}

// enqueue records changed objects and wakes the worker.
func (e *engine) enqueue(keys ...objKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.enqueueLocked(keys...)
}

func (e *engine) enqueueLocked(keys ...objKey) {
	if len(keys) == 0 {
		return
	}
	if len(e.pending) == 0 && e.since.IsZero() {
		e.since = time.Now()
	}
	for _, k := range keys {
		e.pending[k] = struct{}{}
	}
	e.kick()
}

func (e *engine) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// setSynced marks the caches synced.
func (e *engine) setSynced() {
	e.mu.Lock()
	e.synced = true
	e.mu.Unlock()
}

// runWorker loads the cluster, applies, recovers the registered endpoints
// and then applies every batch of changes until ctx ends.
func (e *engine) runWorker(ctx context.Context) {
	for {
		err := e.initialLoad(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		e.log.Error(err, "Loading the cluster failed; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.retryDelay):
		}
	}
	e.step(ctx)
	for {
		e.mu.Lock()
		applied, ready := e.applied, e.ready
		e.mu.Unlock()
		if applied && !ready {
			e.recover()
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		}
		e.step(ctx)
	}
}

// regIPsLocked are the registered addresses of each pod, from its latest
// registration.
func (e *engine) regIPsLocked() map[string][]netip.Addr {
	latest := map[string]*registration{}
	for _, r := range e.regs {
		if old := latest[r.podKey()]; old == nil || old.seq < r.seq {
			latest[r.podKey()] = r
		}
	}
	out := make(map[string][]netip.Addr, len(latest))
	for k, r := range latest {
		out[k] = r.IPs
	}
	return out
}

// initialLoad compiles the whole cluster at once from the synced caches.
func (e *engine) initialLoad(ctx context.Context) error {
	e.mu.Lock()
	// What is pending is in the lists below; later events are processed
	// again, which changes nothing.
	clear(e.pending)
	regIPs := e.regIPsLocked()
	e.mu.Unlock()

	var (
		nsList  corev1.NamespaceList
		nodes   corev1.NodeList
		pols    networkingv1.NetworkPolicyList
		podList corev1.PodList
	)
	for _, l := range []client.ObjectList{&nsList, &nodes, &pols, &podList} {
		if err := e.reader.List(ctx, l); err != nil {
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
		if cp := compilerPods(p, regIPs[key], e.node); len(cp) > 0 {
			cpods[key] = cp
			cluster.Pods = append(cluster.Pods, cp...)
		}
	}
	comp, err := policy.NewCompiler(cluster)
	if err == nil {
		e.comp, e.cpods = comp, cpods
		for _, ns := range cluster.Namespaces {
			e.nsKnown[ns.Name] = true
		}
		return nil
	}
	// One bad object (an address two pods claim, say) fails the bulk
	// compile: take them one by one, so only that one waits.
	e.log.Info("Compiling the cluster at once failed; adding objects one by one", "error", err.Error())
	if e.comp, err = policy.NewCompiler(&policy.Cluster{}); err != nil {
		return err
	}
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
	e.enqueue(keys...)
	return nil
}

// step applies one batch: the pending objects to the compiler, the
// node's snapshot to the datapath.
func (e *engine) step(ctx context.Context) {
	e.mu.Lock()
	keys := e.pending
	e.pending = map[objKey]struct{}{}
	since := e.since
	e.since = time.Time{}
	e.seq++
	seq := e.seq
	regIPs := e.regIPsLocked()
	e.mu.Unlock()

	retry := e.process(ctx, keys, regIPs)
	local := e.localEndpoints()

	e.mu.Lock()
	if e.ids.assign(local) {
		if err := e.persistLocked(); err != nil {
			e.log.Error(err, "Saving the endpoint IDs failed")
		}
	}
	ids := maps.Clone(e.ids.IDs)
	e.mu.Unlock()

	snap := filterSnapshot(e.comp.Snapshot(), local, ids)
	var err error
	if e.lastErr != nil || !equalSnapshots(snap, e.lastSnap) {
		start := time.Now()
		err = e.dp.Apply(snap)
		if err == nil {
			e.lastSnap = snap
			e.log.V(1).Info("Applied", "batch", seq, "changes", len(keys), "endpoints", len(snap.Endpoints),
				"ipcache", len(snap.IPCache), "took", time.Since(start))
		}
	}
	e.lastErr = err
	if err != nil {
		e.metrics.applyErrors.Inc()
		e.log.Error(err, "Applying the policy snapshot failed; retrying", "batch", seq)
		time.AfterFunc(e.retryDelay, func() {
			e.mu.Lock()
			if !since.IsZero() && (e.since.IsZero() || since.Before(e.since)) {
				e.since = since
			}
			e.kick()
			e.mu.Unlock()
		})
	} else {
		if !since.IsZero() {
			e.metrics.applySeconds.Observe(time.Since(since).Seconds())
		}
		e.metrics.endpoints.Set(float64(len(snap.Endpoints)))
	}
	if len(retry) > 0 {
		time.AfterFunc(e.retryDelay, func() { e.enqueue(retry...) })
	}

	e.mu.Lock()
	pub := published{seq: seq, err: err, local: e.pub.local, ids: e.pub.ids, podErrs: maps.Clone(e.podErrs)}
	if err == nil {
		pub.local, pub.ids = local, ids
		e.applied = true
	}
	e.pub = pub
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// process feeds the compiler the current state of the keys' objects and
// returns the keys to retry later (an object the compiler refused for now:
// an address another pod still holds, a namespace with pods left).
// Namespaces come first and go last, pods that leave before pods that
// come (their addresses may be the new pods').
func (e *engine) process(ctx context.Context, keys map[objKey]struct{}, regIPs map[string][]netip.Addr) []objKey {
	byKind := map[kind][]objKey{}
	for k := range keys {
		byKind[k.kind] = append(byKind[k.kind], k)
	}
	for _, ks := range byKind {
		slices.SortFunc(ks, func(a, b objKey) int {
			return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
		})
	}
	retry, goneNS := e.processNamespaces(ctx, byKind[kindNamespace])
	retry = append(retry, e.processNodes(ctx, byKind[kindNode])...)
	retry = append(retry, e.processPolicies(ctx, byKind[kindPolicy])...)
	retry = append(retry, e.processPods(ctx, byKind[kindPod], regIPs)...)
	for _, k := range goneNS {
		if err := e.comp.DeleteNamespace(k.name); err != nil {
			retry = append(retry, k)
			continue
		}
		delete(e.nsKnown, k.name)
	}
	return retry
}

// processNamespaces sets the namespaces that exist and returns those to
// retry and those gone (deleted after their pods).
func (e *engine) processNamespaces(ctx context.Context, keys []objKey) (retry, gone []objKey) {
	for _, k := range keys {
		var ns corev1.Namespace
		found, err := e.get(ctx, k, &ns)
		switch {
		case err != nil:
			retry = append(retry, k)
		case !found:
			gone = append(gone, k)
		default:
			e.setNamespace(&ns)
		}
	}
	return retry, gone
}

func (e *engine) processNodes(ctx context.Context, keys []objKey) (retry []objKey) {
	for _, k := range keys {
		var n corev1.Node
		found, err := e.get(ctx, k, &n)
		switch {
		case err != nil:
			retry = append(retry, k)
		case !found:
			e.comp.DeleteNode(k.name)
		default:
			if err := e.comp.SetNode(compilerNode(&n)); err != nil {
				e.log.Error(err, "Node refused by the policy compiler; retrying", "node", k.name)
				retry = append(retry, k)
			}
		}
	}
	return retry
}

func (e *engine) processPolicies(ctx context.Context, keys []objKey) (retry []objKey) {
	for _, k := range keys {
		var np networkingv1.NetworkPolicy
		found, err := e.get(ctx, k, &np)
		switch {
		case err != nil:
			retry = append(retry, k)
		case !found:
			e.comp.DeletePolicy(k.namespace, k.name)
		default:
			if err := e.comp.SetPolicy(&np); err != nil {
				e.log.Error(err, "NetworkPolicy refused by the policy compiler; its pods are isolated without its rules", "policy", k.namespace+"/"+k.name)
				e.setFailClosed(&np)
			}
		}
	}
	return retry
}

// setFailClosed stands in for a policy the compiler refused (the API server
// validates policies, so this is a compiler limit): the same podSelector
// and policyTypes with no rules, which isolates the pods the policy selects
// and allows them nothing it would not. Failing open would let traffic the
// policy denies reach pods it selects. If even that is refused (a selector
// the compiler can't read), the previous version, if any, stays.
func (e *engine) setFailClosed(np *networkingv1.NetworkPolicy) {
	closed := np.DeepCopy()
	policy.Default(closed)
	closed.Spec.Ingress, closed.Spec.Egress = nil, nil
	if err := e.comp.SetPolicy(closed); err != nil {
		e.log.Error(err, "NetworkPolicy's selector refused too; its previous version stays", "policy", np.Namespace+"/"+np.Name)
	}
}

func (e *engine) processPods(ctx context.Context, keys []objKey, regIPs map[string][]netip.Addr) (retry []objKey) {
	type podWant struct {
		key  objKey
		want []policy.Pod
	}
	var sets []podWant
	for _, k := range keys {
		var pod corev1.Pod
		found, err := e.get(ctx, k, &pod)
		if err != nil {
			retry = append(retry, k)
			continue
		}
		var want []policy.Pod
		if found {
			want = compilerPods(&pod, regIPs[k.namespace+"/"+k.name], e.node)
		}
		if len(want) == 0 {
			e.setPod(ctx, k, nil)
			continue
		}
		sets = append(sets, podWant{k, want})
	}
	for _, s := range sets {
		if !e.setPod(ctx, s.key, s.want) {
			retry = append(retry, s.key)
		}
	}
	return retry
}

// get reads an object from the cache: found false when it is gone.
func (e *engine) get(ctx context.Context, k objKey, obj client.Object) (bool, error) {
	err := e.reader.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: k.name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		e.log.Error(err, "Reading from the cache failed", "object", k.String())
		return false, err
	}
	return true, nil
}

func (e *engine) setNamespace(ns *corev1.Namespace) {
	if err := e.comp.SetNamespace(compilerNamespace(ns)); err != nil {
		e.log.Error(err, "Namespace refused by the policy compiler", "namespace", ns.Name)
		return
	}
	e.nsKnown[ns.Name] = true
}

// setPod makes the compiler hold want for the pod (nothing: remove it)
// and says whether all of it was taken.
func (e *engine) setPod(ctx context.Context, k objKey, want []policy.Pod) bool {
	key := k.namespace + "/" + k.name
	have := e.cpods[key]
	for _, p := range have {
		if !slices.ContainsFunc(want, func(w policy.Pod) bool { return w.Name == p.Name }) {
			e.comp.DeletePod(p.Namespace, p.Name)
		}
	}
	if len(want) > 0 && !e.nsKnown[k.namespace] {
		// The pod's namespace event may not have come yet.
		var ns corev1.Namespace
		if found, err := e.get(ctx, objKey{kind: kindNamespace, name: k.namespace}, &ns); err == nil && found {
			e.setNamespace(&ns)
		}
	}
	var kept []policy.Pod
	var errs []string
	for _, p := range want {
		if err := e.comp.SetPod(p); err != nil {
			errs = append(errs, err.Error())
			// On error the compiler keeps the old version, if any.
			if i := slices.IndexFunc(have, func(h policy.Pod) bool { return h.Name == p.Name }); i >= 0 {
				kept = append(kept, have[i])
			}
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		delete(e.cpods, key)
	} else {
		e.cpods[key] = kept
	}
	if len(errs) > 0 {
		e.podErrs[key] = fmt.Sprint(errs)
		e.log.Info("Pod refused by the policy compiler; retrying", "pod", key, "errors", errs)
		return false
	}
	delete(e.podErrs, key)
	return true
}

// localEndpoints are the addresses of this node's pods in the compiler.
func (e *engine) localEndpoints() map[netip.Addr]localEndpoint {
	out := map[netip.Addr]localEndpoint{}
	for key, ps := range e.cpods {
		for _, p := range ps {
			if p.Node == e.node {
				out[p.IP] = localEndpoint{PodKey: key, IP: p.IP}
			}
		}
	}
	return out
}

// recover re-attaches the endpoints registered before a restart (pinned
// links are updated to this run's programs in place), forgets those whose
// veth is gone (a DEL the agent missed), removes pinned links of
// interfaces that no longer exist, and makes the agent ready.
func (e *engine) recover() {
	e.mu.Lock()
	regs := maps.Clone(e.regs)
	e.mu.Unlock()
	keep := map[int]bool{}
	for _, cid := range slices.Sorted(maps.Keys(regs)) {
		r := regs[cid]
		ok, err := e.attacher.Exists(r.HostIfName, r.HostIfIndex)
		if err != nil {
			e.log.Error(err, "Checking a registered endpoint's veth failed; keeping it", "containerID", cid)
			keep[r.HostIfIndex] = true
			continue
		}
		if !ok {
			e.log.Info("Forgetting an endpoint whose veth is gone", "containerID", cid, "pod", r.podKey(), "hostIfName", r.HostIfName)
			e.unregister(cid)
			continue
		}
		keep[r.HostIfIndex] = true
		if err := e.attach(cid, r); err != nil {
			e.log.Error(err, "Re-attaching a registered endpoint failed", "containerID", cid, "pod", r.podKey())
		}
	}
	if err := e.attacher.Sweep(keep); err != nil {
		e.log.Error(err, "Removing pinned links of gone interfaces failed")
	}
	e.mu.Lock()
	e.ready = true
	e.mu.Unlock()
	e.log.Info("Ready", "endpoints", len(keep))
}

// gc forgets registrations whose veth disappeared without a DEL.
func (e *engine) gc() {
	e.mu.Lock()
	regs := maps.Clone(e.regs)
	e.mu.Unlock()
	for cid, r := range regs {
		if ok, err := e.attacher.Exists(r.HostIfName, r.HostIfIndex); err == nil && !ok {
			e.log.Info("Forgetting an endpoint whose veth is gone", "containerID", cid, "pod", r.podKey())
			e.unregister(cid)
		}
	}
}

// attach attaches the programs to a registration's veth, unless they
// already are.
func (e *engine) attach(cid string, r *registration) error {
	e.attachMu.Lock()
	defer e.attachMu.Unlock()
	e.mu.Lock()
	cur := e.attached[cid]
	e.mu.Unlock()
	if cur != nil && cur.ifindex == r.HostIfIndex && cur.name == r.HostIfName && slices.Equal(cur.ips, r.IPs) {
		return nil
	}
	if cur != nil {
		// A retried ADD rebuilt the veth.
		_ = cur.closer.Close()
		e.mu.Lock()
		delete(e.attached, cid)
		e.mu.Unlock()
	}
	c, err := e.attacher.Attach(r.HostIfName, r.HostIfIndex, r.IPs)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if e.regs[cid] != r {
		// A DELETE (or a newer PUT) came while we attached.
		e.mu.Unlock()
		_ = c.Close()
		return fmt.Errorf("endpoint %s was deleted or replaced while attaching", cid)
	}
	e.attached[cid] = &attached{closer: c, name: r.HostIfName, ifindex: r.HostIfIndex, ips: slices.Clone(r.IPs)}
	e.mu.Unlock()
	return nil
}

// detach detaches (and unpins) a registration's programs.
func (e *engine) detach(cid string) {
	e.attachMu.Lock()
	defer e.attachMu.Unlock()
	e.mu.Lock()
	cur := e.attached[cid]
	delete(e.attached, cid)
	e.mu.Unlock()
	if cur != nil {
		if err := cur.closer.Close(); err != nil {
			e.log.Error(err, "Detaching failed", "containerID", cid, "hostIfName", cur.name)
		}
	}
}

// unregister detaches and forgets an endpoint; unknown ones are fine.
func (e *engine) unregister(cid string) {
	e.detach(cid)
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.regs[cid]
	if r == nil {
		return
	}
	delete(e.regs, cid)
	e.enqueueLocked(objKey{kind: kindPod, namespace: r.Namespace, name: r.Name})
	if err := e.persistLocked(); err != nil {
		e.log.Error(err, "Saving the registrations failed")
	}
}

// persistLocked writes the state file.
func (e *engine) persistLocked() error {
	if e.statePath == "" {
		return nil
	}
	return writeState(e.statePath, e.regs, e.ids)
}

// counters are the datapath's counters of this node's pods.
func (e *engine) counters() []endpointCounters {
	e.mu.Lock()
	local, ids := e.pub.local, e.pub.ids
	veths := map[int]string{} // ifindex -> pod
	for cid, a := range e.attached {
		if r := e.regs[cid]; r != nil {
			veths[a.ifindex] = r.podKey()
		}
	}
	e.mu.Unlock()
	byPod := map[string]*endpointCounters{}
	of := func(podKey string) *endpointCounters {
		ec := byPod[podKey]
		if ec == nil {
			ec = &endpointCounters{PodKey: podKey}
			byPod[podKey] = ec
		}
		return ec
	}
	for ifindex, podKey := range veths {
		if n, err := e.attacher.Spoofed(ifindex); err == nil {
			of(podKey).Spoofed += n
		}
	}
	for _, le := range local {
		id, ok := ids[le.idKey()]
		if !ok {
			continue
		}
		c, err := e.dp.Counters(id)
		if err != nil {
			continue
		}
		ec := of(le.PodKey)
		ec.IngressAllowed += c.IngressAllowed
		ec.IngressDropped += c.IngressDropped
		ec.EgressAllowed += c.EgressAllowed
		ec.EgressDropped += c.EgressDropped
	}
	out := make([]endpointCounters, 0, len(byPod))
	for _, k := range slices.Sorted(maps.Keys(byPod)) {
		out = append(out, *byPod[k])
	}
	return out
}
