package controllers

import (
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

func daemonSet(generation, observed int64, desired, updated, available int32) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sluice-system", Name: "sluice-agent", Generation: generation},
		Status: appsv1.DaemonSetStatus{
			ObservedGeneration: observed, DesiredNumberScheduled: desired,
			UpdatedNumberScheduled: updated, NumberAvailable: available,
		},
	}
}

type condWant struct {
	status metav1.ConditionStatus
	reason string
}

func TestConditions(t *testing.T) {
	tests := []struct {
		name                         string
		ds                           *appsv1.DaemonSet
		err                          error
		ready, progressing, degraded condWant
	}{
		{
			name:        "apply failed before any DaemonSet existed",
			err:         errors.New("create DaemonSet: forbidden"),
			ready:       condWant{metav1.ConditionFalse, v1.ReasonApplyFailed},
			progressing: condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
			degraded:    condWant{metav1.ConditionTrue, v1.ReasonApplyFailed},
		},
		{
			name:        "DaemonSet controller hasn't seen the new spec",
			ds:          daemonSet(2, 1, 3, 3, 3),
			ready:       condWant{metav1.ConditionFalse, v1.ReasonAgentPending},
			progressing: condWant{metav1.ConditionTrue, v1.ReasonAgentPending},
			degraded:    condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
		},
		{
			name:        "no nodes",
			ds:          daemonSet(1, 1, 0, 0, 0),
			ready:       condWant{metav1.ConditionTrue, v1.ReasonNoNodes},
			progressing: condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
			degraded:    condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
		},
		{
			name:        "rolling out",
			ds:          daemonSet(2, 2, 5, 2, 4),
			ready:       condWant{metav1.ConditionFalse, v1.ReasonAgentRollingOut},
			progressing: condWant{metav1.ConditionTrue, v1.ReasonAgentRollingOut},
			degraded:    condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
		},
		{
			name:        "updated everywhere, some agents not ready",
			ds:          daemonSet(2, 2, 5, 5, 3),
			ready:       condWant{metav1.ConditionFalse, v1.ReasonAgentUnavailable},
			progressing: condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
			degraded:    condWant{metav1.ConditionTrue, v1.ReasonAgentUnavailable},
		},
		{
			name:        "complete",
			ds:          daemonSet(2, 2, 5, 5, 5),
			ready:       condWant{metav1.ConditionTrue, v1.ReasonAgentAvailable},
			progressing: condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
			degraded:    condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
		},
		{
			name:        "complete, but the status write failed",
			ds:          daemonSet(2, 2, 5, 5, 5),
			err:         errors.New("patch status: conflict"),
			ready:       condWant{metav1.ConditionTrue, v1.ReasonAgentAvailable},
			progressing: condWant{metav1.ConditionFalse, v1.ReasonAsExpected},
			degraded:    condWant{metav1.ConditionTrue, v1.ReasonApplyFailed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dpc := &v1.DataplaneConfig{ObjectMeta: metav1.ObjectMeta{Generation: 7}}
			setStatus(dpc, &observation{daemonSet: tt.ds}, tt.err)
			for condType, want := range map[string]condWant{
				v1.ConditionReady: tt.ready, v1.ConditionProgressing: tt.progressing, v1.ConditionDegraded: tt.degraded,
			} {
				got := meta.FindStatusCondition(dpc.Status.Conditions, condType)
				if got == nil {
					t.Fatalf("no %s condition", condType)
				}
				if got.Status != want.status || got.Reason != want.reason {
					t.Errorf("%s = %s/%s (%s), want %s/%s", condType, got.Status, got.Reason, got.Message, want.status, want.reason)
				}
				if got.ObservedGeneration != 7 {
					t.Errorf("%s observedGeneration = %d, want 7", condType, got.ObservedGeneration)
				}
			}
		})
	}
}

func TestSetStatusKeepsTransitionTimeWhenNothingChanged(t *testing.T) {
	dpc := &v1.DataplaneConfig{}
	ds := daemonSet(1, 1, 2, 2, 2)
	setStatus(dpc, &observation{daemonSet: ds}, nil)
	first := dpc.Status.DeepCopy()
	setStatus(dpc, &observation{daemonSet: ds}, nil)
	for i := range first.Conditions {
		if !first.Conditions[i].LastTransitionTime.Equal(&dpc.Status.Conditions[i].LastTransitionTime) {
			t.Errorf("condition %s moved its transition time on an identical observation", first.Conditions[i].Type)
		}
	}
}
