package policy

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

func TestCompileErrors(t *testing.T) {
	withPolicy := func(spec string) func(t *testing.T, c *Cluster) {
		return func(t *testing.T, c *Cluster) {
			c.Policies = append(c.Policies, parsePolicyYAML(t, "metadata: {namespace: a, name: bad}\nspec:\n"+spec))
		}
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, c *Cluster)
		want   string
	}{
		{"pod in missing namespace", func(_ *testing.T, c *Cluster) { c.Pods[0].Namespace = "nope" },
			`pod nope/web: namespace "nope" does not exist`},
		{"duplicate pod IP", func(_ *testing.T, c *Cluster) { c.Pods[1].IP = c.Pods[0].IP },
			"pod a/web: IP 10.0.0.1 already belongs to pod a/db"},
		{"pod on a node's IP", func(_ *testing.T, c *Cluster) { c.Pods[0].IP = netip.MustParseAddr(n1) },
			"pod a/web: IP 192.168.0.1 already belongs to node n1"},
		{"pod without IP", func(_ *testing.T, c *Cluster) { c.Pods[0].IP = netip.Addr{} }, "pod a/web: IP"},
		{"pod listed twice", func(_ *testing.T, c *Cluster) { c.Pods = append(c.Pods, c.Pods[0]) }, "pod a/web listed twice"},
		{"bad container port protocol", func(_ *testing.T, c *Cluster) { c.Pods[0].Ports[0].Protocol = "ICMP" },
			`pod a/web: port "http": protocol "ICMP"`},
		{"node listed twice", func(_ *testing.T, c *Cluster) { c.Nodes = append(c.Nodes, c.Nodes[0]) }, `node "n1" listed twice`},
		{"namespace listed twice", func(_ *testing.T, c *Cluster) { c.Namespaces = append(c.Namespaces, c.Namespaces[0]) },
			`namespace "a" listed twice`},
		{"invalid pod selector", withPolicy("  podSelector: {matchExpressions: [{key: app, operator: In}]}"),
			"policy a/bad: podSelector: "},
		{"invalid peer selector", withPolicy("  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: x, operator: Exists, values: [y]}]}}]}]"),
			"policy a/bad: ingress[0]: peer 0: namespaceSelector: "},
		{"invalid label value", withPolicy("  podSelector: {matchLabels: {app: 'not valid!'}}"), "policy a/bad: podSelector: "},
		{"bad CIDR", withPolicy("  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]"),
			`policy a/bad: egress[0]: peer 0: ipBlock cidr "10.0.0.0/33"`},
		{"except outside cidr", withPolicy("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]"),
			`policy a/bad: ingress[0]: peer 0: ipBlock except "10.1.0.0/24": not a strict subset`},
		{"except equal to cidr", withPolicy("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]"),
			"not a strict subset"},
		{"ipBlock with selector", withPolicy("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]"),
			"policy a/bad: ingress[0]: peer 0: ipBlock can't be combined"},
		{"empty peer", withPolicy("  podSelector: {}\n  ingress: [{from: [{}]}]"), "policy a/bad: ingress[0]: peer 0: empty peer"},
		{"bad protocol", withPolicy("  podSelector: {}\n  ingress: [{ports: [{protocol: ICMP}]}]"), `policy a/bad: ingress[0]: ports[0]: protocol "ICMP"`},
		{"port out of range", withPolicy("  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]"), "ports[0]: port 70000"},
		{"endPort below port", withPolicy("  podSelector: {}\n  ingress: [{ports: [{port: 80, endPort: 79}]}]"), "ports[0]: endPort 79"},
		{"endPort with named port", withPolicy("  podSelector: {}\n  ingress: [{ports: [{port: http, endPort: 90}]}]"), "endPort with named port"},
		{"invalid port name", withPolicy("  podSelector: {}\n  ingress: [{ports: [{port: Not_A_Name}]}]"), `port "Not_A_Name"`},
		{"bad policy type", withPolicy("  podSelector: {}\n  policyTypes: [Sideways]"), `policy a/bad: policyType "Sideways"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := baseCluster(t)
			tc.mutate(t, c)
			_, err := Compile(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestIncrementalErrorsChangeNothing(t *testing.T) {
	c := baseCluster(t, denyAllA)
	cc, err := NewCompiler(c)
	if err != nil {
		t.Fatal(err)
	}
	before := cc.Snapshot()
	cc.Changed()
	bad := c.Pods[0]
	bad.IP = c.Pods[1].IP
	if err := cc.SetPod(bad); err == nil {
		t.Error("SetPod with another pod's IP: no error")
	}
	if err := cc.SetNode(Node{Name: "n3", IPs: []netip.Addr{netip.MustParseAddr(aDB)}}); err == nil {
		t.Error("SetNode with a pod's IP: no error")
	}
	np := parsePolicyYAML(t, "metadata: {namespace: a, name: deny-all}\nspec: {podSelector: {matchLabels: {'a b': c}}}")
	if err := cc.SetPolicy(&np); err == nil {
		t.Error("SetPolicy with an invalid selector: no error")
	}
	if err := cc.DeleteNamespace("a"); err == nil {
		t.Error("DeleteNamespace with pods left: no error")
	}
	if diff := cmp.Diff(canonical(before), canonical(cc.Snapshot())); diff != "" || len(cc.Changed()) > 0 {
		t.Errorf("failed changes changed the snapshot:\n%s", diff)
	}
}

func TestDefault(t *testing.T) {
	np := parsePolicyYAML(t, `
metadata: {namespace: a, name: p}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}, {port: 53, protocol: UDP}]}]
  egress: [{ports: [{}]}]`)
	Default(&np)
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	if want := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}; !slices.Equal(np.Spec.PolicyTypes, want) {
		t.Errorf("policyTypes = %v, want %v", np.Spec.PolicyTypes, want)
	}
	if *np.Spec.Ingress[0].Ports[0].Protocol != tcp || *np.Spec.Ingress[0].Ports[1].Protocol != udp || *np.Spec.Egress[0].Ports[0].Protocol != tcp {
		t.Errorf("protocols not defaulted: %s", dump(np.Spec))
	}
	again := np.DeepCopy()
	Default(again)
	if !reflect.DeepEqual(again, &np) {
		t.Error("Default is not idempotent")
	}
	ingressOnly := parsePolicyYAML(t, "metadata: {name: p}\nspec: {podSelector: {}, egress: []}")
	Default(&ingressOnly)
	if want := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}; !slices.Equal(ingressOnly.Spec.PolicyTypes, want) {
		t.Errorf("policyTypes without egress rules = %v, want %v", ingressOnly.Spec.PolicyTypes, want)
	}
	explicit := parsePolicyYAML(t, "metadata: {name: p}\nspec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}")
	Default(&explicit)
	if want := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}; !slices.Equal(explicit.Spec.PolicyTypes, want) {
		t.Errorf("explicit policyTypes changed to %v", explicit.Spec.PolicyTypes)
	}
}

func TestCompileDoesNotModifyInput(t *testing.T) {
	c := baseCluster(t, "metadata: {namespace: a, name: p}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}")
	before := dump(c)
	if _, err := Compile(c); err != nil {
		t.Fatal(err)
	}
	if after := dump(c); after != before {
		t.Errorf("Compile modified its input:\n%s", cmp.Diff(before, after))
	}
}

func TestCompileIsDeterministic(t *testing.T) {
	for seed := range uint64(30) {
		c := genCluster(&bytesRand{data: seedBytes(seed, 4096)})
		want, err := Compile(c)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 1))
		rng.Shuffle(len(c.Pods), func(i, j int) { c.Pods[i], c.Pods[j] = c.Pods[j], c.Pods[i] })
		rng.Shuffle(len(c.Policies), func(i, j int) { c.Policies[i], c.Policies[j] = c.Policies[j], c.Policies[i] })
		rng.Shuffle(len(c.Nodes), func(i, j int) { c.Nodes[i], c.Nodes[j] = c.Nodes[j], c.Nodes[i] })
		got, err := Compile(c)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("seed %d: shuffled input compiles differently:\n%s", seed, cmp.Diff(dump(want), dump(got)))
		}
	}
}

// TestSnapshotEntries pins the exact entries of small cases: what a deny-
// all, an allow-all, a port range and the world look like to the datapath.
func TestSnapshotEntries(t *testing.T) {
	c := baseCluster(t, denyAllA, `
