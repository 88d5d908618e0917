package agent

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent/routesync"
	"github.com/sluice-dev/sluice/internal/scheme"
)

// DefaultReportInterval is the least time between two writes of the
// node's DataplaneNode status.
const DefaultReportInterval = time.Second

// nodeState is what the DataplaneNode status reports; two equal states
// make the same status.
type nodeState struct {
	notReady  string // why the agent isn't ready; "": ready
	endpoints int32
	applies   int64
	lastApply time.Time
	took      time.Duration // from the receipt of the oldest change
	lastErr   string
	routing   *routingState // nil: the agent doesn't route
}

// routingState is the routing part of nodeState.
type routingState struct {
	mode   string
	routes routesync.Status
}

// routingStateOf reads the route loop's outcome (nil without one).
func routingStateOf(mode string, routes *routesync.Sync) *routingState {
	if routes == nil {
		return nil
	}
	return &routingState{mode: mode, routes: routes.Status()}
}

// nodeState is the parts' current state.
func (p *parts) nodeState() nodeState {
	s := nodeState{notReady: p.endpoints.NotReady()}
	res, _ := p.slot.Result()
	if res.InForce != nil {
		s.endpoints = int32(min(len(res.InForce.Snapshot.Endpoints), 1<<31-1))
	}
	s.applies, s.lastApply, s.took = res.Applies, res.AppliedAt, res.Took
	if res.Err != nil {
		s.lastErr = res.Err.Error()
	}
	return s
}

// reporter keeps the node's DataplaneNode (created on start, owned by
// the Node) in step with the agent's state: at most one status write per
// interval, none when the state didn't change.
type reporter struct {
	client   client.Client // uncached
	node     string
	version  string
	pinned   bool
	interval time.Duration
	state    func() nodeState
	log      logr.Logger

	obj     *v1.DataplaneNode // as last read or written; nil: read it first
	written *nodeState        // the state obj's status reports
}

// run reports until ctx ends. Failures are logged and retried at the next
// tick: the status is informative, it never stops the agent.
func (r *reporter) run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if _, err := r.sync(ctx); err != nil && ctx.Err() == nil {
			r.log.Error(err, "Reporting the node's state on its DataplaneNode failed; retrying")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sync writes the current state if it differs from what was last written,
// creating the object first when it is missing. It says whether it wrote
// the status.
func (r *reporter) sync(ctx context.Context) (bool, error) {
	if r.obj == nil {
		if err := r.ensure(ctx); err != nil {
			return false, err
		}
	}
	s := r.state()
	if r.written != nil && reflect.DeepEqual(*r.written, s) {
		return false, nil
	}
	obj := r.obj.DeepCopy()
	r.setStatus(&obj.Status, s)
	if err := r.client.Status().Update(ctx, obj); err != nil {
		// Conflict or gone: read (or create) it again at the next try.
		r.obj, r.written = nil, nil
		return false, fmt.Errorf("update the DataplaneNode status: %w", err)
	}
	r.obj, r.written = obj, &s
	return true, nil
}

// ensure reads the DataplaneNode, creating it when missing, owned by the
// Node so that it is deleted with it.
func (r *reporter) ensure(ctx context.Context) error {
	obj := &v1.DataplaneNode{}
	err := r.client.Get(ctx, client.ObjectKey{Name: r.node}, obj)
	if err == nil {
		r.obj = obj
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get the DataplaneNode: %w", err)
	}
	node := &corev1.Node{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: r.node}, node); err != nil {
		return fmt.Errorf("get the Node: %w", err)
	}
	obj = &v1.DataplaneNode{ObjectMeta: metav1.ObjectMeta{
		Name:            r.node,
		OwnerReferences: []metav1.OwnerReference{v1.NodeOwnerReference(node.Name, node.UID)},
	}}
	if err := r.client.Create(ctx, obj); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return r.ensure(ctx)
		}
		return fmt.Errorf("create the DataplaneNode: %w", err)
	}
	r.log.Info("Created the DataplaneNode")
	r.obj = obj
	return nil
}

