package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/internal/cni"
)

// apiError is an error with the HTTP status the socket API answers.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// socketHandler is the endpoint API (internal/cni/agent.go documents it).
func (e *engine) socketHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/endpoints/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		switch r.Method {
		case http.MethodPut:
			e.handlePut(w, r, id)
		case http.MethodGet:
			st, err := e.endpointStatus(id)
			reply(w, st, err)
		case http.MethodDelete:
			if err := validContainerID(id); err != nil {
				reply(w, nil, err)
				return
			}
			e.unregister(id)
			reply(w, struct{}{}, nil)
		default:
			reply(w, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
		}
	})
	mux.HandleFunc("/v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			reply(w, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
		reply(w, e.endpointList(), nil)
	})
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, r *http.Request) {
		if msg := e.notReady(); msg != "" {
			reply(w, nil, errorf(http.StatusServiceUnavailable, "%s", msg))
			return
		}
		reply(w, struct{}{}, nil)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, errorf(http.StatusNotFound, "no such path %s", r.URL.Path))
	})
	return mux
}

func reply(w http.ResponseWriter, body any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		status := http.StatusInternalServerError
		var ae *apiError
		if errors.As(err, &ae) {
			status = ae.status
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(cni.AgentErrorBody{Message: err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (e *engine) handlePut(w http.ResponseWriter, r *http.Request, id string) {
	var ep cni.Endpoint
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(&ep); err != nil {
		reply(w, nil, errorf(http.StatusBadRequest, "decode endpoint: %v", err))
		return
	}
	st, err := e.register(r.Context(), id, ep)
	reply(w, st, err)
}

func validContainerID(id string) error {
	if id == "" || len(id) > 256 || strings.ContainsAny(id, "/\x00") {
		return errorf(http.StatusBadRequest, "invalid container ID %q", id)
	}
	return nil
}

// validate checks a registration before anything changes.
func validate(id string, ep *cni.Endpoint) error {
	if err := validContainerID(id); err != nil {
		return err
	}
	switch {
	case ep.Namespace == "" || ep.Name == "" || strings.Contains(ep.Namespace+ep.Name, "/"):
		return errorf(http.StatusBadRequest, "endpoint needs the pod's namespace and name (got %q/%q)", ep.Namespace, ep.Name)
	case ep.IfName == "":
		return errorf(http.StatusBadRequest, "endpoint needs ifName")
	case len(ep.IPs) == 0:
		return errorf(http.StatusBadRequest, "endpoint needs at least one IP")
	case ep.HostIfName == "" || ep.HostIfIndex <= 0:
		return errorf(http.StatusBadRequest, "endpoint needs hostIfName and a positive hostIfIndex (got %q, %d)", ep.HostIfName, ep.HostIfIndex)
	}
	for _, ip := range ep.IPs {
		if !ip.IsValid() || ip.Zone() != "" || ip.IsUnspecified() {
			return errorf(http.StatusBadRequest, "endpoint IP %q is not a pod address", ip)
		}
	}
	return nil
}

// notReady says why the agent can't take endpoints yet ("" when it can).
func (e *engine) notReady() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.synced:
		return "the agent is starting: informer caches not synced yet"
	case !e.applied && e.pub.err != nil:
		return "the agent is starting: applying the first policy snapshot failed: " + e.pub.err.Error()
	case !e.applied:
		return "the agent is starting: first policy snapshot not applied yet"
	case !e.ready:
		return "the agent is starting: re-attaching endpoints registered before the restart"
	}
	return ""
}

// waitChange waits for the next publish, or ctx.
func (e *engine) waitChange(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// register is PUT: record the endpoint, wait until a batch that includes
// it has been applied with the endpoint's addresses in the datapath, then
// attach. Any failure forgets the registration again.
func (e *engine) register(ctx context.Context, id string, ep cni.Endpoint) (*cni.EndpointStatus, error) {
	if err := validate(id, &ep); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.registerTimeout)
	defer cancel()
	for {
		msg := e.notReady()
		if msg == "" {
			break
		}
		e.mu.Lock()
		ch := e.changed
		e.mu.Unlock()
		// Readiness changes at a publish or in recover; poll as well.
		wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_ = e.waitChange(wctx, ch)
		wcancel()
		if ctx.Err() != nil {
			return nil, errorf(http.StatusServiceUnavailable, "%s", msg)
		}
	}

	ok, err := e.attacher.Exists(ep.HostIfName, ep.HostIfIndex)
	if err != nil {
		return nil, errorf(http.StatusInternalServerError, "check host interface: %v", err)
	}
	if !ok {
		return nil, errorf(http.StatusBadRequest, "host interface %s with ifindex %d does not exist in the agent's network namespace", ep.HostIfName, ep.HostIfIndex)
	}
	podKey := ep.Namespace + "/" + ep.Name
	var pod corev1.Pod
	found, err := e.get(ctx, objKey{kind: kindPod, namespace: ep.Namespace, name: ep.Name}, &pod)
	if err == nil && found && pod.Spec.NodeName != "" && pod.Spec.NodeName != e.node {
		return nil, errorf(http.StatusConflict, "pod %s is scheduled on node %s, not on this node %s", podKey, pod.Spec.NodeName, e.node)
	}

	e.mu.Lock()
	e.regSeq++
	reg := &registration{ContainerID: id, Endpoint: ep, seq: e.regSeq}
	reg.IPs = slices.Clone(ep.IPs)
	e.regs[id] = reg
	e.enqueueLocked(objKey{kind: kindPod, namespace: ep.Namespace, name: ep.Name})
	need := e.seq + 1
	err = e.persistLocked()
	e.mu.Unlock()
	fail := func(err error) (*cni.EndpointStatus, error) {
		e.forgetIf(id, reg)
		return nil, err
	}
	if err != nil {
		return fail(errorf(http.StatusInternalServerError, "save registration: %v", err))
	}

	want := podIPs(&corev1.Pod{}, ep.IPs)
	for {
		e.mu.Lock()
		pub, ch := e.pub, e.changed
		e.mu.Unlock()
		if pub.seq >= need {
			if enforced(pub, podKey, want) {
				break
			}
			if msg, bad := pub.podErrs[podKey]; bad {
				return fail(errorf(http.StatusConflict, "pod %s: %s", podKey, msg))
			}
		}
		if e.waitChange(ctx, ch) != nil {
			return fail(e.whyNotEnforced(podKey, pub))
		}
	}
	if err := e.attach(id, reg); err != nil {
		var bad *badInterfaceError
		if errors.As(err, &bad) {
			return fail(errorf(http.StatusBadRequest, "%v", err))
		}
		return fail(errorf(http.StatusInternalServerError, "attach to %s: %v", ep.HostIfName, err))
	}
	return e.endpointStatus(id)
}

// whyNotEnforced explains a registration that timed out.
func (e *engine) whyNotEnforced(podKey string, pub published) error {
	ns, name, _ := strings.Cut(podKey, "/")
	var pod corev1.Pod
	found, err := e.get(context.Background(), objKey{kind: kindPod, namespace: ns, name: name}, &pod)
	switch {
	case pub.err != nil:
		return errorf(http.StatusServiceUnavailable, "applying the policy snapshot failed: %v", pub.err)
	case err == nil && !found:
		return errorf(http.StatusServiceUnavailable, "pod %s not found: the agent's cache of the API server doesn't have it", podKey)
	case err == nil && pod.Spec.NodeName != "" && pod.Spec.NodeName != e.node:
		return errorf(http.StatusConflict, "pod %s is scheduled on node %s, not on this node %s", podKey, pod.Spec.NodeName, e.node)
	case err == nil && (pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed):
		return errorf(http.StatusConflict, "pod %s is on the host network or has finished", podKey)
	}
	return errorf(http.StatusServiceUnavailable, "pod %s: policy not applied in time", podKey)
}

// enforced says whether every address is in the datapath as the pod's.
func enforced(pub published, podKey string, ips []netip.Addr) bool {
	if len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		le, ok := pub.local[ip]
		if !ok || le.PodKey != podKey {
			return false
		}
	}
	return true
}

// forgetIf forgets a registration that failed, unless a newer one
// replaced it.
func (e *engine) forgetIf(id string, reg *registration) {
	e.mu.Lock()
	cur := e.regs[id]
	e.mu.Unlock()
	if cur == reg {
		e.unregister(id)
	}
}

// endpointStatus is GET.
func (e *engine) endpointStatus(id string) (*cni.EndpointStatus, error) {
	if err := validContainerID(id); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.regs[id]
	if r == nil {
		return nil, errorf(http.StatusNotFound, "no endpoint for container %s", id)
	}
	return e.statusLocked(r), nil
}

func (e *engine) statusLocked(r *registration) *cni.EndpointStatus {
	st := &cni.EndpointStatus{ContainerID: r.ContainerID, Endpoint: r.Endpoint}
	st.IPs = slices.Clone(r.IPs)
	if a := e.attached[r.ContainerID]; a != nil && a.ifindex == r.HostIfIndex {
		st.Attached = true
	}
	want := podIPs(&corev1.Pod{}, r.IPs)
	st.Enforced = enforced(e.pub, r.podKey(), want)
	for _, ip := range r.IPs {
		var id uint32
		if le, ok := e.pub.local[ip]; ok && le.PodKey == r.podKey() {
			id = e.pub.ids[le.idKey()]
		}
		st.DatapathIDs = append(st.DatapathIDs, id)
	}
	return st
}

// endpointList is GET /v1/endpoints.
func (e *engine) endpointList() []*cni.EndpointStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*cni.EndpointStatus, 0, len(e.regs))
	for _, id := range slices.Sorted(maps.Keys(e.regs)) {
		out = append(out, e.statusLocked(e.regs[id]))
	}
	return out
}
