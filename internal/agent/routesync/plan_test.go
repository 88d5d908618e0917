package routesync

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

func node(name string, addrs ...string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}

func network(name string, cidrs ...v1.CIDR) v1.NodeNetwork {
	return v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.NodeNetworkStatus{CIDRs: cidrs}}
}

func route(dst, via, node string) Route {
	return Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(via), Node: node}
}

func TestPlan(t *testing.T) {
	now := metav1.Now()
	leaving := network("b", "10.0.2.0/24")
	leaving.DeletionTimestamp = &now
	external := node("b", "192.168.0.2")
	external.Status.Addresses = append([]corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "203.0.113.2"}}, external.Status.Addresses...)
	tests := []struct {
		name         string
		nodes        []corev1.Node
		networks     []v1.NodeNetwork
		want         []Route
		wantProblems []Problem
	}{
		{
			name:     "every other node's ranges, both families, sorted; none to self",
			nodes:    []corev1.Node{node("a", "192.168.0.1", "fd00::1"), node("c", "fd00::3", "192.168.0.3"), node("b", "192.168.0.2", "fd00::2")},
			networks: []v1.NodeNetwork{network("c", "10.0.3.0/24", "fd10:0:3::/64"), network("a", "10.0.1.0/24"), network("b", "10.0.2.0/24", "10.0.20.0/25", "fd10:0:2::/64")},
			want: []Route{
				route("10.0.2.0/24", "192.168.0.2", "b"), route("10.0.3.0/24", "192.168.0.3", "c"),
				route("10.0.20.0/25", "192.168.0.2", "b"),
				route("fd10:0:2::/64", "fd00::2", "b"), route("fd10:0:3::/64", "fd00::3", "c"),
			},
		},
		{
			name:     "a NodeNetwork without its Node, or being deleted, and a Node without a NodeNetwork route nothing",
			nodes:    []corev1.Node{node("a", "192.168.0.1"), node("b", "192.168.0.2"), node("d", "192.168.0.4")},
			networks: []v1.NodeNetwork{leaving, network("c", "10.0.3.0/24")},
		},
		{
			name:     "only InternalIPs count; a range without an InternalIP of its family is a problem",
			nodes:    []corev1.Node{external},
			networks: []v1.NodeNetwork{network("b", "10.0.2.0/24", "fd10:0:2::/64")},
			want:     []Route{route("10.0.2.0/24", "192.168.0.2", "b")},
			wantProblems: []Problem{{Dst: "fd10:0:2::/64", Node: "b", Reason: v1.ReasonNodeAddressMissing,
				Message: "node b: no IPv6 InternalIP to route its pod range fd10:0:2::/64 via"}},
		},
		{
			name:     "a range two nodes claim is routed to neither; an unparsable one is a problem",
			nodes:    []corev1.Node{node("b", "192.168.0.2"), node("c", "192.168.0.3")},
			networks: []v1.NodeNetwork{network("b", "10.0.2.0/24", "bogus"), network("c", "10.0.2.0/24", "10.0.3.0/24")},
			want:     []Route{route("10.0.3.0/24", "192.168.0.3", "c")},
			wantProblems: []Problem{
				{Dst: "bogus", Node: "b", Reason: v1.ReasonInvalidPodRange, Message: `node b: pod range "bogus": netip.ParsePrefix("bogus"): no '/'`},
				{Dst: "10.0.2.0/24", Node: "b,c", Reason: v1.ReasonPodRangeClaimedTwice, Message: "pod range 10.0.2.0/24 is claimed by nodes [b c]: not routed"},
			},
		},
		{
			name:     "unmasked ranges are masked",
			nodes:    []corev1.Node{node("b", "192.168.0.2")},
			networks: []v1.NodeNetwork{network("b", "10.0.2.7/24")},
			want:     []Route{route("10.0.2.0/24", "192.168.0.2", "b")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := Plan("a", tt.nodes, tt.networks)
			if !slices.Equal(got, tt.want) {
				t.Errorf("routes:\n got %v\nwant %v", got, tt.want)
			}
			if !slices.Equal(problems, tt.wantProblems) {
				t.Errorf("problems:\n got %+v\nwant %+v", problems, tt.wantProblems)
			}
		})
	}
}
