package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
)

// mutate applies one random change to both the model cluster and the
// compiler, and names it.
func mutate(t *testing.T, r *bytesRand, model *Cluster, cc *Compiler, step int) string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	switch r.intn(9) {
	case 0, 1: // relabel, move or re-port a pod
		if len(model.Pods) == 0 {
			return "nothing"
		}
		i := r.intn(len(model.Pods))
		p := model.Pods[i]
		fresh := genPod(r, 0, p.IP, model.Nodes)
		p.Labels, p.Node, p.Ports = fresh.Labels, fresh.Node, fresh.Ports
		model.Pods[i] = p
		must(cc.SetPod(p))
		return "set pod " + p.Name
	case 2: // a new pod, or an existing one on a free address
		var free []netip.Addr
		for _, s := range genPodIPs {
			a := netip.MustParseAddr(s)
			if !slices.ContainsFunc(model.Pods, func(p Pod) bool { return p.IP == a }) {
				free = append(free, a)
			}
		}
		if len(free) == 0 {
			return "nothing"
		}
		p := genPod(r, 100+step, pick(r, free), model.Nodes)
		if len(model.Pods) > 0 && r.chance(1, 2) {
			old := model.Pods[r.intn(len(model.Pods))]
			p.Namespace, p.Name = old.Namespace, old.Name
		}
		model.Pods = slices.DeleteFunc(model.Pods, func(o Pod) bool { return o.Namespace == p.Namespace && o.Name == p.Name })
		model.Pods = append(model.Pods, p)
		must(cc.SetPod(p))
		return "add pod " + p.Name
	case 3:
		if len(model.Pods) == 0 {
			return "nothing"
		}
		i := r.intn(len(model.Pods))
		p := model.Pods[i]
		model.Pods = slices.Delete(model.Pods, i, i+1)
		cc.DeletePod(p.Namespace, p.Name)
		return "delete pod " + p.Name
	case 4:
		i := r.intn(len(model.Namespaces))
		model.Namespaces[i].Labels = genLabels(r)
		must(cc.SetNamespace(model.Namespaces[i]))
		return "relabel namespace " + model.Namespaces[i].Name
	case 5, 6:
		np := genPolicy(r, r.intn(6))
		model.Policies = slices.DeleteFunc(model.Policies, func(o networkingv1.NetworkPolicy) bool {
			return o.Namespace == np.Namespace && o.Name == np.Name
		})
		model.Policies = append(model.Policies, np)
		must(cc.SetPolicy(&np))
		return "set policy " + np.Namespace + "/" + np.Name
	case 7:
		if len(model.Policies) == 0 {
			return "nothing"
		}
		i := r.intn(len(model.Policies))
		np := model.Policies[i]
		model.Policies = slices.Delete(model.Policies, i, i+1)
		cc.DeletePolicy(np.Namespace, np.Name)
		return "delete policy " + np.Namespace + "/" + np.Name
	default: // a node gains or loses an address, appears or goes
		i := r.intn(len(genNodeIPs))
		name := fmt.Sprintf("n%d", i)
		j := slices.IndexFunc(model.Nodes, func(n Node) bool { return n.Name == name })
		if j >= 0 && r.chance(1, 3) {
			model.Nodes = slices.Delete(model.Nodes, j, j+1)
			cc.DeleteNode(name)
			return "delete node " + name
		}
		n := Node{Name: name}
		for _, s := range genNodeIPs[i] {
			if r.chance(2, 3) {
				n.IPs = append(n.IPs, netip.MustParseAddr(s))
			}
		}
		if j >= 0 {
			model.Nodes[j] = n
		} else {
			model.Nodes = append(model.Nodes, n)
		}
		must(cc.SetNode(n))
		return "set node " + name
	}
}

func endpointsByID(s *Snapshot) map[uint32]EndpointPolicy {
	out := map[uint32]EndpointPolicy{}
	for _, ep := range s.Endpoints {
		out[ep.ID] = ep
	}
	return out
}

// TestIncrementalMatchesCompile drives a compiler through random changes
// and after each one compares it with a fresh compile of the same cluster
// (up to numbering), checks that Changed names exactly the endpoints whose
// entries changed and that endpoint IDs stay put.
func TestIncrementalMatchesCompile(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 30
	}
	for seed := range uint64(seeds) {
		r := &bytesRand{data: seedBytes(1000+seed, 8192)}
		model := genCluster(r)
		cc, err := NewCompiler(model)
		if err != nil {
			t.Fatal(err)
		}
		prev := endpointsByID(cc.Snapshot())
		if got := cc.Changed(); len(got) != len(prev) {
			t.Fatalf("seed %d: first Changed = %v, want every endpoint", seed, got)
		}
		ids := map[string]uint32{} // namespace/name -> ID, to check IDs stay
		for step := range 25 {
			what := mutate(t, r, model, cc, step)
			got := cc.Snapshot()
			checkSnapshot(t, got)
			want, err := Compile(model)
			if err != nil {
				t.Fatalf("seed %d step %d (%s): compile: %v", seed, step, what, err)
			}
			if diff := cmp.Diff(canonical(want), canonical(got)); diff != "" {
				t.Fatalf("seed %d step %d (%s): incremental differs from fresh (-fresh +incremental):\n%s",
					seed, step, what, diff)
			}
			now := endpointsByID(got)
			var wantChanged []uint32
			for id, ep := range now {
				if old, ok := prev[id]; !ok || !endpointEqual(old, ep) {
					wantChanged = append(wantChanged, id)
				}
			}
			for id := range prev {
				if _, ok := now[id]; !ok {
					wantChanged = append(wantChanged, id)
				}
			}
			slices.Sort(wantChanged)
			if diff := cmp.Diff(wantChanged, cc.Changed()); diff != "" {
				t.Fatalf("seed %d step %d (%s): Changed (-want +got):\n%s", seed, step, what, diff)
			}
			for _, id := range wantChanged {
				ep, ok := cc.Endpoint(id)
				if want, exists := now[id]; ok != exists || (ok && !endpointEqual(ep, want)) {
					t.Fatalf("seed %d step %d (%s): Endpoint(%d) = %+v, %v; want %+v, %v", seed, step, what, id, ep, ok, want, exists)
				}
			}
			for key, ps := range cc.pods {
				if id, ok := ids[key]; ok && id != ps.id {
					t.Fatalf("seed %d step %d (%s): pod %s changed ID from %d to %d", seed, step, what, key, id, ps.id)
				}
				ids[key] = ps.id
			}
			for key := range ids {
				if cc.pods[key] == nil {
					delete(ids, key)
				}
			}
			prev = now
		}
	}
}
