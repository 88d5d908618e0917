package endpoint

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/cni"
)

// Policy is what the registry needs of the policy loop and the applier.
type Policy interface {
	// NotReady says why the policy is not in force yet ("": it is).
	NotReady() string
	// PodChanged makes the policy loop read the pod again and returns the
	// number of the first batch that will.
	PodChanged(namespace, name string) (batch uint64)
	// Enforcement is what the datapath enforces, and a channel closed
	// when that changes.
	Enforcement() (Enforcement, <-chan struct{})
}

// Enforcement is the policy the datapath enforces.
type Enforcement struct {
	// Batch is the latest policy batch the applier tried, Err its error
	// (nil: in force).
	Batch uint64
	Err   error
	// Endpoints are this node's endpoints in force, by address.
	Endpoints map[netip.Addr]Enforced
	// PodErrors are why the latest batch's compile refused pods (by
	// namespace/name).
	PodErrors map[string]string
}

// Enforced is an address in force as a pod's endpoint.
type Enforced struct {
	PodKey string // namespace/name
	ID     uint32 // endpoint ID in the datapath
}

// Config configures a Registry.
type Config struct {
	Log  logr.Logger
	Node string // this node's name
	// Pods reads pods (the agent's cache).
	Pods     client.Reader
	Attacher Attacher
	Policy   Policy
	// StatePath is the state file, read by New ("": nothing persisted).
	StatePath string
	// RegisterTimeout bounds a registration, waiting for readiness
	// included.
	RegisterTimeout time.Duration
}

// Registry is the node's endpoints: what the CNI plugin registered, their
// IDs and attachments. See the package doc.
type Registry struct {
	cfg       Config
	store     *store
	attached  *attachments
	recovered atomic.Bool
}

// New reads the state file of an earlier run, if any.
func New(cfg Config) (*Registry, error) {
	st := stateFile{Version: stateVersion}
	if cfg.StatePath != "" {
		var err error
		if st, err = readState(cfg.StatePath); err != nil {
			return nil, err
		}
	}
	return &Registry{cfg: cfg, store: newStore(cfg.StatePath, st), attached: newAttachments(cfg.Attacher)}, nil
}

// Len is the number of registrations.
func (r *Registry) Len() int { return len(r.store.all()) }

// RegisteredIPs are the addresses of each registered pod (namespace/name),
// from its latest registration.
func (r *Registry) RegisteredIPs() map[string][]netip.Addr { return r.store.registeredIPs() }

// AssignIDs makes the ID table hold exactly local (address -> pod) and
// returns their IDs; a failure to save the table is logged (the IDs hold
// for this run).
func (r *Registry) AssignIDs(local map[netip.Addr]string) map[netip.Addr]uint32 {
	ids, err := r.store.assignIDs(local)
	if err != nil {
		r.cfg.Log.Error(err, "Saving the endpoint IDs failed")
	}
	return ids
}

// NotReady says why the registry can't take endpoints yet ("" when it
// can): the policy is not in force, or the endpoints of an earlier run
// are not recovered.
func (r *Registry) NotReady() string {
	if msg := r.cfg.Policy.NotReady(); msg != "" {
		return msg
	}
	if !r.recovered.Load() {
		return "the agent is starting: re-attaching endpoints registered before the restart"
	}
	return ""
}

// Recovered says whether the endpoints of an earlier run are recovered.
func (r *Registry) Recovered() bool { return r.recovered.Load() }

// Run waits for the policy to be in force, recovers the endpoints of an
// earlier run, and then forgets, every gcInterval, registrations whose
// veth is gone, until ctx ends.
func (r *Registry) Run(ctx context.Context, gcInterval time.Duration) {
	for r.cfg.Policy.NotReady() != "" {
		_, changed := r.cfg.Policy.Enforcement()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(100 * time.Millisecond): // readiness isn't all published
		}
	}
	r.recover()
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.gc()
		}
	}
}

