package agent

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-dev/sluice/internal/policy"
)

// cell is one entry of a reachability matrix: a new flow from src to dst
// on a service.
type cell struct {
	src, dst string
	svc      service
}

func (c cell) String() string { return fmt.Sprintf("%s -> %s %s", c.src, c.dst, c.svc) }

// cells is every pod to every pod (itself included) on every service.
func cells(names []string, svcs []service) []cell {
	var out []cell
	for _, s := range names {
		for _, d := range names {
			for _, svc := range svcs {
				out = append(out, cell{s, d, svc})
			}
		}
	}
	return out
}

// probeWorkers bounds the probes in flight: enough that a matrix full of
// drops (each a probeTimeout) takes a few timeouts, not one per cell.
const probeWorkers = 64

// observation is what one probe of a cell saw.
type observation struct {
	v   verdict
	err error
}

// probeCells probes every cell once, in parallel; out[i] is cells[i]'s.
func (w *world) probeCells(cs []cell) []observation {
	out := make([]observation, len(cs))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(probeWorkers, len(cs)) {
		wg.Go(func() {
			for i := range jobs {
				v, err := probeOnce(w.pods[cs[i].src], w.pods[cs[i].dst], cs[i].svc)
				out[i] = observation{v, err}
			}
		})
	}
	for i := range cs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return out
}

// namespaceLabels are the namespaces newWorld creates, with their labels.
var namespaceLabels = map[string]map[string]string{
	"alpha": {"team": "a"},
	"beta":  {"team": "b"},
	"gamma": {"team": "c"},
}

// cluster is the test's cluster as the policy package reads it: the
// namespaces, the pods named (with the addresses CNI gave them, labels and
// container ports), the node, and policies.
func (w *world) cluster(names []string, policies []*networkingv1.NetworkPolicy) *policy.Cluster {
	c := &policy.Cluster{
		Nodes: []policy.Node{{Name: nodeName, IPs: []netip.Addr{netip.MustParseAddr("192.168.250.1")}}},
	}
	for _, name := range slices.Sorted(maps.Keys(namespaceLabels)) {
		c.Namespaces = append(c.Namespaces, policy.Namespace{Name: name, Labels: namespaceLabels[name]})
	}
	for _, name := range names {
		p := w.pods[name]
		var ports []policy.NamedPort
		for _, cp := range p.ports {
			ports = append(ports, policy.NamedPort{Name: cp.Name, Port: cp.ContainerPort, Protocol: cp.Protocol})
		}
		c.Pods = append(c.Pods, policy.Pod{
			Namespace: p.ns, Name: p.name, Labels: p.labels, IP: p.ip, Node: nodeName, Ports: ports,
		})
	}
	for _, np := range policies {
		c.Policies = append(c.Policies, *np.DeepCopy())
	}
	return c
}

// expect is the compiler's verdict for every cell (the oracle), checked
// against the reference reading of the policies.
func (w *world) expect(cs []cell, c *policy.Cluster) []bool {
	w.t.Helper()
	snap, err := policy.Compile(c)
	if err != nil {
		w.t.Fatalf("compile the test's cluster: %v", err)
	}
	out := make([]bool, len(cs))
	for i, x := range cs {
		src, dst := w.pods[x.src].ip, w.pods[x.dst].ip
		out[i] = snap.Allowed(src, dst, x.svc.protoNumber(), uint16(x.svc.port))
		if ref := policy.ReferenceAllowed(c, src, dst, x.svc.protoNumber(), uint16(x.svc.port)); ref != out[i] {
			w.t.Errorf("%s: the compiler says allowed=%v, the reference reading %v", x, out[i], ref)
		}
	}
	return out
}

