package controllers

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// setStatus writes what one reconcile observed into dpc's status. Conditions
// keep their lastTransitionTime when their status doesn't change, so a
// settled object gets an identical status and no write.
func setStatus(dpc *v1.DataplaneConfig, obs *observation, reconcileErr error) {
	if obs.effective != nil {
		dpc.Status.Effective = obs.effective
	}
	if obs.daemonSet != nil {
		dpc.Status.Agent = agentRollout(obs.daemonSet)
	}
	for _, c := range []metav1.Condition{
		readyCondition(obs.daemonSet, reconcileErr),
		progressingCondition(obs.daemonSet),
		degradedCondition(obs.daemonSet, reconcileErr),
	} {
		c.ObservedGeneration = dpc.Generation
		meta.SetStatusCondition(&dpc.Status.Conditions, c)
	}
	if obs.effective != nil && obs.pools != nil {
		c := ipamCondition(obs.effective, obs.pools)
		c.ObservedGeneration = dpc.Generation
		meta.SetStatusCondition(&dpc.Status.Conditions, c)
	}
}

// ipamCondition is the health of the pools the configuration uses: the
// pools it names, or every pool when it names none.
func ipamCondition(eff *v1.EffectiveConfig, pools []v1.IPAMPool) metav1.Condition {
	c := metav1.Condition{Type: v1.ConditionIPAMReady, Status: metav1.ConditionFalse}
	if eff.NetworkPlugin != v1.NetworkPluginAzure {
		c.Status, c.Reason = metav1.ConditionTrue, v1.ReasonExternalIPAM
		c.Message = "Pod addresses are managed by the CNI you bring (networkPlugin: none)"
		return c
	}
	inUse := pools
	if len(eff.IPAMPools) > 0 {
		inUse = nil
		for _, name := range eff.IPAMPools {
			i := slices.IndexFunc(pools, func(p v1.IPAMPool) bool { return p.Name == name })
			if i < 0 {
				c.Reason = v1.ReasonPoolMissing
				c.Message = fmt.Sprintf("IPAMPool %s named in spec.ipamPools doesn't exist; create it or remove it from the list", name)
				return c
			}
			inUse = append(inUse, pools[i])
		}
	}
	if len(inUse) == 0 {
		c.Reason = v1.ReasonNoPools
		c.Message = "No IPAMPool exists: new pods get no addresses; create an IPAMPool"
		return c
	}
	var names []string
	for i := range inUse {
		pool := &inUse[i]
		if exhausted := meta.FindStatusCondition(pool.Status.Conditions, v1.ConditionExhausted); exhausted != nil && exhausted.Status == metav1.ConditionTrue {
			c.Reason = v1.ReasonPoolExhausted
			c.Message = fmt.Sprintf("IPAMPool %s: %s", pool.Name, exhausted.Message)
			return c
		}
		if ready := meta.FindStatusCondition(pool.Status.Conditions, v1.ConditionReady); ready != nil && ready.Status == metav1.ConditionFalse {
			c.Reason = v1.ReasonPoolNotReady
			c.Message = fmt.Sprintf("IPAMPool %s: %s", pool.Name, ready.Message)
			return c
		}
		names = append(names, pool.Name)
	}
	c.Status, c.Reason = metav1.ConditionTrue, v1.ReasonPoolsReady
	c.Message = fmt.Sprintf("IPAMPools in use: %s", strings.Join(names, ", "))
	return c
}

func agentRollout(ds *appsv1.DaemonSet) *v1.AgentRolloutStatus {
	return &v1.AgentRolloutStatus{
		DesiredNodes:        ds.Status.DesiredNumberScheduled,
		UpdatedNodes:        ds.Status.UpdatedNumberScheduled,
		AvailableNodes:      ds.Status.NumberAvailable,
		DaemonSetGeneration: ds.Generation,
	}
}

// rolloutState is where the agent DaemonSet's rollout stands.
type rolloutState int

