package agent

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/netlab"
)

// scenario is a set of policies created together; intents are cells it is
// about, with the verdict the scenario is meant to give (checked against
// the model, so that a scenario can't silently test something else).
type scenario struct {
	name     string
	policies []*networkingv1.NetworkPolicy
	intents  []intent
}

type intent struct {
	c       cell
	allowed bool
}

var (
	tcp8080 = netlab.TCP(8080)
	tcp9090 = netlab.TCP(9090)
	tcp5353 = netlab.TCP(5353)
	udp5353 = netlab.UDP(5353)
	sctp    = netlab.SCTP(3868)
)

func allow(src, dst string, s service) intent { return intent{cell{src, dst, s}, true} }
func deny(src, dst string, s service) intent  { return intent{cell{src, dst, s}, false} }

func containerPort(name string, port int32, proto corev1.Protocol) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: proto}
}

// cover is the longest prefix holding both addresses.
func cover(a, b netip.Addr) netip.Prefix {
	for bits := 32; ; bits-- {
		if p := netip.PrefixFrom(a, bits).Masked(); p.Contains(b) {
			return p
		}
	}
}

// TestReachabilityMatrix: every pod to every pod on TCP (three ports), UDP
// and SCTP, real packets against the compiler's verdict for each cell,
// under each kind of policy the NetworkPolicy issue lists.
func TestReachabilityMatrix(t *testing.T) {
	begin := time.Now()
	w := newWorld(t)
	svcs := probedServices(t)
	w.startAgent().waitReady(t)

	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	web, db, client := map[string]string{"app": "web"}, map[string]string{"app": "db"}, map[string]string{"app": "client"}
	// Container ports named "http" resolve to a different port (and, on
	// a-client, protocol) on each pod.
	for _, p := range []*testPod{
		w.createPod("alpha", "a-web", web, containerPort("http", 8080, tcp), containerPort("dns", 5353, udp)),
		w.createPod("alpha", "a-db", db, containerPort("http", 9090, tcp)),
		w.createPod("alpha", "a-client", client, containerPort("http", 5353, udp)),
		w.createPod("beta", "b-web", web, containerPort("http", 8080, tcp), containerPort("dns", 5353, udp)),
		w.createPod("beta", "b-client", client),
		w.createPod("gamma", "g-client", client, containerPort("http", 5353, tcp)),
	} {
		w.addPod(p) // the harness brings the pod's lo up, as a runtime does
	}
	names := []string{"a-web", "a-db", "a-client", "b-web", "b-client", "g-client"}
	ip := func(name string) netip.Addr { return w.pods[name].IP }
	host := func(name string) string { return netip.PrefixFrom(ip(name), 32).String() }

	// makeScenarios builds the policies afresh (created objects can't be
	// created again).
	makeScenarios := func() []scenario {
		return []scenario{{
			name:     "deny-all ingress in alpha",
			policies: []*networkingv1.NetworkPolicy{netpol("alpha", "deny-ingress", nil, networkingv1.PolicyTypeIngress)},
			intents: []intent{
				deny("b-client", "a-web", tcp8080), deny("a-client", "a-web", udp5353), deny("g-client", "a-db", sctp),
				allow("a-web", "b-web", tcp8080), allow("a-client", "a-client", tcp9090),
			},
		}, {
			name:     "deny-all egress in alpha (replies still flow)",
			policies: []*networkingv1.NetworkPolicy{netpol("alpha", "deny-egress", nil, networkingv1.PolicyTypeEgress)},
			intents: []intent{
				deny("a-client", "b-web", tcp8080), deny("a-client", "a-web", udp5353), deny("a-db", "g-client", sctp),
				allow("b-client", "a-web", tcp8080), allow("b-client", "a-web", udp5353), allow("g-client", "a-db", sctp),
			},
		}, {
			name: "namespace isolation",
			policies: []*networkingv1.NetworkPolicy{
				withIngress(netpol("alpha", "same-namespace", nil), networkingv1.NetworkPolicyIngressRule{
					From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
				}),
				withIngress(netpol("beta", "same-namespace", nil), networkingv1.NetworkPolicyIngressRule{
					From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
						MatchLabels: map[string]string{"kubernetes.io/metadata.name": "beta"},
					}}},
				}),
				withIngress(netpol("gamma", "same-team", nil), networkingv1.NetworkPolicyIngressRule{
					From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
						MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"c"}}},
					}}},
				}),
			},
			intents: []intent{
				allow("a-client", "a-web", tcp8080), deny("b-client", "a-web", tcp8080),
				allow("b-client", "b-web", udp5353), deny("a-client", "b-web", udp5353),
				deny("a-client", "g-client", tcp9090), allow("b-web", "b-client", sctp),
			},
		}, {
			name: "ipBlock selecting pods, with an except",
			policies: []*networkingv1.NetworkPolicy{
				withIngress(netpol("beta", "from-block", web), networkingv1.NetworkPolicyIngressRule{
					From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
						CIDR: cover(ip("a-client"), ip("a-db")).String(), Except: []string{host("a-db")},
					}}},
				}),
				withEgress(netpol("gamma", "to-block", nil, networkingv1.PolicyTypeEgress), networkingv1.NetworkPolicyEgressRule{
					To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
						CIDR: "10.250.9.0/24", Except: []string{host("b-web")},
					}}},
				}),
			},
			intents: []intent{
				allow("a-client", "b-web", tcp9090), allow("a-client", "b-web", udp5353),
				deny("a-db", "b-web", tcp9090), deny("b-client", "b-web", tcp8080),
				allow("g-client", "a-web", tcp8080), deny("g-client", "b-web", tcp8080),
			},
		}, {
			name: "named ports",
			policies: []*networkingv1.NetworkPolicy{
				withIngress(netpol("alpha", "http-in", nil), networkingv1.NetworkPolicyIngressRule{
					Ports: []networkingv1.NetworkPolicyPort{policyPort(tcp, "http", 0)},
				}),
				withEgress(netpol("beta", "http-out", client, networkingv1.PolicyTypeEgress), networkingv1.NetworkPolicyEgressRule{
					To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
					Ports: []networkingv1.NetworkPolicyPort{policyPort(tcp, "http", 0), policyPort(udp, "dns", 0)},
				}),
			},
			intents: []intent{
				// Ingress: "http" is each alpha pod's own port.
				allow("g-client", "a-web", tcp8080), deny("g-client", "a-web", tcp9090),
				allow("g-client", "a-db", tcp9090), deny("g-client", "a-db", tcp8080),
				deny("g-client", "a-client", udp5353), // a UDP "http" for a TCP rule
				// Egress: "http" is the destination's port.
				allow("b-client", "g-client", tcp5353), deny("b-client", "g-client", tcp8080),
				allow("b-client", "b-web", udp5353), deny("b-client", "b-web", tcp9090),
				deny("b-client", "a-web", udp5353), // beta lets it out, alpha not in
			},
		}, {
			name: "endPort ranges",
			policies: []*networkingv1.NetworkPolicy{
				withIngress(netpol("beta", "wide-range", web), networkingv1.NetworkPolicyIngressRule{
					Ports: []networkingv1.NetworkPolicyPort{policyPort(tcp, 8080, 9090)},
				}),
				withIngress(netpol("alpha", "narrow-range", web), networkingv1.NetworkPolicyIngressRule{
					Ports: []networkingv1.NetworkPolicyPort{policyPort(tcp, 8080, 8089)},
				}),
			},
			intents: []intent{
				allow("a-client", "b-web", tcp8080), allow("a-client", "b-web", tcp9090), deny("a-client", "b-web", tcp5353),
				allow("b-client", "a-web", tcp8080), deny("b-client", "a-web", tcp9090), deny("b-client", "a-web", udp5353),
			},
		}, {
			name: "UDP (and SCTP) allowed, TCP on the same port denied",
			policies: []*networkingv1.NetworkPolicy{
				withIngress(netpol("alpha", "udp-only", nil), networkingv1.NetworkPolicyIngressRule{
					Ports: []networkingv1.NetworkPolicyPort{policyPort(udp, 5353, 0), policyPort(corev1.ProtocolSCTP, 3868, 0)},
				}),
			},
			intents: []intent{
				allow("b-client", "a-web", udp5353), deny("b-client", "a-web", tcp5353),
				allow("g-client", "a-db", sctp), deny("g-client", "a-db", tcp8080),
			},
		}}
	}

	scenarios := makeScenarios()
	total := w.checkMatrix("no policy", names, svcs, nil)
	for _, sc := range scenarios {
		if t.Failed() {
			break
		}
		// The scenario must mean what it says, in the model.
		want := w.expect(cellsOf(sc.intents), w.cluster(names, sc.policies))
		for i, in := range sc.intents {
			if want[i] != in.allowed {
				t.Fatalf("%s: the model says %s is allowed=%v; the scenario is meant to make it %v", sc.name, in.c, want[i], in.allowed)
			}
		}
		w.createPolicies(sc.policies)
		total += w.checkMatrix(sc.name, names, svcs, sc.policies)
		w.deletePolicies(sc.policies)
		total += w.checkMatrix(sc.name+": deleted", names, svcs, nil)
	}
	matrices := 1 + 2*len(scenarios)

	// Everything at once, then taken away in three steps: the agent's
	// incremental compilation against a fresh compilation of each state.
	var all []*networkingv1.NetworkPolicy
	for _, sc := range makeScenarios() {
		all = append(all, sc.policies...)
	}
	if !t.Failed() {
		w.createPolicies(all)
		total += w.checkMatrix("every scenario's policies at once", names, svcs, all)
		matrices++
		for len(all) > 0 && !t.Failed() {
			// Every third policy goes, from the first.
			var gone, kept []*networkingv1.NetworkPolicy
			for i, np := range all {
				if i%3 == 0 {
					gone = append(gone, np)
				} else {
					kept = append(kept, np)
				}
			}
			w.deletePolicies(gone)
			all = kept
			total += w.checkMatrix(fmt.Sprintf("%d deleted, %d left", len(gone), len(all)), names, svcs, all)
			matrices++
		}
	}
	t.Logf("%d pods x %d services (%v): %d cells checked in %d matrices in %v",
		len(names), len(svcs), svcs, total, matrices, time.Since(begin).Round(100*time.Millisecond))
}

func cellsOf(ins []intent) []cell {
	out := make([]cell, len(ins))
	for i, in := range ins {
		out[i] = in.c
	}
	return out
}