metadata: {namespace: b, name: p}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 8000, endPort: 8080}, {port: 8080, protocol: UDP}]
  - from: [{podSelector: {matchLabels: {app: client}}}]
  - from: [{ipBlock: {cidr: 8.8.0.0/16, except: [8.8.8.0/24]}}]
    ports: [{port: 8000, endPort: 9000}]`, `
metadata: {namespace: b, name: open}
spec:
  podSelector: {matchLabels: {app: other}}
  ingress: [{}]`)
	s, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	classOf := func(ip string) Class { return s.classOf(netip.MustParseAddr(ip)) }
	ep := func(ip string) EndpointPolicy {
		e, ok := EntriesFor(s, netip.MustParseAddr(ip))
		if !ok {
			t.Fatalf("no endpoint for %s", ip)
		}
		return e
	}
	all := func(c Class) Entry { return Entry{Class: c, Proto: ProtoAny} }
	tcp := func(c Class, port uint16, bits uint8) Entry {
		return Entry{Class: c, Proto: ProtoTCP, Port: port, PortPrefixLen: bits}
	}

	// Deny-all: isolated both ways, only its own node gets in. IDs follow
	// namespace/name: a/client, a/db, a/web.
	if got, want := ep(aWeb), (EndpointPolicy{ID: 3, IP: netip.MustParseAddr(aWeb), IngressIsolated: true, EgressIsolated: true,
		Ingress: []Entry{all(classOf(n1))}}); !reflect.DeepEqual(got, want) {
		t.Errorf("deny-all endpoint = %+v, want %+v", got, want)
	}
	// Allow-all: one ClassAny entry, and no own-node entry next to it.
	if got := ep(bOther).Ingress; !reflect.DeepEqual(got, []Entry{all(ClassAny)}) {
		t.Errorf("allow-all ingress = %+v", got)
	}
	// 8000-8080 is 8000/10 (8000-8063), 8064/12 (8064-8079), 8080/16.
	// Those TCP ports are open to every class, so the block's entries
	// need only reach 8081-9000 and may spill into 8000-8080: 8064/9
	// (8064-8191), 8192/7 (-8703), 8704/8 (-8959), 8960/11 (-8991),
	// 8992/13 (-8999), 9000/16; six instead of eleven for 8081-9000 alone.
	ext := classOf("8.8.1.1")
	want := []Entry{
		tcp(ClassAny, 8000, 10), tcp(ClassAny, 8064, 12), tcp(ClassAny, 8080, 16),
		{Class: ClassAny, Proto: ProtoUDP, Port: 8080, PortPrefixLen: 16},
		all(classOf(n2)), all(classOf(bClient)),
		tcp(ext, 8064, 9), tcp(ext, 8192, 7), tcp(ext, 8704, 8), tcp(ext, 8960, 11), tcp(ext, 8992, 13), tcp(ext, 9000, 16),
	}
	sortEntries(want)
	if got := ep(bWeb).Ingress; !reflect.DeepEqual(got, want) {
		t.Errorf("b/web ingress:\n got %+v\nwant %+v", got, want)
	}
	if classOf(aClient) != classOf(bClient) && classOf(aClient) == classOf(aDB) {
		t.Error("pods of different labels share a class")
	}
	for _, tc := range []struct {
		ip   string
		want Class
	}{{"8.8.8.8", ClassWorld}, {"9.9.9.9", ClassWorld}, {"8.8.0.1", ext}} {
		if got := classOf(tc.ip); got != tc.want {
			t.Errorf("class of %s = %d, want %d", tc.ip, got, tc.want)
		}
	}
	// The ipcache: 0/0, the block and its except, six pods, two nodes.
	if len(s.IPCache) != 11 {
		t.Errorf("ipcache has %d entries, want 11:\n%s", len(s.IPCache), dump(s.IPCache))
	}
	if _, ok := EntriesFor(s, netip.MustParseAddr(n1)); ok {
		t.Error("EntriesFor found an endpoint for a node")
	}
}

// TestClasses pins the class partition: pods split by namespace and
// labels, not by node; nodes apart from each other; ipBlock membership
// splitting pods and external space.
func TestClasses(t *testing.T) {
	c := baseCluster(t, `