// recover re-attaches the endpoints registered before a restart (pinned
// links are updated to this run's programs in place), forgets those whose
// veth is gone (a DEL the agent missed), removes pinned links of
// interfaces that no longer exist, and makes the registry ready.
func (r *Registry) recover() {
	log := r.cfg.Log
	regs := r.store.all()
	keep := map[int]bool{}
	for _, cid := range slices.Sorted(maps.Keys(regs)) {
		reg := regs[cid]
		ok, err := r.cfg.Attacher.Exists(reg.HostIfName, reg.HostIfIndex)
		if err != nil {
			log.Error(err, "Checking a registered endpoint's veth failed; keeping it", "containerID", cid)
			keep[reg.HostIfIndex] = true
			continue
		}
		if !ok {
			log.Info("Forgetting an endpoint whose veth is gone", "containerID", cid, "pod", reg.podKey(), "hostIfName", reg.HostIfName)
			r.Unregister(cid)
			continue
		}
		keep[reg.HostIfIndex] = true
		if err := r.attach(cid, reg); err != nil {
			log.Error(err, "Re-attaching a registered endpoint failed", "containerID", cid, "pod", reg.podKey())
		}
	}
	if err := r.cfg.Attacher.Sweep(keep); err != nil {
		log.Error(err, "Removing pinned links of gone interfaces failed")
	}
	r.recovered.Store(true)
	log.Info("Ready", "endpoints", len(keep))
}

// gc forgets registrations whose veth disappeared without a DEL.
func (r *Registry) gc() {
	for cid, reg := range r.store.all() {
		if ok, err := r.cfg.Attacher.Exists(reg.HostIfName, reg.HostIfIndex); err == nil && !ok {
			r.cfg.Log.Info("Forgetting an endpoint whose veth is gone", "containerID", cid, "pod", reg.podKey())
			r.Unregister(cid)
		}
	}
}

func (r *Registry) attach(cid string, reg *registration) error {
	return r.attached.attach(cid, reg, func() bool { return r.store.get(cid) == reg })
}

// Unregister detaches and forgets an endpoint (DELETE); unknown ones are
// fine.
func (r *Registry) Unregister(cid string) { r.forget(cid, nil) }

// forget detaches and forgets the container's registration if it is reg
// (any, when nil): a failed registration is forgotten unless a newer one
// replaced it.
func (r *Registry) forget(cid string, reg *registration) {
	if reg != nil && r.store.get(cid) != reg {
		return
	}
	if name, err := r.attached.detach(cid); err != nil {
		r.cfg.Log.Error(err, "Detaching failed", "containerID", cid, "hostIfName", name)
	}
	gone, err := r.store.removeIf(cid, reg)
	if err != nil {
		r.cfg.Log.Error(err, "Saving the registrations failed")
	}
	if gone != nil {
		r.cfg.Policy.PodChanged(gone.Namespace, gone.Name)
	}
}

// Register records an endpoint, waits until a policy batch that includes
// it is in force with every address of the endpoint as the pod's, and
// then attaches: when it returns nil, the pod's policy is enforced. Any
// failure forgets the registration again. Errors are *Error.
func (r *Registry) Register(ctx context.Context, cid string, ep cni.Endpoint) (*cni.EndpointStatus, error) {
	if err := validate(cid, &ep); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RegisterTimeout)
	defer cancel()
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}

	ok, err := r.cfg.Attacher.Exists(ep.HostIfName, ep.HostIfIndex)
	if err != nil {
		return nil, errorf(Internal, "check host interface: %v", err)
	}
	if !ok {
		return nil, errorf(Invalid, "host interface %s with ifindex %d does not exist in the agent's network namespace", ep.HostIfName, ep.HostIfIndex)
	}
	podKey := ep.Namespace + "/" + ep.Name
	if pod, found, err := r.pod(ctx, ep.Namespace, ep.Name); err == nil && found && pod.Spec.NodeName != "" && pod.Spec.NodeName != r.cfg.Node {
		return nil, errorf(Conflict, "pod %s is scheduled on node %s, not on this node %s", podKey, pod.Spec.NodeName, r.cfg.Node)
	}

	reg := &registration{ContainerID: cid, Endpoint: ep}
	reg.IPs = slices.Clone(ep.IPs)
	fail := func(err error) (*cni.EndpointStatus, error) {
		r.forget(cid, reg)
		return nil, err
	}
	if err := r.store.put(reg); err != nil {
		return fail(errorf(Internal, "save registration: %v", err))
	}
	need := r.cfg.Policy.PodChanged(ep.Namespace, ep.Name)
	if err := r.waitEnforced(ctx, podKey, OnePerFamily(ep.IPs), need); err != nil {
		return fail(err)
	}
	if err := r.attach(cid, reg); err != nil {
		var bad *BadInterfaceError
		if errors.As(err, &bad) {
			return fail(errorf(Invalid, "%v", err))
		}
		return fail(errorf(Internal, "attach to %s: %v", ep.HostIfName, err))
	}
	return r.Status(cid)
}

// waitReady waits until the registry takes endpoints.
func (r *Registry) waitReady(ctx context.Context) error {
	for {
		msg := r.NotReady()
		if msg == "" {
			return nil
		}
		_, changed := r.cfg.Policy.Enforcement()
		// Readiness changes at a publish or in recover; poll as well.
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return errorf(Unavailable, "%s", msg)
		}
	}
}

