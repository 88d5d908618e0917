package agent

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-dev/sluice/internal/netlab"
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

// harnessCell is c as the harness probes it.
func (w *world) harnessCell(c cell) netlab.Cell {
	return netlab.Cell{From: w.pods[c.src].Pod, To: w.pods[c.dst].Pod, Port: c.svc}
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
			Namespace: p.ns, Name: p.name, Labels: p.labels, IP: p.IP, Node: nodeName, Ports: ports,
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
		src, dst := w.pods[x.src].IP, w.pods[x.dst].IP
		out[i] = snap.Allowed(src, dst, protoNumber(x.svc), uint16(x.svc.Number))
		if ref := policy.ReferenceAllowed(c, src, dst, protoNumber(x.svc), uint16(x.svc.Number)); ref != out[i] {
			w.t.Errorf("%s: the compiler says allowed=%v, the reference reading %v", x, out[i], ref)
		}
	}
	return out
}

// mismatchTable lays out the cells whose probe disagrees with the
// expectation (netlab.Agrees), one row each; "" when they all agree.
func mismatchTable(cs []cell, want []bool, got []netlab.Result) (string, int) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "  FROM\tTO\tSERVICE\tMODEL\tPACKETS\tDETAIL")
	n := 0
	for i, x := range cs {
		if netlab.Agrees(want[i], got[i]) {
			continue
		}
		n++
		detail := ""
		if got[i].Err != nil {
			detail = got[i].Err.Error()
		}
		_, _ = fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", x.src, x.dst, x.svc, verdictOf(want[i]), got[i].Verdict, detail)
	}
	_ = tw.Flush()
	if n == 0 {
		return "", 0
	}
	return b.String(), n
}

func verdictOf(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
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
	hcs := make([]netlab.Cell, len(cs))
	model := make(map[netlab.Cell]bool, len(cs))
	for i, c := range cs {
		hcs[i] = w.harnessCell(c)
		model[hcs[i]] = want[i]
	}
	opts := netlab.WaitOptions{ProbeTimeout: probeTimeout, Within: matrixDeadline}
	if os.Getenv("SLUICE_MATRIX_DEBUG") != "" {
		opts.OnPass = func(m *netlab.Matrix) {
			table, n := mismatchTable(cs, want, m.Results)
			w.t.Logf("%s: pass %d: %d mismatches\n%s", what, m.Passes, n, table)
		}
	}
	m, err := netlab.WaitMatrix(context.Background(), hcs, func(c netlab.Cell) bool { return model[c] }, opts)
	if err != nil {
		table, _ := mismatchTable(cs, want, m.Results)
		w.t.Errorf("%s: %v:\n%s", what, err, table)
		return len(cs)
	}
	allowed := 0
	for _, ok := range want {
		if ok {
			allowed++
		}
	}
	w.t.Logf("%s: all %d cells agree with the model (%d allowed, %d denied), pass %d, %v",
		what, len(cs), allowed, len(cs)-allowed, m.Passes, m.Elapsed.Round(time.Millisecond))
	return len(cs)
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
