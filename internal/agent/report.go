package agent

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
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
	if r.written != nil && *r.written == s {
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
}

// agentVersion is the agent binary's module version.
func agentVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// reporter is the reporter of the node's DataplaneNode.
func (a *Agent) reporter(log logr.Logger, p *parts) (*reporter, error) {
	o := a.opts
	direct, err := client.New(o.RESTConfig, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &reporter{
		client: direct, node: o.NodeName, version: agentVersion(), pinned: o.Datapath.PinDir != "",
		interval: DefaultReportInterval, state: p.nodeState, log: log,
	}, nil
}
