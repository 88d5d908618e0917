package policy

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// Addresses of the base cluster of the semantics tests.
const (
	aWeb    = "10.0.0.1" // a/web, app=web, node n1, port http 80/TCP
	aDB     = "10.0.0.2" // a/db, app=db, node n1, port pg 5432/TCP
	aClient = "10.0.0.3" // a/client, app=client, node n2
	bWeb    = "10.0.1.1" // b/web, app=web, node n2, port http 8080/TCP
	bOther  = "10.0.1.2" // b/other, app=other tier=x, no node
	bClient = "10.0.1.3" // b/client, app=client, node n1
	n1      = "192.168.0.1"
	n2      = "192.168.0.2"
	ext     = "8.8.8.8"
	extNear = "10.0.200.1" // external, next to the pods
)

// baseCluster is two namespaces (a: team=blue, b: team=red), six pods and
// two nodes, plus the given policies (YAML).
func baseCluster(t *testing.T, policies ...string) *Cluster {
	t.Helper()
	pod := func(ns, name, ip, node string, labels map[string]string, ports ...NamedPort) Pod {
		return Pod{Namespace: ns, Name: name, IP: netip.MustParseAddr(ip), Node: node, Labels: labels, Ports: ports}
	}
	c := &Cluster{
		Namespaces: []Namespace{{Name: "a", Labels: map[string]string{"team": "blue"}}, {Name: "b", Labels: map[string]string{"team": "red"}}},
		Nodes: []Node{{Name: "n1", IPs: []netip.Addr{netip.MustParseAddr(n1)}},
			{Name: "n2", IPs: []netip.Addr{netip.MustParseAddr(n2)}}},
		Pods: []Pod{
			pod("a", "web", aWeb, "n1", map[string]string{"app": "web"}, NamedPort{Name: "http", Port: 80}),
			pod("a", "db", aDB, "n1", map[string]string{"app": "db"}, NamedPort{Name: "pg", Port: 5432, Protocol: "TCP"}),
			pod("a", "client", aClient, "n2", map[string]string{"app": "client"}),
			pod("b", "web", bWeb, "n2", map[string]string{"app": "web"}, NamedPort{Name: "http", Port: 8080}),
			pod("b", "other", bOther, "", map[string]string{"app": "other", "tier": "x"}),
			pod("b", "client", bClient, "n1", map[string]string{"app": "client"}),
		},
	}
	for _, p := range policies {
		c.Policies = append(c.Policies, parsePolicyYAML(t, p))
	}
	return c
}

func parsePolicyYAML(t *testing.T, s string) networkingv1.NetworkPolicy {
	t.Helper()
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(s), &np); err != nil {
		t.Fatalf("policy %q: %v", s, err)
	}
	return np
}

// probe is "src dst proto/port" and the expected verdict.
type probe struct {
	what string
	want bool
}

func allow(what string) probe { return probe{what, true} }
func deny(what string) probe  { return probe{what, false} }

func parseProbe(t *testing.T, s string) (src, dst netip.Addr, proto uint8, port uint16) {
	t.Helper()
	f := strings.Fields(s)
	if len(f) != 3 {
		t.Fatalf("probe %q: want \"src dst proto/port\"", s)
	}
	src, dst = netip.MustParseAddr(f[0]), netip.MustParseAddr(f[1])
	name, num, _ := strings.Cut(f[2], "/")
	protos := map[string]uint8{"tcp": ProtoTCP, "udp": ProtoUDP, "sctp": ProtoSCTP, "icmp": 1}
	proto, ok := protos[name]
	if !ok {
		t.Fatalf("probe %q: unknown protocol", s)
	}
	if num != "" {
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil {
			t.Fatalf("probe %q: %v", s, err)
		}
		port = uint16(n)
	}
	return src, dst, proto, port
}

type semanticsCase struct {
	name     string
	cluster  func(t *testing.T) *Cluster
	policies []string // for baseCluster when cluster is nil
	probes   []probe
}

