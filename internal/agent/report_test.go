package agent

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent/routesync"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// startAPIServer starts envtest for one test.
func startAPIServer(t *testing.T) client.Client {
	t.Helper()
	cfg, scheme := testenv.StartFor(t)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReporter(t *testing.T) {
	k8s := startAPIServer(t)
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode}}
	if err := k8s.Create(ctx, node); err != nil {
		t.Fatal(err)
	}

	state := nodeState{notReady: "the agent is starting: informer caches not synced yet"}
	r := &reporter{
		client: k8s, node: testNode, version: "v1.2.3", pinned: true, interval: time.Second,
		state: func() nodeState { return state }, log: testr.New(t),
	}
	get := func() *v1.DataplaneNode {
		t.Helper()
		obj := &v1.DataplaneNode{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: testNode}, obj); err != nil {
			t.Fatal(err)
		}
		return obj
	}
	sync := func(wantWrite bool) *v1.DataplaneNode {
		t.Helper()
		before := ""
		if r.obj != nil {
			before = r.obj.ResourceVersion
		}
		wrote, err := r.sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		obj := get()
		if wrote != wantWrite || (before != "" && (obj.ResourceVersion != before) != wantWrite) {
			t.Fatalf("wrote %v (resourceVersion %s -> %s), want a write: %v", wrote, before, obj.ResourceVersion, wantWrite)
		}
		return obj
	}

	// Created, owned by the Node, reporting the agent as starting.
	obj := sync(true)
	if refs := obj.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Node" || refs[0].Name != testNode || refs[0].UID != node.UID {
		t.Fatalf("owner references %+v, want the Node %s (%s)", refs, testNode, node.UID)
	}
	c := meta.FindStatusCondition(obj.Status.Conditions, v1.ConditionReady)
	if obj.Status.Ready || c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1.ReasonStarting {
		t.Fatalf("status %+v, want not ready, Starting", obj.Status)
	}
	if !obj.Status.Pinned || obj.Status.AgentVersion != "v1.2.3" || obj.Status.LastApplyTime != nil {
		t.Fatalf("status %+v", obj.Status)
	}

	// Nothing changed: no write.
	sync(false)

	// Applied: ready, with the apply reported.
	applied := time.Now().Truncate(time.Second)
	state = nodeState{endpoints: 3, applies: 2, lastApply: applied, took: 40 * time.Millisecond}
	obj = sync(true)
	st := obj.Status
	c = meta.FindStatusCondition(st.Conditions, v1.ConditionReady)
	if !st.Ready || c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1.ReasonDatapathLoaded ||
		st.Endpoints != 3 || st.ObservedPolicyChanges != 2 || st.LastApplyTime == nil || !st.LastApplyTime.Time.Equal(applied) ||
		st.LastApplyDuration == nil || st.LastApplyDuration.Duration != 40*time.Millisecond || st.LastError != "" {
		t.Fatalf("status %+v, want ready with 3 endpoints and 2 applies", st)
	}
	sync(false)

	// A failed apply.
	state.lastErr = "map full"
	obj = sync(true)
	c = meta.FindStatusCondition(obj.Status.Conditions, v1.ConditionReady)
	if obj.Status.Ready || c == nil || c.Reason != v1.ReasonAgentApplyFailed || obj.Status.LastError != "map full" {
		t.Fatalf("status %+v, want ApplyFailed", obj.Status)
	}

	// Native routing with a conflict: the API server takes the routing
	// status; the same outcome again writes nothing.
	state.routing = &routingState{mode: "Native", routes: routesync.Status{Synced: true, Routes: 1, Problems: []routesync.Problem{
		{Dst: "10.0.3.0/24", Node: "c", Reason: v1.ReasonRouteConflict, Message: "route to 10.0.3.0/24: taken"},
	}}}
	obj = sync(true)
	c = meta.FindStatusCondition(obj.Status.Conditions, v1.ConditionRoutesReady)
	if r := obj.Status.Routing; r == nil || r.Mode != v1.RoutingModeNative || r.Routes != 1 || len(r.Problems) != 1 ||
		c == nil || c.Reason != v1.ReasonRouteConflict {
		t.Fatalf("status %+v, want 1 route and the conflict", obj.Status)
	}
	state.routing = &routingState{mode: "Native", routes: routesync.Status{Synced: true, Routes: 1, Problems: []routesync.Problem{
		{Dst: "10.0.3.0/24", Node: "c", Reason: v1.ReasonRouteConflict, Message: "route to 10.0.3.0/24: taken"},
	}}}
	sync(false)

	// A new run finds the object and writes once.
	r.obj, r.written = nil, nil
	sync(true)
	sync(false)
}