metadata: {namespace: a, name: p}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/30}}, {ipBlock: {cidr: 192.168.0.2/32}}]}]`)
	c.Pods = append(c.Pods, Pod{Namespace: "a", Name: "client2", IP: netip.MustParseAddr("10.0.0.4"), Node: "n1",
		Labels: map[string]string{"app": "client"}})
	c.Pods = append(c.Pods, Pod{Namespace: "a", Name: "client3", IP: netip.MustParseAddr("10.0.0.5"), Node: "n2",
		Labels: map[string]string{"app": "client"}})
	s, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	classOf := func(ip string) Class { return s.classOf(netip.MustParseAddr(ip)) }
	same := [][2]string{{"10.0.0.4", "10.0.0.5"}, {"10.0.200.1", "8.8.8.8"}}
	apart := [][2]string{{aClient, "10.0.0.4"}, {aClient, bClient}, {n1, n2}, {"10.0.0.0", "8.8.8.8"}, {aWeb, aDB}}
	for _, p := range same {
		if classOf(p[0]) != classOf(p[1]) {
			t.Errorf("%s and %s: different classes", p[0], p[1])
		}
	}
	for _, p := range apart {
		if classOf(p[0]) == classOf(p[1]) {
			t.Errorf("%s and %s: same class", p[0], p[1])
		}
	}
}

func TestCoverRange(t *testing.T) {
	tests := []struct {
		lo, hi uint32
		want   []portPrefix
	}{
		{80, 80, []portPrefix{{80, 16}}},
		{0, 65535, []portPrefix{{0, 0}}},
		{80, 81, []portPrefix{{80, 15}}},
		{81, 82, []portPrefix{{81, 16}, {82, 16}}},
		{32768, 65535, []portPrefix{{32768, 1}}},
		{1, 65535, []portPrefix{{1, 16}, {2, 15}, {4, 14}, {8, 13}, {16, 12}, {32, 11}, {64, 10}, {128, 9}, {256, 8},
			{512, 7}, {1024, 6}, {2048, 5}, {4096, 4}, {8192, 3}, {16384, 2}, {32768, 1}}},
	}
	for _, tc := range tests {
		if got := coverRange(portRange{tc.lo, tc.hi}, nil); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("cover(%d-%d) = %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
	// Exactness and minimality against a brute force (dynamic programming
	// over aligned blocks) on random small ranges.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		lo := rng.Uint32N(1024)
		hi := lo + rng.Uint32N(300)
		got := coverRange(portRange{lo, hi}, nil)
		covered := map[uint32]int{}
		for _, p := range got {
			for port := p.first(); port <= p.last(); port++ {
				covered[port]++
			}
		}
		for port := lo; port <= hi; port++ {
			if covered[port] != 1 {
				t.Fatalf("cover(%d-%d) covers %d %d times", lo, hi, port, covered[port])
			}
		}
		if len(covered) != int(hi-lo+1) {
			t.Fatalf("cover(%d-%d) covers ports outside", lo, hi)
		}
		if fewest := minimalCover(lo, hi); len(got) != fewest {
			t.Fatalf("cover(%d-%d) has %d prefixes, minimum is %d", lo, hi, len(got), fewest)
		}
	}
}

// minimalCover is the fewest aligned blocks partitioning lo..hi, by
// dynamic programming.
func minimalCover(lo, hi uint32) int {
	best := make([]int, hi-lo+2) // best[i]: fewest blocks for lo+i..hi
	for i := int(hi - lo); i >= 0; i-- {
		start := lo + uint32(i)
		best[i] = 1 << 30
		for size := uint32(1); start%size == 0 && start+size-1 <= hi; size <<= 1 {
			best[i] = min(best[i], 1+best[i+int(size)])
		}
	}
	return best[0]
}

func TestCoverWithDontCare(t *testing.T) {
	// The class needs 80-81, every class already has 80: either one /15
	// (80-81) or 81/16; both are one entry.
	if got := coverWithDontCare([]portRange{{80, 81}}, []portRange{{80, 80}}); len(got) != 1 {
		t.Errorf("got %v, want one prefix", got)
	}
	// Fully covered by ClassAny: nothing.
	if got := coverWithDontCare([]portRange{{80, 90}}, []portRange{{0, 1000}}); len(got) != 0 {
		t.Errorf("got %v, want none", got)
	}
	// 1-65535 alone takes 16 prefixes; with port 0 free, one.
	if got := coverWithDontCare([]portRange{{1, 65535}}, []portRange{{0, 0}}); !reflect.DeepEqual(got, []portPrefix{{0, 0}}) {
		t.Errorf("got %v, want 0/0", got)
	}
}
