package routesync

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// Route is a kernel route to a remote node's pod range.
type Route struct {
	// Dst is the pod range, Via the node's InternalIP of its family.
	Dst netip.Prefix
	Via netip.Addr
	// Node owns the range (for messages; the kernel doesn't keep it).
	Node string
}

func (r Route) String() string { return fmt.Sprintf("%s via %s (node %s)", r.Dst, r.Via, r.Node) }

// Problem is a pod range of another node that isn't routed.
type Problem struct {
	// Dst is the pod range as its NodeNetwork has it.
	Dst string
	// Node owns the range; the nodes comma-separated when several claim it.
	Node string
	// Reason is one of the api's RoutesReady reasons (v1.ReasonRouteConflict...).
	Reason string
	// Message is a sentence naming the range and what is wrong.
	Message string
}

func (p Problem) String() string { return p.Message }

// Plan is the routes node self wants to the other nodes' pod ranges,
// sorted by destination, and what it can't route, sorted by message. A NodeNetwork is its node's when they share a name; a
// NodeNetwork without its Node (the node left) or being deleted, and a
// Node without a NodeNetwork, give no routes.
func Plan(self string, nodes []corev1.Node, networks []v1.NodeNetwork) (routes []Route, problems []Problem) {
	byName := make(map[string]*corev1.Node, len(nodes))
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	owners := map[netip.Prefix][]Route{}
	for _, nn := range networks {
		node := byName[nn.Name]
		if nn.Name == self || node == nil || nn.DeletionTimestamp != nil || node.DeletionTimestamp != nil {
			continue
		}
		for _, c := range nn.Status.CIDRs {
			dst, err := netip.ParsePrefix(string(c))
			if err != nil {
				problems = append(problems, Problem{Dst: string(c), Node: nn.Name, Reason: v1.ReasonInvalidPodRange,
					Message: fmt.Sprintf("node %s: pod range %q: %v", nn.Name, c, err)})
				continue
			}
			via, ok := internalIP(node, dst.Addr().Is4())
			if !ok {
				problems = append(problems, Problem{Dst: dst.Masked().String(), Node: nn.Name, Reason: v1.ReasonNodeAddressMissing,
					Message: fmt.Sprintf("node %s: no %s InternalIP to route its pod range %s via", nn.Name, family(dst), dst)})
				continue
			}
			dst = dst.Masked()
			owners[dst] = append(owners[dst], Route{Dst: dst, Via: via, Node: nn.Name})
		}
	}
	for dst, rs := range owners {
		if len(rs) > 1 {
			names := make([]string, len(rs))
			for i, r := range rs {
				names[i] = r.Node
			}
			slices.Sort(names)
			problems = append(problems, Problem{Dst: dst.String(), Node: strings.Join(names, ","), Reason: v1.ReasonPodRangeClaimedTwice,
				Message: fmt.Sprintf("pod range %s is claimed by nodes %v: not routed", dst, names)})
			continue
		}
		routes = append(routes, rs[0])
	}
	slices.SortFunc(routes, func(a, b Route) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
	})
	slices.SortFunc(problems, func(a, b Problem) int { return cmp.Compare(a.Message, b.Message) })
	return routes, problems
}

// internalIP is the node's first InternalIP of the family.
func internalIP(n *corev1.Node, ipv4 bool) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err == nil && ip.Unmap().Is4() == ipv4 {
			return ip.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}
