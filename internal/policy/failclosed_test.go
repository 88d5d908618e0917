package policy

import (
	"net/netip"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFailClosed(t *testing.T) {
	ip := netip.MustParseAddr
	// except outside its cidr: a policy the compiler refuses.
	refusedPeer := networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"192.168.0.0/24"}}}
	for _, tc := range []struct {
		name                    string
		spec                    networkingv1.NetworkPolicySpec
		wantIngress, wantEgress bool
		wantTypes               []networkingv1.PolicyType
	}{{
		name: "ingress rules, no policyTypes",
		spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{refusedPeer}}},
		},
		wantIngress: true,
		wantTypes:   []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
	}, {
		name: "egress rules imply Egress",
		spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{refusedPeer}}},
		},
		wantIngress: true, wantEgress: true,
		wantTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
	}, {
		name: "egress only",
		spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{refusedPeer}}},
		},
		wantEgress: true,
		wantTypes:  []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "broken"}, Spec: tc.spec}
			cluster := func(p *networkingv1.NetworkPolicy) *Cluster {
				return &Cluster{
					Namespaces: []Namespace{{Name: "prod"}},
					Pods: []Pod{
						{Namespace: "prod", Name: "web", IP: ip("10.0.0.5"), Labels: map[string]string{"app": "web"}},
						{Namespace: "prod", Name: "db", IP: ip("10.0.0.6"), Labels: map[string]string{"app": "db"}},
					},
					Policies: []networkingv1.NetworkPolicy{*p},
				}
			}
			if _, err := Compile(cluster(np)); err == nil {
				t.Fatal("the test's policy compiles; it must be one the compiler refuses")
			}
			before := np.DeepCopy()
			closed := FailClosed(np)
			if len(np.Spec.Ingress) != len(before.Spec.Ingress) || len(np.Spec.Egress) != len(before.Spec.Egress) ||
				!slices.Equal(np.Spec.PolicyTypes, before.Spec.PolicyTypes) {
				t.Error("FailClosed modified its argument")
			}
			if len(closed.Spec.Ingress) != 0 || len(closed.Spec.Egress) != 0 || !slices.Equal(closed.Spec.PolicyTypes, tc.wantTypes) {
				t.Fatalf("stand-in spec %+v, want no rules and policyTypes %v", closed.Spec, tc.wantTypes)
			}
			snap, err := Compile(cluster(closed))
			if err != nil {
				t.Fatalf("the stand-in is refused too: %v", err)
			}
			web, db := snap.Endpoints[0], snap.Endpoints[1]
			if web.IP != ip("10.0.0.5") {
				web, db = db, web
			}
			if web.IngressIsolated != tc.wantIngress || web.EgressIsolated != tc.wantEgress || len(web.Ingress)+len(web.Egress) != 0 {
				t.Errorf("selected pod %+v, want isolated (ingress %v, egress %v) with no entries", web, tc.wantIngress, tc.wantEgress)
			}
			if db.IngressIsolated || db.EgressIsolated {
				t.Errorf("a pod the policy doesn't select is isolated: %+v", db)
			}
			// The refused rule's peer gets nothing through.
			if tc.wantIngress && snap.Allowed(ip("10.0.0.7"), web.IP, ProtoTCP, 80) {
				t.Error("the refused policy's ipBlock rule was let through")
			}
		})
	}
}
