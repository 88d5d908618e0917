package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// bytesRand draws small choices from fuzz input; once the input runs out
// every choice is 0, so any input is a valid cluster.
type bytesRand struct {
	data []byte
}

func (r *bytesRand) intn(n int) int {
	if len(r.data) == 0 || n <= 1 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return int(b) % n
}

func (r *bytesRand) chance(num, den int) bool { return r.intn(den) < num }

func pick[T any](r *bytesRand, xs []T) T { return xs[r.intn(len(xs))] }

// The small alphabets random clusters draw from: few enough values that
// selectors often match and addresses often collide with blocks.
var (
	genLabelKeys   = []string{"app", "tier"}
	genLabelValues = []string{"x", "y"}
	genNamespaces  = []string{"a", "b", "c"}
	genPodIPs      = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.1.0.7", "fd00::1", "fd00::5"}
	genNodeIPs     = [][]string{{"10.1.0.1"}, {"10.2.0.1", "fd00:1::1"}}
	genExternal    = []string{"10.0.0.9", "10.1.5.5", "8.8.8.8", "1.1.1.1", "fd00::9", "2001:db8::1", "10.0.0.7"}
	genPortNames   = []string{"http", "dns", "web"}
	genPortNumbers = []int32{53, 80, 81, 8080}
	genContainer   = []NamedPort{
		{Name: "http", Port: 80}, {Name: "http", Port: 81}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		{Name: "web", Port: 8080}, {Name: "web", Port: 80, Protocol: corev1.ProtocolSCTP},
	}
	genBlocks = []networkingv1.IPBlock{
		{CIDR: "10.0.0.0/24"},
		{CIDR: "10.0.0.0/24", Except: []string{"10.0.0.4/30"}},
		{CIDR: "10.0.0.0/29", Except: []string{"10.0.0.1/32", "10.0.0.2/31"}},
		{CIDR: "10.0.0.5/32"},
		{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}},
		{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}},
		{CIDR: "10.1.0.0/16"},
		{CIDR: "10.2.0.1/32"},
		{CIDR: "8.8.8.0/24"},
		{CIDR: "fd00::/64", Except: []string{"fd00::4/126"}},
		{CIDR: "::/0"},
		{CIDR: "10.0.0.0/30"},
	}
	genProtocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	genProbe     = []struct {
		proto uint8
		port  uint16
	}{{ProtoTCP, 80}, {ProtoTCP, 81}, {ProtoTCP, 53}, {ProtoTCP, 8080}, {ProtoTCP, 82}, {ProtoUDP, 53},
		{ProtoUDP, 80}, {ProtoSCTP, 80}, {ProtoSCTP, 8080}, {1, 0}, {ProtoTCP, 65535}}
)

func genLabels(r *bytesRand) map[string]string {
	out := map[string]string{}
	for _, k := range genLabelKeys {
		if r.chance(2, 3) {
			out[k] = pick(r, genLabelValues)
		}
	}
	return out
}

func genSelector(r *bytesRand) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch r.intn(4) {
	case 1:
		s.MatchLabels = map[string]string{pick(r, genLabelKeys): pick(r, genLabelValues)}
	case 2, 3:
		if r.chance(1, 2) {
			s.MatchLabels = map[string]string{pick(r, genLabelKeys): pick(r, genLabelValues)}
		}
		req := metav1.LabelSelectorRequirement{Key: pick(r, genLabelKeys)}
		switch r.intn(4) {
		case 0:
			req.Operator, req.Values = metav1.LabelSelectorOpIn, []string{pick(r, genLabelValues)}
		case 1:
			req.Operator, req.Values = metav1.LabelSelectorOpNotIn, []string{pick(r, genLabelValues)}
		case 2:
			req.Operator = metav1.LabelSelectorOpExists
		case 3:
			req.Operator = metav1.LabelSelectorOpDoesNotExist
		}
		s.MatchExpressions = []metav1.LabelSelectorRequirement{req}
	}
	return s
}

func genPeers(r *bytesRand) []networkingv1.NetworkPolicyPeer {
	n := r.intn(3)
	var out []networkingv1.NetworkPolicyPeer
	for range n {
		var p networkingv1.NetworkPolicyPeer
		switch r.intn(4) {
		case 0:
			p.PodSelector = genSelector(r)
		case 1:
			p.NamespaceSelector = genSelector(r)
		case 2:
			p.PodSelector, p.NamespaceSelector = genSelector(r), genSelector(r)
		case 3:
			b := pick(r, genBlocks)
			p.IPBlock = &b
		}
		out = append(out, p)
	}
	return out
}

