package agent

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
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

	// A new run finds the object and writes once.
	r.obj, r.written = nil, nil
	sync(true)
	sync(false)
}