func TestSetRouting(t *testing.T) {
	conflict := routesync.Problem{Dst: "10.0.3.0/24", Node: "c", Reason: v1.ReasonRouteConflict, Message: "route to 10.0.3.0/24: taken"}
	noAddr := routesync.Problem{Dst: "10.0.2.0/24", Node: "b", Reason: v1.ReasonNodeAddressMissing, Message: "node b: no IPv4 InternalIP"}
	many := make([]routesync.Problem, v1.MaxRouteProblems+3)
	for i := range many {
		many[i] = routesync.Problem{Dst: fmt.Sprintf("10.1.%d.0/24", i), Node: "n", Reason: v1.ReasonNodeAddressMissing, Message: strings.Repeat("x", 2000)}
	}
	tests := []struct {
		name        string
		in          *routingState
		wantRouting *v1.DataplaneNodeRouting
		wantStatus  metav1.ConditionStatus
		wantReason  string
	}{
		{name: "no routing: no routing status, no condition"},
		{
			name:        "not synced yet",
			in:          &routingState{mode: "Native"},
			wantRouting: &v1.DataplaneNodeRouting{Mode: v1.RoutingModeNative},
			wantStatus:  metav1.ConditionUnknown, wantReason: v1.ReasonStarting,
		},
		{
			name:        "every route installed",
			in:          &routingState{mode: "Native", routes: routesync.Status{Synced: true, Routes: 4}},
			wantRouting: &v1.DataplaneNodeRouting{Mode: v1.RoutingModeNative, Routes: 4},
			wantStatus:  metav1.ConditionTrue, wantReason: v1.ReasonRoutesInstalled,
		},
		{
			name: "a conflict comes first in the condition; problems sorted by destination",
			in:   &routingState{mode: "Native", routes: routesync.Status{Synced: true, Routes: 2, Problems: []routesync.Problem{noAddr, conflict}}},
			wantRouting: &v1.DataplaneNodeRouting{Mode: v1.RoutingModeNative, Routes: 2, Problems: []v1.RouteProblem{
				{Destination: "10.0.2.0/24", Node: "b", Reason: v1.ReasonNodeAddressMissing, Message: noAddr.Message},
				{Destination: "10.0.3.0/24", Node: "c", Reason: v1.ReasonRouteConflict, Message: conflict.Message},
			}},
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonRouteConflict,
		},
		{
			name:        "a failed write",
			in:          &routingState{mode: "Native", routes: routesync.Status{Synced: true, Routes: 1, Err: "add route: unreachable"}},
			wantRouting: &v1.DataplaneNodeRouting{Mode: v1.RoutingModeNative, Routes: 1},
			wantStatus:  metav1.ConditionFalse, wantReason: v1.ReasonRouteSyncFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// From a status that had routing, to check what is removed.
			var st v1.DataplaneNodeStatus
			setRouting(&st, &routingState{mode: "Native", routes: routesync.Status{Synced: true, Routes: 9, Problems: []routesync.Problem{conflict}}})
			setRouting(&st, tt.in)
			if !reflect.DeepEqual(st.Routing, tt.wantRouting) {
				t.Errorf("routing:\n got %+v\nwant %+v", st.Routing, tt.wantRouting)
			}
			c := meta.FindStatusCondition(st.Conditions, v1.ConditionRoutesReady)
			switch {
			case tt.wantReason == "" && c != nil:
				t.Errorf("condition %+v, want none", c)
			case tt.wantReason != "" && (c == nil || c.Status != tt.wantStatus || c.Reason != tt.wantReason):
				t.Errorf("condition %+v, want %s %s", c, tt.wantStatus, tt.wantReason)
			}
		})
	}

	t.Run("bounded", func(t *testing.T) {
		var st v1.DataplaneNodeStatus
		setRouting(&st, &routingState{mode: "Native", routes: routesync.Status{Synced: true, Problems: many}})
		r := st.Routing
		if len(r.Problems) != v1.MaxRouteProblems || r.ProblemsOmitted != 3 || len(r.Problems[0].Message) != 1024 {
			t.Errorf("%d problems listed, %d omitted, message of %d bytes; want %d, 3, 1024",
				len(r.Problems), r.ProblemsOmitted, len(r.Problems[0].Message), v1.MaxRouteProblems)
		}
	})
}