func runSemantics(t *testing.T, cases []semanticsCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *Cluster
			if tc.cluster != nil {
				c = tc.cluster(t)
			} else {
				c = baseCluster(t, tc.policies...)
			}
			s, err := Compile(c)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			checkSnapshot(t, s)
			for _, p := range tc.probes {
				src, dst, proto, port := parseProbe(t, p.what)
				if got := s.Allowed(src, dst, proto, port); got != p.want {
					t.Errorf("%s: Allowed = %v, want %v", p.what, got, p.want)
				}
				if got := ReferenceAllowed(c, src, dst, proto, port); got != p.want {
					t.Errorf("%s: ReferenceAllowed = %v, want %v", p.what, got, p.want)
				}
			}
		})
	}
}

const denyAllA = `
metadata: {namespace: a, name: deny-all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
`

func TestSemanticsIsolation(t *testing.T) {
	runSemantics(t, []semanticsCase{{
		name: "open/no-policies",
		probes: []probe{
			allow(aClient + " " + aWeb + " tcp/80"), allow(aWeb + " " + ext + " udp/53"),
			allow(ext + " " + aDB + " icmp"), allow(n2 + " " + aWeb + " sctp/1"),
		},
	}, {
		name: "open/unselected-pods",
		policies: []string{`
metadata: {namespace: a, name: db}
spec: {podSelector: {matchLabels: {app: db}}}`},
		probes: []probe{
			allow(ext + " " + aWeb + " tcp/80"), deny(ext + " " + aDB + " tcp/5432"),
			allow(aDB + " " + ext + " tcp/443"), // egress not isolated
		},
	}, {
		name: "policy-types/omitted-ingress-only",
		policies: []string{`
metadata: {namespace: a, name: p}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]`},
		probes: []probe{
			deny(ext + " " + aDB + " tcp/5432"), allow(aClient + " " + aDB + " tcp/5432"),
			allow(aDB + " " + ext + " tcp/443"),
		},
	}, {
		name: "policy-types/omitted-with-egress-rules",
		policies: []string{`
metadata: {namespace: a, name: p}
spec:
  podSelector: {}
  egress: [{to: [{ipBlock: {cidr: 8.8.8.0/24}}]}]`},
		probes: []probe{
			deny(ext + " " + aWeb + " tcp/80"), // ingress isolated, no ingress rules
			allow(aWeb + " " + ext + " tcp/443"), deny(aWeb + " 1.1.1.1 tcp/443"),
		},
	}, {
		name: "policy-types/egress-only-ignores-ingress-rules",
		policies: []string{`
metadata: {namespace: a, name: p}
spec:
  podSelector: {}
  policyTypes: [Egress]
  ingress: [{from: [{ipBlock: {cidr: 1.1.1.1/32}}]}]`},
		probes: []probe{
			allow(ext + " " + aWeb + " tcp/80"), deny(aWeb + " " + ext + " tcp/80"),
			deny(aWeb + " " + aDB + " tcp/5432"),
		},
	}, {
		name:     "deny-all/both-directions",
		policies: []string{denyAllA},
		probes: []probe{
			deny(aClient + " " + aWeb + " tcp/80"), deny(aWeb + " " + aClient + " icmp"),
			deny(bWeb + " " + aWeb + " tcp/80"), deny(aWeb + " " + bWeb + " tcp/8080"),
			deny(ext + " " + aDB + " tcp/5432"), allow(bWeb + " " + bOther + " tcp/1"),
		},
	}, {
		name: "deny-all/explicit-empty-list",
		policies: []string{`
metadata: {namespace: a, name: p}
spec:
  podSelector: {}
  ingress: []`},
		probes: []probe{deny(aClient + " " + aWeb + " tcp/80"), allow(aWeb + " " + bWeb + " tcp/8080")},
	}, {
		name: "allow-all/empty-rule",
		policies: []string{denyAllA, `
metadata: {namespace: a, name: allow}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{}]
  egress: [{}]`},
		probes: []probe{
			allow(ext + " " + aWeb + " icmp"), allow(aWeb + " " + ext + " sctp/9"),
			allow(bOther + " " + aDB + " udp/65535"), allow(aClient + " " + aWeb + " tcp/80"),
		},
	}})
}

