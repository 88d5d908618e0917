package policy

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// benchCluster is a realistic large cluster: nsCount application
// namespaces of podsPerNS pods (ten apps: three frontend, four backend,
// three database, each with its named ports) spread over 200 nodes, plus
// kube-system (DNS) and monitoring; each application namespace has the 20
// policies of benchPolicies. Namespaces carry team (25 teams) and env.
func benchCluster(nsCount, podsPerNS int) *Cluster {
	c := &Cluster{}
	const nodes = 200
	for k := range nodes {
		c.Nodes = append(c.Nodes, Node{Name: fmt.Sprintf("node-%03d", k),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{172, 16, byte(k >> 8), byte(k&255 + 1)})}})
	}
	g := 0
	addPod := func(ns, name string, lbls map[string]string, ports []NamedPort) {
		node := g % nodes
		c.Pods = append(c.Pods, Pod{Namespace: ns, Name: name, Labels: lbls, Node: c.Nodes[node].Name, Ports: ports,
			IP: netip.AddrFrom4([4]byte{10, byte(244 + (g/nodes)>>8), byte(node), byte((g/nodes)&255 + 2)})})
		g++
	}
	c.Namespaces = append(c.Namespaces, Namespace{Name: "kube-system"}, Namespace{Name: "monitoring"})
	for i := range 2 {
		addPod("kube-system", fmt.Sprintf("coredns-%d", i), map[string]string{"k8s-app": "kube-dns"},
			[]NamedPort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: 53}})
		addPod("monitoring", fmt.Sprintf("prometheus-%d", i), map[string]string{"app": "prometheus"}, nil)
	}
	for i := range nsCount {
		ns := fmt.Sprintf("ns-%03d", i)
		c.Namespaces = append(c.Namespaces, Namespace{Name: ns, Labels: map[string]string{
			"team": fmt.Sprintf("team-%02d", i%25), "env": []string{"prod", "staging", "dev"}[i%3]}})
		for j := range podsPerNS {
			app := j * 10 / podsPerNS
			tier, ports := "frontend", []NamedPort{{Name: "http", Port: 8080}, {Name: "metrics", Port: 9090}}
			switch {
			case app >= 7:
				tier, ports = "db", []NamedPort{{Name: "postgres", Port: 5432}}
			case app >= 3:
				tier, ports = "backend", []NamedPort{{Name: "grpc", Port: 9000}, {Name: "http", Port: 8081},
					{Name: "metrics", Port: 9090}}
			}
			addPod(ns, fmt.Sprintf("app-%d-%d", app, j), map[string]string{
				"app": fmt.Sprintf("app-%d", app), "tier": tier, "pod-template-hash": fmt.Sprintf("h%d%d", i, app)}, ports)
		}
		c.Policies = append(c.Policies, benchPolicies(i, ns)...)
	}
	return c
}

func tcpPort(p int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(p)
	return networkingv1.NetworkPolicyPort{Port: &v}
}

func namedTCP(name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Port: &v}
}

