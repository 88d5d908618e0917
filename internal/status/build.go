package status

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// Reasons of the problems Build finds itself; the others carry the reason
// of the condition they come from.
const (
	// ReasonNotFound: an object the dataplane needs doesn't exist.
	ReasonNotFound = "NotFound"
	// ReasonNotReconciled: the status describes an older spec than the
	// object's, so the operator is behind or not running.
	ReasonNotReconciled = "NotReconciled"
	// ReasonNoStatus: the operator has not yet set the condition.
	ReasonNoStatus = "NoStatus"
	// ReasonAgentsNotReady: the live DaemonSet has fewer ready or updated
	// agents than desired while the DataplaneConfig still says Ready.
	ReasonAgentsNotReady = "AgentsNotReady"
	// ReasonNotReady: a DataplaneNode is not ready and gives no reason.
	ReasonNotReady = "NotReady"
	// ReasonPending: a NodeNetwork has no Allocated condition yet.
	ReasonPending = "Pending"
	// ReasonUnreadable: the API server refused a read and gave no reason.
	ReasonUnreadable = "Unreadable"
)

// Build makes the report of obs as of now and judges it. It is pure.
func Build(obs *Observed, now time.Time) *Report {
	r := &Report{Time: now}
	var p problems
	for _, e := range obs.ReadErrors {
		reason := string(apierrors.ReasonForError(e.Err))
		if reason == "" {
			reason = ReasonUnreadable
		}
		p.add(e.What, reason, e.Err.Error())
	}
	r.DataplaneConfig = dataplaneConfig(obs.Config, &p)
	r.Agents = agents(obs, &p)
	r.Pools = pools(obs.Pools, &p)
	r.UnallocatedNodeNetworks = unallocated(obs.NodeNetworks, &p)
	r.Problems = p.list
	if r.Problems == nil {
		r.Problems = []Problem{}
	}
	r.Healthy = len(r.Problems) == 0
	return r
}

// problems collects problems, once per object and reason: the operator
// often says the same thing in two conditions (Ready False and Degraded
// True, both AgentUnavailable), and one line per cause is enough.
type problems struct{ list []Problem }

func (p *problems) add(object, reason, message string) {
	for _, q := range p.list {
		if q.Object == object && q.Reason == reason {
			return
		}
	}
	p.list = append(p.list, Problem{Object: object, Reason: reason, Message: message})
}

func dataplaneConfig(dpc *v1.DataplaneConfig, p *problems) *DataplaneConfig {
	object := "DataplaneConfig " + v1.DataplaneConfigName
	if dpc == nil {
		p.add(object, ReasonNotFound, "No DataplaneConfig "+v1.DataplaneConfigName+
			": the operator runs no dataplane until one is applied (see config/samples)")
		return nil
	}
	out := &DataplaneConfig{
		Name:               dpc.Name,
		Generation:         dpc.Generation,
		ObservedGeneration: dpc.Status.ObservedGeneration,
		Conditions:         conditions(dpc.Status.Conditions, v1.ConditionReady, v1.ConditionProgressing, v1.ConditionDegraded, v1.ConditionIPAMReady),
	}
	if eff := dpc.Status.Effective; eff != nil {
		out.NetworkPlugin = string(eff.NetworkPlugin)
		out.NetworkPluginMode = string(eff.NetworkPluginMode)
		out.NetworkDataplane = string(eff.NetworkDataplane)
		out.NetworkPolicy = string(eff.NetworkPolicy)
		out.PodCIDR = eff.PodCIDR
		out.IPAMPools = eff.IPAMPools
		out.KubeProxyReplacement = eff.KubeProxyReplacement
		if r := eff.Routing; r != nil {
			out.RoutingMode = string(r.Mode)
			out.TunnelProtocol = string(r.TunnelProtocol)
			out.PodMTU = r.PodMTU
		}
		out.AgentImage = eff.Agent.Image
	}

	if dpc.Status.ObservedGeneration < dpc.Generation {
		p.add(object, ReasonNotReconciled, fmt.Sprintf(
			"The status describes generation %d, the spec is at %d: the operator has not reconciled the latest spec; is it running?",
			dpc.Status.ObservedGeneration, dpc.Generation))
	}
	if c := meta.FindStatusCondition(dpc.Status.Conditions, v1.ConditionReady); c == nil {
		p.add(object, ReasonNoStatus, "No Ready condition: the operator has not reported on it; is it running?")
	} else if c.Status != metav1.ConditionTrue {
		p.add(object, c.Reason, c.Message)
	}
	if c := meta.FindStatusCondition(dpc.Status.Conditions, v1.ConditionDegraded); c != nil && c.Status == metav1.ConditionTrue {
		p.add(object, c.Reason, c.Message)
	}
	if c := meta.FindStatusCondition(dpc.Status.Conditions, v1.ConditionIPAMReady); c != nil && c.Status == metav1.ConditionFalse {
		p.add(object, c.Reason, c.Message)
	}
	return out
}

