package policy

import (
	"maps"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// TestLabelChangeRecomputesOnlyAffected counts endpoint computations: a
// pod's new labels recompute the pod and the pods of policies whose peers
// may contain its old or new class, nothing else.
func TestLabelChangeRecomputesOnlyAffected(t *testing.T) {
	c := baseCluster(t, `
metadata: {namespace: a, name: db-from-web}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]`, `
metadata: {namespace: b, name: deny}
spec: {podSelector: {}}`, `
metadata: {namespace: b, name: allow-b}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]`)
	cc, err := NewCompiler(c)
	if err != nil {
		t.Fatal(err)
	}
	id := map[string]uint32{}
	for _, p := range cc.pods {
		id[p.key] = p.id
	}
	cc.Changed()
	relabel := func(i int, labels map[string]string) {
		t.Helper()
		p := c.Pods[i]
		p.Labels = labels
		if err := cc.SetPod(p); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name        string
		pod         int
		labels      map[string]string
		recomputed  int
		changed     []string
		description string
	}{
		{"a/client to a class no peer names", 2, map[string]string{"app": "client", "v": "2"}, 1, nil,
			"only a/client; it is selected by nothing, so its entries stay the same"},
		{"a/client to a class db-from-web names", 2, map[string]string{"app": "web", "v": "2"}, 2, []string{"a/db"},
			"a/client and a/db, whose ingress gains the new class"},
		{"a/client back among existing classes", 2, map[string]string{"app": "web"}, 2, []string{"a/db"},
			"a/client, and a/db as the {web, v2} class disappears"},
		{"b/other to a new class", 4, map[string]string{"app": "other", "tier": "y"}, 3, []string{"b/client", "b/other", "b/web"},
			"the pods of namespace b, whose allow-b names every pod of b; none of namespace a"},
	}
	for _, s := range steps {
		before := cc.recomputed
		relabel(s.pod, s.labels)
		if got := cc.recomputed - before; got != s.recomputed {
			t.Errorf("%s: %d endpoints recomputed, want %d (%s)", s.name, got, s.recomputed, s.description)
		}
		var want []uint32
		for _, k := range s.changed {
			want = append(want, id[k])
		}
		slices.Sort(want)
		if got := cc.Changed(); !slices.Equal(got, want) {
			t.Errorf("%s: Changed = %v, want %v", s.name, got, want)
		}
	}
}

// TestLocalityInLargeCluster relabels one pod of a 50-namespace cluster
// and checks that only a namespace's worth of endpoints are recomputed,
// and that a policy change recomputes the pods it selects.
func TestLocalityInLargeCluster(t *testing.T) {
	c := benchCluster(50, 20)
	cc, err := NewCompiler(c)
	if err != nil {
		t.Fatal(err)
	}
	cc.Changed()
	var p Pod
	for _, q := range c.Pods {
		if q.Namespace == "ns-003" && q.Labels["tier"] == "frontend" {
			p = q
			break
		}
	}
	p.Labels = maps.Clone(p.Labels)
	p.Labels["canary"] = "true"
	before := cc.recomputed
	if err := cc.SetPod(p); err != nil {
		t.Fatal(err)
	}
	// The pod's namespace (allow-same-namespace names its every pod),
	// the frontends of its team's other namespace (team-frontend) and the
	// backends of prod namespaces of the team (prod-access) at most.
	got := cc.recomputed - before
	t.Logf("relabel: %d of %d endpoints recomputed, %d changed", got, len(c.Pods), len(cc.Changed()))
	if got > 2*20 {
		t.Errorf("relabeling one pod recomputed %d endpoints, want at most 40", got)
	}
	np := c.Policies[slices.IndexFunc(c.Policies, func(np networkingv1.NetworkPolicy) bool {
		return np.Namespace == "ns-010" && np.Name == "app-0"
	})].DeepCopy()
	np.Spec.Ingress[0].Ports[0] = tcpPort(8443)
	before = cc.recomputed
	if err := cc.SetPolicy(np); err != nil {
		t.Fatal(err)
	}
	// app-0 has two pods in a namespace of 20.
	if got := cc.recomputed - before; got != 2 {
		t.Errorf("changing a policy's port recomputed %d endpoints, want 2 (the pods it selects)", got)
	}
}