// mismatchTable lays out the cells whose observation differs from the
// expectation, one row each; "" when they all agree.
func mismatchTable(cs []cell, want []bool, got []observation) (string, int) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "  FROM\tTO\tSERVICE\tMODEL\tPACKETS\tDETAIL")
	n := 0
	for i, x := range cs {
		if (got[i].v == passed) == want[i] && got[i].v != broken {
			continue
		}
		n++
		detail := ""
		if got[i].err != nil {
			detail = got[i].err.Error()
		}
		_, _ = fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", x.src, x.dst, x.svc, verdictOf(want[i]), got[i].v, detail)
	}
	_ = tw.Flush()
	if n == 0 {
		return "", 0
	}
	return b.String(), n
}

func verdictOf(allowed bool) verdict {
	if allowed {
		return passed
	}
	return dropped
}

// matrixDeadline bounds how long the packets may take to agree with the
// model after a change through the API.
const matrixDeadline = 15 * time.Second

// checkMatrix probes the whole matrix until every cell agrees with the
// model of the cluster with policies, or reports the last disagreement as
// a table when the deadline passes. It returns the cells checked.
func (w *world) checkMatrix(what string, names []string, svcs []service, policies []*networkingv1.NetworkPolicy) int {
	w.t.Helper()
	cs := cells(names, svcs)
	want := w.expect(cs, w.cluster(names, policies))
	start := time.Now()
	for pass := 1; ; pass++ {
		got := w.probeCells(cs)
		table, n := mismatchTable(cs, want, got)
		if n == 0 {
			allowed := 0
			for _, ok := range want {
				if ok {
					allowed++
				}
			}
			w.t.Logf("%s: all %d cells agree with the model (%d allowed, %d denied), pass %d, %v",
				what, len(cs), allowed, len(cs)-allowed, pass, time.Since(start).Round(time.Millisecond))
			return len(cs)
		}
		if os.Getenv("SLUICE_MATRIX_DEBUG") != "" {
			w.t.Logf("%s: pass %d: %d mismatches\n%s", what, pass, n, table)
		}
		if time.Since(start) > matrixDeadline {
			w.t.Errorf("%s: %d of %d cells disagree with the model after %v (%d passes):\n%s",
				what, n, len(cs), matrixDeadline, pass, table)
			return len(cs)
		}
	}
}

// createPolicies creates the policies through the API.
func (w *world) createPolicies(nps []*networkingv1.NetworkPolicy) {
	w.t.Helper()
	for _, np := range nps {
		if err := w.c.Create(context.Background(), np); err != nil {
			w.t.Fatalf("create %s/%s: %v", np.Namespace, np.Name, err)
		}
	}
}

// deletePolicies deletes the policies through the API.
func (w *world) deletePolicies(nps []*networkingv1.NetworkPolicy) {
	w.t.Helper()
	for _, np := range nps {
		if err := w.c.Delete(context.Background(), np); err != nil && !apierrors.IsNotFound(err) {
			w.t.Fatalf("delete %s/%s: %v", np.Namespace, np.Name, err)
		}
	}
}

// Builders for the scenarios' policies.

func netpol(namespace, name string, selector map[string]string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selector},
			PolicyTypes: types,
		},
	}
}

func withIngress(np *networkingv1.NetworkPolicy, rules ...networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
	np.Spec.Ingress = append(np.Spec.Ingress, rules...)
	return np
}

func withEgress(np *networkingv1.NetworkPolicy, rules ...networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	np.Spec.Egress = append(np.Spec.Egress, rules...)
	return np
}

// policyPort is a policy port: proto and port (a number or a name), and an
// endPort when end > 0.
func policyPort(proto corev1.Protocol, port any, end int32) networkingv1.NetworkPolicyPort {
	out := networkingv1.NetworkPolicyPort{Protocol: &proto}
	switch p := port.(type) {
	case int:
		v := intstr.FromInt32(int32(p))
		out.Port = &v
	case string:
		v := intstr.FromString(p)
		out.Port = &v
	}
	if end > 0 {
		out.EndPort = &end
	}
	return out
}