func agents(obs *Observed, p *problems) Agents {
	out := Agents{DaemonSet: obs.AgentDaemonSet.String(), Nodes: []AgentNode{}}
	object := "DaemonSet " + out.DaemonSet
	switch ds := obs.DaemonSet; {
	case ds != nil:
		out.Desired, out.Updated, out.Ready = ds.Status.DesiredNumberScheduled, ds.Status.UpdatedNumberScheduled, ds.Status.NumberReady
		// The operator's Ready condition covers the rollout; the live
		// DaemonSet is judged only when it contradicts a Ready condition,
		// which happens when agents fail after the operator stopped.
		if obs.Config != nil && meta.IsStatusConditionTrue(obs.Config.Status.Conditions, v1.ConditionReady) &&
			(out.Ready < out.Desired || out.Updated < out.Desired) {
			p.add(object, ReasonAgentsNotReady, fmt.Sprintf(
				"%d of %d nodes run a ready agent and %d the current one, but the DataplaneConfig says Ready: is the operator running?",
				out.Ready, out.Desired, out.Updated))
		}
	case obs.Config != nil && obs.Config.Status.Agent != nil:
		a := obs.Config.Status.Agent
		out.Desired, out.Updated, out.Ready = a.DesiredNodes, a.UpdatedNodes, a.AvailableNodes
	}
	if obs.DaemonSet == nil && obs.Config != nil && !readFailed(obs, object) {
		p.add(object, ReasonNotFound, "The operator has not created the agent DaemonSet here; is it running, "+
			"and is this its namespace (-n) and agent name (--agent-name)?")
	}

	for _, n := range slices.SortedFunc(slices.Values(obs.Nodes), func(a, b v1.DataplaneNode) int { return cmp.Compare(a.Name, b.Name) }) {
		out.Nodes = append(out.Nodes, agentNode(&n, p))
	}
	return out
}

// agentNode is one DataplaneNode's report, judged.
func agentNode(n *v1.DataplaneNode, p *problems) AgentNode {
	node := AgentNode{
		Name:         n.Name,
		Ready:        n.Status.Ready,
		Endpoints:    n.Status.Endpoints,
		AgentVersion: n.Status.AgentVersion,
		LastError:    n.Status.LastError,
	}
	ready := meta.FindStatusCondition(n.Status.Conditions, v1.ConditionReady)
	if ready != nil {
		node.Reason, node.Message = ready.Reason, ready.Message
	}
	node.LastReportTime = lastReport(n.Status.LastApplyTime, ready)
	node.Routing = nodeRouting(&n.Status)
	if !node.Ready {
		reason, message := node.Reason, node.Message
		if reason == "" {
			reason = ReasonNotReady
		}
		if message == "" {
			message = "The agent reports not ready"
			if node.LastError != "" {
				message += ": " + node.LastError
			}
		}
		p.add("DataplaneNode "+n.Name, reason, message)
	}
	// Routes not synced yet (Unknown) are part of starting, not a
	// problem of their own.
	if r := node.Routing; r != nil && !r.Ready && r.Reason != "" && r.Reason != v1.ReasonStarting {
		p.add("DataplaneNode "+n.Name, r.Reason, r.Message)
	}
	return node
}