func TestSemanticsSelectors(t *testing.T) {
	ingressFrom := func(peer string) string {
		return `
metadata: {namespace: a, name: p}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [` + peer + `]}]`
	}
	isolate := func(sel string) string {
		return `
metadata: {namespace: a, name: p}
spec:
  podSelector: ` + sel + `
  ingress: []`
	}
	runSemantics(t, []semanticsCase{{
		name:     "pod-selector/own-namespace-only",
		policies: []string{isolate("{matchLabels: {app: web}}")},
		probes: []probe{
			deny(ext + " " + aWeb + " tcp/80"), allow(ext + " " + bWeb + " tcp/8080"), allow(ext + " " + aDB + " tcp/5432"),
		},
	}, {
		name:     "pod-selector/empty-selects-namespace",
		policies: []string{isolate("{}")},
		probes: []probe{
			deny(ext + " " + aWeb + " tcp/80"), deny(ext + " " + aDB + " tcp/5432"), allow(ext + " " + bWeb + " tcp/8080"),
		},
	}, {
		name:     "label-selectors/in",
		policies: []string{isolate("{matchExpressions: [{key: app, operator: In, values: [db, client]}]}")},
		probes: []probe{
			deny(ext + " " + aDB + " tcp/1"), deny(ext + " " + aClient + " tcp/1"), allow(ext + " " + aWeb + " tcp/1"),
		},
	}, {
		name:     "label-selectors/notin",
		policies: []string{isolate("{matchExpressions: [{key: app, operator: NotIn, values: [web]}]}")},
		probes: []probe{
			allow(ext + " " + aWeb + " tcp/1"), deny(ext + " " + aDB + " tcp/1"), deny(ext + " " + aClient + " tcp/1"),
		},
	}, {
		name:     "label-selectors/exists",
		policies: []string{ingressFrom("{namespaceSelector: {}, podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}")},
		probes:   []probe{allow(bOther + " " + aWeb + " tcp/80"), deny(bWeb + " " + aWeb + " tcp/80")},
	}, {
		name:     "label-selectors/doesnotexist",
		policies: []string{ingressFrom("{namespaceSelector: {}, podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}")},
		probes:   []probe{deny(bOther + " " + aWeb + " tcp/80"), allow(bWeb + " " + aWeb + " tcp/80")},
	}, {
		name: "label-selectors/labels-and-expressions",
		policies: []string{ingressFrom(
			"{namespaceSelector: {}, podSelector: {matchLabels: {app: other}, matchExpressions: [{key: tier, operator: NotIn, values: [y]}]}}")},
		probes: []probe{allow(bOther + " " + aWeb + " tcp/80"), deny(bClient + " " + aWeb + " tcp/80")},
	}, {
		name:     "peer-pods/own-namespace",
		policies: []string{ingressFrom("{podSelector: {matchLabels: {app: client}}}")},
		probes: []probe{
			allow(aClient + " " + aWeb + " tcp/80"), deny(bClient + " " + aWeb + " tcp/80"), deny(aDB + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "peer-pods/empty",
		policies: []string{ingressFrom("{podSelector: {}}")},
		probes: []probe{
			allow(aClient + " " + aWeb + " tcp/80"), allow(aDB + " " + aWeb + " udp/9"), deny(bClient + " " + aWeb + " tcp/80"),
			deny(n2 + " " + aWeb + " tcp/80"), deny(extNear + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "peer-namespaces/matching",
		policies: []string{ingressFrom("{namespaceSelector: {matchLabels: {team: red}}}")},
		probes: []probe{
			allow(bOther + " " + aWeb + " tcp/80"), allow(bClient + " " + aWeb + " tcp/80"), deny(aClient + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "peer-namespaces/empty-is-every-pod",
		policies: []string{ingressFrom("{namespaceSelector: {}}")},
		probes: []probe{
			allow(bOther + " " + aWeb + " tcp/80"), allow(aClient + " " + aWeb + " tcp/80"),
			deny(n2 + " " + aWeb + " tcp/80"), deny(ext + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "peer-both",
		policies: []string{ingressFrom("{namespaceSelector: {matchLabels: {team: red}}, podSelector: {matchLabels: {app: client}}}")},
		probes: []probe{
			allow(bClient + " " + aWeb + " tcp/80"), deny(bOther + " " + aWeb + " tcp/80"), deny(aClient + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "namespace-name",
		policies: []string{ingressFrom("{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: b}}}")},
		probes:   []probe{allow(bOther + " " + aWeb + " tcp/80"), deny(aClient + " " + aWeb + " tcp/80")},
	}})
}

func TestSemanticsIPBlocks(t *testing.T) {
	ingressFrom := func(peer string) string {
		return `
metadata: {namespace: a, name: p}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [` + peer + `]}]`
	}
	runSemantics(t, []semanticsCase{{
		name:     "ip-block/except",
		policies: []string{ingressFrom("{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24]}}")},
		probes: []probe{
			allow(extNear + " " + aWeb + " tcp/80"), allow(aClient + " " + aWeb + " tcp/80"),
			deny(bClient + " " + aWeb + " tcp/80"), deny("10.0.1.200 " + aWeb + " tcp/80"), deny(ext + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "ip-block/selects-a-pod",
		policies: []string{ingressFrom("{ipBlock: {cidr: 10.0.0.3/32}}")},
		probes:   []probe{allow(aClient + " " + aWeb + " tcp/80"), deny(aDB + " " + aWeb + " tcp/80")},
	}, {
		name:     "ip-block/except-a-pod",
		policies: []string{ingressFrom("{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.3/32]}}")},
		probes:   []probe{deny(aClient + " " + aWeb + " tcp/80"), allow(aDB + " " + aWeb + " tcp/80")},
	}, {
		name:     "ip-block/selects-nodes",
		policies: []string{ingressFrom("{ipBlock: {cidr: 192.168.0.0/24}}")},
		probes:   []probe{allow(n2 + " " + aWeb + " tcp/80"), allow("192.168.0.99 " + aWeb + " tcp/80")},
	}, {
		name: "ip-block/egress-to-pods",
		policies: []string{`
metadata: {namespace: a, name: p}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.2/32]}}]}]`},
		probes: []probe{
			allow(aWeb + " " + bWeb + " tcp/8080"), deny(aWeb + " " + bOther + " tcp/80"), deny(aWeb + " " + aDB + " tcp/5432"),
			allow(aWeb + " 10.0.1.99 udp/53"),
		},
	}, {
		name:     "external/not-selected-by-pod-selectors",
		policies: []string{ingressFrom("{namespaceSelector: {}}"), strings.Replace(ingressFrom("{podSelector: {}}"), "name: p", "name: q", 1)},
		probes:   []probe{deny(ext + " " + aWeb + " tcp/80"), deny(extNear + " " + aWeb + " tcp/80")},
	}, {
		name:     "external/world",
		policies: []string{ingressFrom("{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}")},
		probes: []probe{
			allow(ext + " " + aWeb + " tcp/80"), deny(extNear + " " + aWeb + " tcp/80"), allow(n2 + " " + aWeb + " tcp/80"),
		},
	}})
}

func TestSemanticsPorts(t *testing.T) {
	webFrom := func(ports string) string {
		return `
metadata: {namespace: a, name: p}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {}}], ports: ` + ports + `}]`
	}
	egressFromClient := func(to, ports string) string {
		return `
metadata: {namespace: a, name: p}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{to: ` + to + `, ports: ` + ports + `}]`
	}
	runSemantics(t, []semanticsCase{{
		name:     "rule-union/policies",
		policies: []string{webFrom("[{port: 80}]"), strings.Replace(webFrom("[{port: 53, protocol: UDP}]"), "name: p", "name: q", 1)},
		probes: []probe{
			allow(aClient + " " + aWeb + " tcp/80"), allow(aDB + " " + aWeb + " udp/53"),
			deny(aClient + " " + aWeb + " udp/80"), deny(aDB + " " + aWeb + " tcp/53"),
		},
	}, {
		name: "rule-union/peers-and-ports",
		policies: []string{`
metadata: {namespace: a, name: p}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}, {ipBlock: {cidr: 8.8.8.8/32}}]
    ports: [{port: 80}, {port: 443}]
  - from: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 9, protocol: UDP}]`},
		probes: []probe{
			allow(aClient + " " + aWeb + " tcp/443"), allow(ext + " " + aWeb + " tcp/80"), deny(ext + " " + aWeb + " udp/9"),
			allow(aDB + " " + aWeb + " udp/9"), deny(aDB + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "ports/default-tcp",
		policies: []string{webFrom("[{port: 80}]")},
		probes:   []probe{allow(aClient + " " + aWeb + " tcp/80"), deny(aClient + " " + aWeb + " udp/80"), deny(aClient + " " + aWeb + " sctp/80")},
	}, {
		name:     "ports/udp-sctp",
		policies: []string{webFrom("[{port: 53, protocol: UDP}, {port: 80, protocol: SCTP}]")},
		probes: []probe{
			allow(aClient + " " + aWeb + " udp/53"), allow(aClient + " " + aWeb + " sctp/80"),
			deny(aClient + " " + aWeb + " tcp/53"), deny(aClient + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "ports/protocol-only",
		policies: []string{webFrom("[{protocol: UDP}]")},
		probes:   []probe{allow(aClient + " " + aWeb + " udp/1"), allow(aClient + " " + aWeb + " udp/65535"), deny(aClient + " " + aWeb + " tcp/80")},
	}, {
		name:     "ports/end-port",
		policies: []string{webFrom("[{port: 8000, endPort: 8080}]")},
		probes: []probe{
			deny(aClient + " " + aWeb + " tcp/7999"), allow(aClient + " " + aWeb + " tcp/8000"), allow(aClient + " " + aWeb + " tcp/8042"),
			allow(aClient + " " + aWeb + " tcp/8080"), deny(aClient + " " + aWeb + " tcp/8081"), deny(aClient + " " + aWeb + " udp/8000"),
		},
	}, {
		name:     "no-ports/every-protocol",
		policies: []string{webFrom("[]")},
		probes:   []probe{allow(aClient + " " + aWeb + " icmp"), allow(aClient + " " + aWeb + " sctp/9"), allow(aClient + " " + aWeb + " udp/7")},
	}, {
		name:     "no-ports/icmp-needs-no-ports",
		policies: []string{webFrom("[{protocol: TCP}, {protocol: UDP}, {protocol: SCTP}]")},
		probes:   []probe{deny(aClient + " " + aWeb + " icmp"), allow(aClient + " " + aWeb + " tcp/1")},
	}, {
		name: "named-ingress/own-ports",
		policies: []string{`
metadata: {namespace: a, name: p}
spec:
  podSelector: {}
  ingress: [{ports: [{port: http}]}]`},
		probes: []probe{
			allow(aClient + " " + aWeb + " tcp/80"), deny(aClient + " " + aWeb + " tcp/8080"),
			deny(aClient + " " + aDB + " tcp/80"), deny(aClient + " " + aDB + " tcp/5432"), // db has no port named http
		},
	}, {
		name:     "named-ingress/protocol-must-match",
		policies: []string{webFrom("[{port: http, protocol: UDP}]")},
		probes:   []probe{deny(aClient + " " + aWeb + " tcp/80"), deny(aClient + " " + aWeb + " udp/80")},
	}, {
		name:     "named-egress/peer-ports",
		policies: []string{egressFromClient("[{namespaceSelector: {}}]", "[{port: http}]")},
		probes: []probe{
			allow(aClient + " " + aWeb + " tcp/80"), deny(aClient + " " + aWeb + " tcp/8080"),
			allow(aClient + " " + bWeb + " tcp/8080"), deny(aClient + " " + bWeb + " tcp/80"), deny(aClient + " " + aDB + " tcp/80"),
		},
	}, {
		name:     "named-egress/never-non-pods",
		policies: []string{egressFromClient("[{ipBlock: {cidr: 0.0.0.0/0}}]", "[{port: http}]")},
		probes: []probe{
			allow(aClient + " " + aWeb + " tcp/80"), deny(aClient + " " + ext + " tcp/80"),
			deny(aClient + " " + n1 + " tcp/80"), deny(aClient + " " + aDB + " tcp/5432"),
		},
	}, {
		name:     "named-egress/no-peers",
		policies: []string{egressFromClient("[]", "[{port: http}, {port: 53, protocol: UDP}]")},
		probes: []probe{
			allow(aClient + " " + bWeb + " tcp/8080"), deny(aClient + " " + ext + " tcp/80"),
			allow(aClient + " " + ext + " udp/53"), deny(aClient + " " + ext + " tcp/53"),
		},
	}})
}

func TestSemanticsSpecialPaths(t *testing.T) {
	runSemantics(t, []semanticsCase{{
		name: "both-ends",
		policies: []string{`
metadata: {namespace: a, name: web-no-egress}
spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}`, `
metadata: {namespace: a, name: db-from-web}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]`},
		probes: []probe{
			deny(aWeb + " " + aDB + " tcp/5432"), deny(aClient + " " + aDB + " tcp/5432"), allow(aDB + " " + aWeb + " tcp/80"),
		},
	}, {
		name:     "self",
		policies: []string{denyAllA},
		probes:   []probe{allow(aWeb + " " + aWeb + " tcp/80"), allow(aDB + " " + aDB + " icmp")},
	}, {
		name: "own-node",
		policies: []string{denyAllA, `
metadata: {namespace: b, name: deny-all}
spec: {podSelector: {}}`},
		probes: []probe{
			allow(n1 + " " + aWeb + " tcp/10250"), allow(n1 + " " + aDB + " icmp"), deny(n2 + " " + aWeb + " tcp/80"),
			allow(n2 + " " + aClient + " tcp/8080"), deny(aWeb + " " + n1 + " tcp/10250"),
			allow(n1 + " " + bClient + " udp/1"), deny(n1 + " " + bOther + " tcp/80"), // b/other names no node
		},
	}, {
		name:    "ipv6",
		cluster: ipv6Cluster,
		probes: []probe{
			allow("fd00::3 fd00::1 tcp/80"), deny("fd00::3 fd00::1 tcp/81"), deny("fd00::2 fd00::1 tcp/80"),
			deny("2001:db8::1 fd00::1 tcp/80"), allow("fd00:ffff::1 fd00::1 icmp"), allow("fd00::1 fd00::2 tcp/1"),
			deny("10.0.0.1 fd00::1 tcp/80"),
		},
	}})
}

func ipv6Cluster(t *testing.T) *Cluster {
	return &Cluster{
		Namespaces: []Namespace{{Name: "v6"}},
		Nodes:      []Node{{Name: "n6", IPs: []netip.Addr{netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("fd00:ffff::1")}}},
		Pods: []Pod{
			{Namespace: "v6", Name: "a", IP: netip.MustParseAddr("fd00::1"), Node: "n6", Labels: map[string]string{"app": "a"}},
			{Namespace: "v6", Name: "b", IP: netip.MustParseAddr("fd00::2"), Labels: map[string]string{"app": "b"}},
		},
		Policies: []networkingv1.NetworkPolicy{parsePolicyYAML(t, `
metadata: {namespace: v6, name: p}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{ipBlock: {cidr: "fd00::/64", except: ["fd00::2/128"]}}], ports: [{port: 80}]}]`)},
	}
}