const (
	rolloutUnknown     rolloutState = iota // no DaemonSet to look at
	rolloutPending                         // the DaemonSet controller hasn't seen the latest spec
	rolloutNoNodes                         // no node should run the agent
	rolloutInProgress                      // some nodes run an older agent
	rolloutUnavailable                     // all nodes updated, some agents not ready
	rolloutComplete                        // every node runs a ready, current agent
)

func rolloutOf(ds *appsv1.DaemonSet) rolloutState {
	if ds == nil {
		return rolloutUnknown
	}
	switch st := ds.Status; {
	case st.ObservedGeneration < ds.Generation:
		return rolloutPending
	case st.DesiredNumberScheduled == 0:
		return rolloutNoNodes
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return rolloutInProgress
	case st.NumberAvailable < st.DesiredNumberScheduled:
		return rolloutUnavailable
	default:
		return rolloutComplete
	}
}

func readyCondition(ds *appsv1.DaemonSet, reconcileErr error) metav1.Condition {
	c := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionFalse}
	switch rolloutOf(ds) {
	case rolloutUnknown:
		c.Reason, c.Message = v1.ReasonApplyFailed, applyFailedMessage(reconcileErr)
	case rolloutPending:
		c.Reason, c.Message = v1.ReasonAgentPending, pendingMessage(ds)
	case rolloutNoNodes:
		c.Status, c.Reason = metav1.ConditionTrue, v1.ReasonNoNodes
		c.Message = "No Linux node runs the agent yet; the configuration is put in force on each node as it joins"
	case rolloutInProgress:
		c.Reason, c.Message = v1.ReasonAgentRollingOut, updatedMessage(ds)
	case rolloutUnavailable:
		c.Reason, c.Message = v1.ReasonAgentUnavailable, unavailableMessage(ds)
	case rolloutComplete:
		c.Status, c.Reason = metav1.ConditionTrue, v1.ReasonAgentAvailable
		c.Message = fmt.Sprintf("The agent runs the current configuration and is ready on all %d nodes", ds.Status.DesiredNumberScheduled)
	}
	return c
}

func progressingCondition(ds *appsv1.DaemonSet) metav1.Condition {
	c := metav1.Condition{Type: v1.ConditionProgressing, Status: metav1.ConditionFalse,
		Reason: v1.ReasonAsExpected, Message: "No agent rollout in progress"}
	switch rolloutOf(ds) {
	case rolloutPending:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1.ReasonAgentPending, pendingMessage(ds)
	case rolloutInProgress:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1.ReasonAgentRollingOut, updatedMessage(ds)
	}
	return c
}

func degradedCondition(ds *appsv1.DaemonSet, reconcileErr error) metav1.Condition {
	c := metav1.Condition{Type: v1.ConditionDegraded, Status: metav1.ConditionFalse,
		Reason: v1.ReasonAsExpected, Message: "The configuration is in force or rolling out"}
	switch {
	case reconcileErr != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1.ReasonApplyFailed, applyFailedMessage(reconcileErr)
	case rolloutOf(ds) == rolloutUnavailable:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1.ReasonAgentUnavailable, unavailableMessage(ds)
	}
	return c
}

func applyFailedMessage(err error) string {
	if err == nil {
		return "The agent objects have not been written yet"
	}
	return fmt.Sprintf("Could not put the configuration in force: %v", err)
}

func pendingMessage(ds *appsv1.DaemonSet) string {
	return fmt.Sprintf("Waiting for the DaemonSet controller to observe generation %d of DaemonSet %s/%s",
		ds.Generation, ds.Namespace, ds.Name)
}

func updatedMessage(ds *appsv1.DaemonSet) string {
	return fmt.Sprintf("%d of %d nodes run the current agent", ds.Status.UpdatedNumberScheduled, ds.Status.DesiredNumberScheduled)
}

func unavailableMessage(ds *appsv1.DaemonSet) string {
	st := ds.Status
	return fmt.Sprintf("%d of %d nodes have no ready agent", st.DesiredNumberScheduled-st.NumberAvailable, st.DesiredNumberScheduled)
}