// nodeRouting is the node's routing report (nil when it doesn't route).
func nodeRouting(st *v1.DataplaneNodeStatus) *NodeRouting {
	if st.Routing == nil {
		return nil
	}
	out := &NodeRouting{Mode: string(st.Routing.Mode), Routes: st.Routing.Routes, ProblemsOmitted: st.Routing.ProblemsOmitted,
		Problems: []RouteProblem{}}
	for _, q := range st.Routing.Problems {
		out.Problems = append(out.Problems, RouteProblem{Destination: q.Destination, Node: q.Node, Reason: q.Reason, Message: q.Message})
	}
	if c := meta.FindStatusCondition(st.Conditions, v1.ConditionRoutesReady); c != nil {
		out.Ready, out.Reason, out.Message = c.Status == metav1.ConditionTrue, c.Reason, c.Message
	}
	return out
}

// lastReport is the later of the last apply and the Ready transition.
func lastReport(lastApply *metav1.Time, ready *metav1.Condition) *time.Time {
	var t time.Time
	if lastApply != nil {
		t = lastApply.Time
	}
	if ready != nil && ready.LastTransitionTime.After(t) {
		t = ready.LastTransitionTime.Time
	}
	if t.IsZero() {
		return nil
	}
	return &t
}

func readFailed(obs *Observed, what string) bool {
	return slices.ContainsFunc(obs.ReadErrors, func(e ReadError) bool { return e.What == what })
}

func pools(in []v1.IPAMPool, p *problems) []Pool {
	out := make([]Pool, 0, len(in))
	for _, pool := range slices.SortedFunc(slices.Values(in), func(a, b v1.IPAMPool) int { return cmp.Compare(a.Name, b.Name) }) {
		st := pool.Status
		out = append(out, Pool{
			Name:         pool.Name,
			Mode:         string(pool.Spec.Mode),
			Capacity:     st.Capacity,
			Allocated:    st.Allocated,
			Free:         st.Free,
			Nodes:        st.AllocatedNodes,
			WaitingNodes: st.WaitingNodes,
			Conditions:   conditions(st.Conditions, v1.ConditionReady, v1.ConditionExhausted, v1.ConditionDegraded),
		})
		object := "IPAMPool " + pool.Name
		if c := meta.FindStatusCondition(st.Conditions, v1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
			p.add(object, c.Reason, c.Message)
		}
		for _, t := range []string{v1.ConditionDegraded, v1.ConditionExhausted} {
			if c := meta.FindStatusCondition(st.Conditions, t); c != nil && c.Status == metav1.ConditionTrue {
				p.add(object, c.Reason, c.Message)
			}
		}
	}
	return out
}

func unallocated(in []v1.NodeNetwork, p *problems) []NodeNetwork {
	out := []NodeNetwork{}
	for _, nn := range slices.SortedFunc(slices.Values(in), func(a, b v1.NodeNetwork) int { return cmp.Compare(a.Name, b.Name) }) {
		c := meta.FindStatusCondition(nn.Status.Conditions, v1.ConditionAllocated)
		if c != nil && c.Status == metav1.ConditionTrue {
			continue
		}
		n := NodeNetwork{Name: nn.Name, Pool: nn.Status.Pool, Reason: ReasonPending,
			Message: "The operator has not allocated the node's addresses yet"}
		if c != nil {
			n.Reason, n.Message = c.Reason, c.Message
		}
		out = append(out, n)
		p.add("NodeNetwork "+nn.Name, n.Reason, n.Message)
	}
	return out
}

// conditions picks the conditions of the given types, in that order.
func conditions(in []metav1.Condition, types ...string) []Condition {
	out := []Condition{}
	for _, t := range types {
		if c := meta.FindStatusCondition(in, t); c != nil {
			out = append(out, Condition{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message})
		}
	}
	return out
}