// setStatus makes st report s.
func (r *reporter) setStatus(st *v1.DataplaneNodeStatus, s nodeState) {
	cond := metav1.Condition{Type: v1.ConditionReady}
	switch {
	case s.lastErr != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1.ReasonAgentApplyFailed,
			"applying the policy snapshot failed: "+s.lastErr
	case s.notReady != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1.ReasonStarting, s.notReady
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, v1.ReasonDatapathLoaded,
			"the datapath enforces the cluster's policy"
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	st.Ready = cond.Status == metav1.ConditionTrue
	st.Endpoints = s.endpoints
	st.ObservedPolicyChanges = s.applies
	st.LastApplyTime, st.LastApplyDuration = nil, nil
	if !s.lastApply.IsZero() {
		st.LastApplyTime = &metav1.Time{Time: s.lastApply}
		st.LastApplyDuration = &metav1.Duration{Duration: s.took}
	}
	st.LastError = s.lastErr
	st.AgentVersion = r.version
	st.Pinned = r.pinned
	setRouting(st, s.routing)
}

// problemOrder is the order of the RoutesReady reasons for a node with
// problems of several kinds: a conflict needs someone on the node, the
// others a fix of the cluster's objects.
var problemOrder = []string{v1.ReasonRouteConflict, v1.ReasonNodeAddressMissing, v1.ReasonPodRangeClaimedTwice, v1.ReasonInvalidPodRange}

// setRouting makes st's routing and RoutesReady condition report rs.
func setRouting(st *v1.DataplaneNodeStatus, rs *routingState) {
	if rs == nil {
		st.Routing = nil
		meta.RemoveStatusCondition(&st.Conditions, v1.ConditionRoutesReady)
		return
	}
	out := rs.routes
	problems := slices.SortedFunc(slices.Values(out.Problems), func(a, b routesync.Problem) int {
		return cmp.Or(cmp.Compare(a.Dst, b.Dst), cmp.Compare(a.Message, b.Message))
	})
	st.Routing = &v1.DataplaneNodeRouting{Mode: v1.RoutingMode(rs.mode), Routes: int32(min(out.Routes, 1<<31-1))}
	for i, p := range problems {
		if i == v1.MaxRouteProblems {
			st.Routing.ProblemsOmitted = int32(len(problems) - i)
			break
		}
		st.Routing.Problems = append(st.Routing.Problems, v1.RouteProblem{
			Destination: truncate(p.Dst, 64), Node: truncate(p.Node, 512), Reason: p.Reason, Message: truncate(p.Message, 1024),
		})
	}

	cond := metav1.Condition{Type: v1.ConditionRoutesReady}
	switch {
	case !out.Synced:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionUnknown, v1.ReasonStarting,
			"the routes to other nodes' pod ranges are not synced yet"
	case len(problems) > 0:
		first := problems[0]
		for _, reason := range slices.Backward(problemOrder) {
			if i := slices.IndexFunc(problems, func(p routesync.Problem) bool { return p.Reason == reason }); i >= 0 {
				first = problems[i]
			}
		}
		cond.Status, cond.Reason = metav1.ConditionFalse, first.Reason
		cond.Message = fmt.Sprintf("%d pod range(s) of other nodes not routed (status.routing.problems); %s", len(problems), first.Message)
	case out.Err != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1.ReasonRouteSyncFailed,
			"writing the routes failed, retrying: "+truncate(out.Err, 4096)
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, v1.ReasonRoutesInstalled,
			fmt.Sprintf("every route to other nodes' pod ranges is installed (%d)", out.Routes)
	}
	meta.SetStatusCondition(&st.Conditions, cond)
}

// truncate cuts s to at most n bytes (the API's limits), marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// agentVersion is the agent binary's module version.
func agentVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// reporter is the reporter of the node's DataplaneNode.
// routes is the route loop whose outcome it reports (nil: no routing).
func (a *Agent) reporter(log logr.Logger, p *parts, routes *routesync.Sync) (*reporter, error) {
	o := a.opts
	direct, err := client.New(o.RESTConfig, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &reporter{
		client: direct, node: o.NodeName, version: agentVersion(), pinned: o.Datapath.PinDir != "",
		interval: DefaultReportInterval, log: log,
		state: func() nodeState {
			s := p.nodeState()
			s.routing = routingStateOf(o.Routing.Mode, routes)
			return s
		},
	}, nil
}