// waitEnforced waits until a batch numbered need or later is in force
// with every address in ips as the pod's.
func (r *Registry) waitEnforced(ctx context.Context, podKey string, ips []netip.Addr, need uint64) error {
	for {
		enf, changed := r.cfg.Policy.Enforcement()
		if enf.Batch >= need {
			if enforced(enf, podKey, ips) {
				return nil
			}
			if msg, bad := enf.PodErrors[podKey]; bad {
				return errorf(Conflict, "pod %s: %s", podKey, msg)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return r.whyNotEnforced(podKey, enf)
		}
	}
}

// whyNotEnforced explains a registration that timed out.
func (r *Registry) whyNotEnforced(podKey string, enf Enforcement) error {
	ns, name, _ := strings.Cut(podKey, "/")
	pod, found, err := r.pod(context.Background(), ns, name)
	switch {
	case enf.Err != nil:
		return errorf(Unavailable, "applying the policy snapshot failed: %v", enf.Err)
	case err == nil && !found:
		return errorf(Unavailable, "pod %s not found: the agent's cache of the API server doesn't have it", podKey)
	case err == nil && pod.Spec.NodeName != "" && pod.Spec.NodeName != r.cfg.Node:
		return errorf(Conflict, "pod %s is scheduled on node %s, not on this node %s", podKey, pod.Spec.NodeName, r.cfg.Node)
	case err == nil && (pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed):
		return errorf(Conflict, "pod %s is on the host network or has finished", podKey)
	}
	return errorf(Unavailable, "pod %s: policy not applied in time", podKey)
}

// pod reads a pod: found false when it is gone.
func (r *Registry) pod(ctx context.Context, namespace, name string) (*corev1.Pod, bool, error) {
	var pod corev1.Pod
	err := r.cfg.Pods.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &pod)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		r.cfg.Log.Error(err, "Reading a pod from the cache failed", "pod", namespace+"/"+name)
		return nil, false, err
	}
	return &pod, true, nil
}

// enforced says whether every address is in force as the pod's.
func enforced(enf Enforcement, podKey string, ips []netip.Addr) bool {
	if len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		e, ok := enf.Endpoints[ip]
		if !ok || e.PodKey != podKey {
			return false
		}
	}
	return true
}

// Status is a registration's status (GET).
func (r *Registry) Status(cid string) (*cni.EndpointStatus, error) {
	if err := validContainerID(cid); err != nil {
		return nil, err
	}
	reg := r.store.get(cid)
	if reg == nil {
		return nil, errorf(NotFound, "no endpoint for container %s", cid)
	}
	enf, _ := r.cfg.Policy.Enforcement()
	return r.status(reg, enf), nil
}

// List is every registration's status (GET /v1/endpoints).
func (r *Registry) List() []*cni.EndpointStatus {
	regs := r.store.all()
	enf, _ := r.cfg.Policy.Enforcement()
	out := make([]*cni.EndpointStatus, 0, len(regs))
	for _, cid := range slices.Sorted(maps.Keys(regs)) {
		out = append(out, r.status(regs[cid], enf))
	}
	return out
}

func (r *Registry) status(reg *registration, enf Enforcement) *cni.EndpointStatus {
	st := &cni.EndpointStatus{ContainerID: reg.ContainerID, Endpoint: reg.Endpoint}
	st.IPs = slices.Clone(reg.IPs)
	if a := r.attached.get(reg.ContainerID); a != nil && a.ifindex == reg.HostIfIndex {
		st.Attached = true
	}
	st.Enforced = enforced(enf, reg.podKey(), OnePerFamily(reg.IPs))
	for _, ip := range reg.IPs {
		var id uint32
		if e, ok := enf.Endpoints[ip]; ok && e.PodKey == reg.podKey() {
			id = e.ID
		}
		st.DatapathIDs = append(st.DatapathIDs, id)
	}
	return st
}

// Spoofed sums, by pod (namespace/name), the packets its attached veths
// dropped for a source address that isn't the pod's.
func (r *Registry) Spoofed() map[string]uint64 {
	regs := r.store.all()
	out := map[string]uint64{}
	for cid, ifindex := range r.attached.ifindexes() {
		reg := regs[cid]
		if reg == nil {
			continue
		}
		if n, err := r.cfg.Attacher.Spoofed(ifindex); err == nil {
			out[reg.podKey()] += n
		}
	}
	return out
}

// errorf is a registration refused for a reason of kind k.
func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}