func portRangeTCP(lo, hi int32) networkingv1.NetworkPolicyPort {
	p := tcpPort(lo)
	p.EndPort = &hi
	return p
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

// benchPolicies are the 20 policies of application namespace i: default
// deny both ways, DNS, same namespace, one per app (its callers), scraping
// from monitoring, team-wide frontend and backend access (the backend one
// by named port, per peer pod), prod access by matchExpressions and a
// port range, internet egress with except, an external database range
// and a load-balancer range.
func benchPolicies(i int, ns string) []networkingv1.NetworkPolicy {
	team := fmt.Sprintf("team-%02d", i%25)
	mk := func(name string, podSel *metav1.LabelSelector, types ...networkingv1.PolicyType) networkingv1.NetworkPolicy {
		return networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *podSel, PolicyTypes: types}}
	}
	ingress := func(p *networkingv1.NetworkPolicy, ports []networkingv1.NetworkPolicyPort, from ...networkingv1.NetworkPolicyPeer) {
		p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: from, Ports: ports})
	}
	egress := func(p *networkingv1.NetworkPolicy, ports []networkingv1.NetworkPolicyPort, to ...networkingv1.NetworkPolicyPeer) {
		p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: to, Ports: ports})
	}
	udp := corev1.ProtocolUDP
	dnsUDP := tcpPort(53)
	dnsUDP.Protocol = &udp
	var out []networkingv1.NetworkPolicy

	deny := mk("default-deny", sel(), networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)
	dns := mk("allow-dns", sel())
	egress(&dns, []networkingv1.NetworkPolicyPort{dnsUDP, tcpPort(53)}, networkingv1.NetworkPolicyPeer{
		NamespaceSelector: sel(namespaceNameLabel, "kube-system"), PodSelector: sel("k8s-app", "kube-dns")})
	same := mk("allow-same-namespace", sel())
	ingress(&same, nil, networkingv1.NetworkPolicyPeer{PodSelector: sel()})
	out = append(out, deny, dns, same)
	for app := range 10 {
		p := mk(fmt.Sprintf("app-%d", app), sel("app", fmt.Sprintf("app-%d", app)))
		switch {
		case app < 3:
			ingress(&p, []networkingv1.NetworkPolicyPort{namedTCP("http")},
				networkingv1.NetworkPolicyPeer{PodSelector: sel("app", fmt.Sprintf("app-%d", (app+1)%3))})
		case app < 7:
			ingress(&p, []networkingv1.NetworkPolicyPort{tcpPort(9000), namedTCP("http")},
				networkingv1.NetworkPolicyPeer{PodSelector: sel("tier", "frontend")})
			egress(&p, []networkingv1.NetworkPolicyPort{tcpPort(5432)},
				networkingv1.NetworkPolicyPeer{PodSelector: sel("app", fmt.Sprintf("app-%d", app+4))})
		default:
			ingress(&p, []networkingv1.NetworkPolicyPort{namedTCP("postgres")},
				networkingv1.NetworkPolicyPeer{PodSelector: sel("tier", "backend")})
		}
		out = append(out, p)
	}
	mon := mk("allow-monitoring", sel())
	ingress(&mon, []networkingv1.NetworkPolicyPort{namedTCP("metrics")}, networkingv1.NetworkPolicyPeer{
		NamespaceSelector: sel(namespaceNameLabel, "monitoring"), PodSelector: sel("app", "prometheus")})
	teamFE := mk("team-frontend", sel("tier", "frontend"))
	ingress(&teamFE, []networkingv1.NetworkPolicyPort{tcpPort(8080)}, networkingv1.NetworkPolicyPeer{
		NamespaceSelector: sel("team", team), PodSelector: sel("tier", "frontend")})
	prod := mk("prod-access", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"backend"}}}})
	ingress(&prod, []networkingv1.NetworkPolicyPort{portRangeTCP(9000, 9010)}, networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": team},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod"}}}},
		PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"app-0", "app-1"}},
			{Key: "canary", Operator: metav1.LabelSelectorOpDoesNotExist}}}})
	internet := mk("internet-egress", sel("tier", "frontend"), networkingv1.PolicyTypeEgress)
	egress(&internet, []networkingv1.NetworkPolicyPort{tcpPort(443)}, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{
		CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}}})
	extDB := mk("external-db", sel("tier", "db"), networkingv1.PolicyTypeEgress)
	egress(&extDB, []networkingv1.NetworkPolicyPort{portRangeTCP(5432, 5439)}, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{
		CIDR: fmt.Sprintf("100.%d.%d.0/24", 64+i/256, i%256)}})
	lb := mk("load-balancer", sel("tier", "frontend"))
	ingress(&lb, []networkingv1.NetworkPolicyPort{tcpPort(8080)}, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{
		CIDR: fmt.Sprintf("192.168.%d.0/24", i%256), Except: []string{fmt.Sprintf("192.168.%d.0/28", i%256)}}})
	teamBE := mk("team-backend-egress", sel("tier", "backend"), networkingv1.PolicyTypeEgress)
	egress(&teamBE, []networkingv1.NetworkPolicyPort{namedTCP("http")}, networkingv1.NetworkPolicyPeer{
		NamespaceSelector: sel("team", team), PodSelector: sel("tier", "backend")})
	return append(out, mon, teamFE, prod, internet, extDB, lb, teamBE)
}

func BenchmarkCompile10000Policies50000Pods(b *testing.B) {
	c := benchCluster(500, 100)
	b.ReportAllocs()
	var s *Snapshot
	for b.Loop() {
		var err error
		if s, err = Compile(c); err != nil {
			b.Fatal(err)
		}
	}
	entries := 0
	for _, ep := range s.Endpoints {
		entries += len(ep.Ingress) + len(ep.Egress)
	}
	b.ReportMetric(float64(len(s.IPCache)), "ipcache")
	b.ReportMetric(float64(entries), "entries")
}

// BenchmarkIncrementalPolicyChange changes one policy of the large cluster
// back and forth (the port of ns-007's team-frontend, which admits the
// team's frontends from other namespaces), and reports how many endpoints
// each change recomputes.
func BenchmarkIncrementalPolicyChange(b *testing.B) {
	c := benchCluster(500, 100)
	cc, err := NewCompiler(c)
	if err != nil {
		b.Fatal(err)
	}
	cc.Changed()
	versions := [2]*networkingv1.NetworkPolicy{}
	for i := range c.Policies {
		if c.Policies[i].Namespace == "ns-007" && c.Policies[i].Name == "team-frontend" {
			versions[0] = &c.Policies[i]
		}
	}
	versions[1] = versions[0].DeepCopy()
	versions[1].Spec.Ingress[0].Ports[0] = tcpPort(8443)
	b.ReportAllocs()
	before, n := cc.recomputed, 0
	for b.Loop() {
		n++
		if err := cc.SetPolicy(versions[n%2]); err != nil {
			b.Fatal(err)
		}
		if len(cc.Changed()) == 0 {
			b.Fatal("nothing changed")
		}
	}
	b.ReportMetric(float64(cc.recomputed-before)/float64(n), "recomputed/op")
}

// BenchmarkSnapshot50000Pods is the cost of Snapshot alone on the large
// cluster (after a change, a caller can use Changed and Endpoint instead).
func BenchmarkSnapshot50000Pods(b *testing.B) {
	cc, err := NewCompiler(benchCluster(500, 100))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		cc.Snapshot()
	}
}