func genPorts(r *bytesRand) []networkingv1.NetworkPolicyPort {
	n := r.intn(3)
	var out []networkingv1.NetworkPolicyPort
	for range n {
		var p networkingv1.NetworkPolicyPort
		if r.chance(2, 3) {
			proto := pick(r, genProtocols)
			p.Protocol = &proto
		}
		switch r.intn(4) {
		case 1, 2:
			v := intstr.FromInt32(pick(r, genPortNumbers))
			p.Port = &v
			if r.chance(1, 3) {
				end := v.IntVal + pick(r, []int32{0, 1, 7, 100, 30000})
				p.EndPort = &end
			}
		case 3:
			v := intstr.FromString(pick(r, genPortNames))
			p.Port = &v
		}
		out = append(out, p)
	}
	return out
}

func genPolicy(r *bytesRand, i int) networkingv1.NetworkPolicy {
	np := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{
		Namespace: pick(r, genNamespaces), Name: fmt.Sprintf("pol%d", i)}}
	np.Spec.PodSelector = *genSelector(r)
	switch r.intn(4) {
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 3:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	for range r.intn(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: genPeers(r), Ports: genPorts(r)})
	}
	for range r.intn(3) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: genPeers(r), Ports: genPorts(r)})
	}
	return np
}

func genPod(r *bytesRand, i int, ip netip.Addr, nodes []Node) Pod {
	p := Pod{Namespace: pick(r, genNamespaces), Name: fmt.Sprintf("p%d", i), Labels: genLabels(r), IP: ip}
	if k := r.intn(len(nodes) + 1); k < len(nodes) {
		p.Node = nodes[k].Name
	}
	seen := map[string]bool{}
	for range r.intn(3) {
		cp := pick(r, genContainer)
		if !seen[cp.Name] {
			seen[cp.Name] = true
			p.Ports = append(p.Ports, cp)
		}
	}
	return p
}

// genCluster is a small random cluster: up to three namespaces, one or two
// nodes, two to seven pods, one to five policies.
func genCluster(r *bytesRand) *Cluster {
	c := &Cluster{}
	for _, ns := range genNamespaces {
		c.Namespaces = append(c.Namespaces, Namespace{Name: ns, Labels: genLabels(r)})
	}
	for i := range 1 + r.intn(2) {
		n := Node{Name: fmt.Sprintf("n%d", i)}
		for _, ip := range genNodeIPs[i] {
			n.IPs = append(n.IPs, netip.MustParseAddr(ip))
		}
		c.Nodes = append(c.Nodes, n)
	}
	used := map[int]bool{}
	for i := range 2 + r.intn(6) {
		k := r.intn(len(genPodIPs))
		for used[k] {
			k = (k + 1) % len(genPodIPs)
		}
		used[k] = true
		c.Pods = append(c.Pods, genPod(r, i, netip.MustParseAddr(genPodIPs[k]), c.Nodes))
	}
	for i := range 1 + r.intn(5) {
		c.Policies = append(c.Policies, genPolicy(r, i))
	}
	return c
}

// probeAddrs is every address worth probing in c: pods, nodes, and
// external ones inside and outside the blocks.
func probeAddrs(c *Cluster) []netip.Addr {
	var out []netip.Addr
	for _, p := range c.Pods {
		out = append(out, p.IP)
	}
	for _, n := range c.Nodes {
		out = append(out, n.IPs...)
	}
	for _, s := range genPodIPs {
		out = append(out, netip.MustParseAddr(s))
	}
	for _, s := range genExternal {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// checkAgainstReference compiles c and compares Allowed with the reference
// on probes between every pair of addresses, returning the number of
// probes.
func checkAgainstReference(t *testing.T, c *Cluster, r *bytesRand) int {
	t.Helper()
	s, err := Compile(c)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	checkSnapshot(t, s)
	ref := newReference(c)
	addrs := probeAddrs(c)
	n := 0
	for _, src := range addrs {
		for _, dst := range addrs {
			for range 2 {
				pr := pick(r, genProbe)
				n++
				got, want := s.Allowed(src, dst, pr.proto, pr.port), ref.allowed(src, dst, pr.proto, pr.port)
				if got != want {
					t.Fatalf("%s -> %s proto %d port %d: Allowed = %v, reference = %v\ncluster: %s\nsnapshot: %s",
						src, dst, pr.proto, pr.port, got, want, dump(c), dump(s))
				}
			}
		}
	}
	return n
}

func seedBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestRandomClustersMatchReference(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	probes := 0
	for seed := range uint64(seeds) {
		r := &bytesRand{data: seedBytes(seed, 4096)}
		c := genCluster(r)
		probes += checkAgainstReference(t, c, r)
	}
	t.Logf("%d clusters, %d probes", seeds, probes)
}

func FuzzCompileMatchesReference(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seedBytes(seed, 256))
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1, 5, 0, 3, 3, 3, 1, 2, 2, 0, 1, 3, 3, 2, 1, 1, 2, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &bytesRand{data: data}
		c := genCluster(r)
		checkAgainstReference(t, c, r)
	})
}
