package policy

import (
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ReferenceAllowed answers whether the packet may pass by reading the
// policy objects directly, rule by rule, without classes or entries. It is
// the specification the compiler is checked against (see doc.go for the
// rules), not something to run per packet: it rereads the whole cluster on
// every call. It assumes c is valid (Compile returns no error for it); an
// invalid selector selects nothing here.
func ReferenceAllowed(c *Cluster, src, dst netip.Addr, proto uint8, dstPort uint16) bool {
	return newReference(c).allowed(src, dst, proto, dstPort)
}

// reference is a cluster read for ReferenceAllowed; tests build one per
// cluster and ask it many questions.
type reference struct {
	pods     map[netip.Addr]*Pod
	nsLabels map[string]labels.Set
	nodeOf   map[netip.Addr]string // node IP -> node name
	policies []networkingv1.NetworkPolicy
}

func newReference(c *Cluster) *reference {
	r := &reference{
		pods:     map[netip.Addr]*Pod{},
		nsLabels: map[string]labels.Set{},
		nodeOf:   map[netip.Addr]string{},
	}
	for i := range c.Pods {
		r.pods[c.Pods[i].IP] = &c.Pods[i]
	}
	for _, ns := range c.Namespaces {
		r.nsLabels[ns.Name] = namespaceLabels(ns)
	}
	for _, n := range c.Nodes {
		for _, ip := range n.IPs {
			r.nodeOf[ip] = n.Name
		}
	}
	for i := range c.Policies {
		p := c.Policies[i].DeepCopy()
		Default(p)
		r.policies = append(r.policies, *p)
	}
	return r
}

func (r *reference) allowed(src, dst netip.Addr, proto uint8, dstPort uint16) bool {
	if src == dst {
		return true
	}
	srcPod, dstPod := r.pods[src], r.pods[dst]
	if srcPod != nil && !r.direction(srcPod, networkingv1.PolicyTypeEgress, dst, dstPod, dstPod, proto, dstPort) {
		return false
	}
	if dstPod != nil && !r.direction(dstPod, networkingv1.PolicyTypeIngress, src, srcPod, dstPod, proto, dstPort) {
		return false
	}
	return true
}

// direction checks one direction of pod: peer is the other end (peerPod
// when it is a pod), portPod the pod whose container ports name the
// destination port (the destination of the packet, when it is a pod).
func (r *reference) direction(pod *Pod, dir networkingv1.PolicyType, peer netip.Addr, peerPod, portPod *Pod,
	proto uint8, dstPort uint16) bool {
	isolated := false
	for i := range r.policies {
		p := &r.policies[i]
		if p.Namespace != pod.Namespace || !hasType(p, dir) || !selectorMatches(&p.Spec.PodSelector, pod.Labels) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, rule := range p.Spec.Ingress {
				if r.peersMatch(p, rule.From, peer, peerPod) && portsMatch(rule.Ports, proto, dstPort, portPod) {
					return true
				}
			}
		} else {
			for _, rule := range p.Spec.Egress {
				if r.peersMatch(p, rule.To, peer, peerPod) && portsMatch(rule.Ports, proto, dstPort, portPod) {
					return true
				}
			}
		}
	}
	if !isolated {
		return true
	}
	// A node reaches its own pods whatever the policies say.
	node, isNode := r.nodeOf[peer]
	return dir == networkingv1.PolicyTypeIngress && isNode && pod.Node != "" && node == pod.Node
}

func (r *reference) peersMatch(p *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer,
	addr netip.Addr, peerPod *Pod) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if r.peerMatches(p, peer, addr, peerPod) {
			return true
		}
	}
	return false
}

func (r *reference) peerMatches(p *networkingv1.NetworkPolicy, peer networkingv1.NetworkPolicyPeer,
	addr netip.Addr, peerPod *Pod) bool {
	if b := peer.IPBlock; b != nil {
		cidr, err := netip.ParsePrefix(b.CIDR)
		if err != nil || !cidr.Masked().Contains(addr) {
			return false
		}
		for _, e := range b.Except {
			ex, err := netip.ParsePrefix(e)
			if err == nil && ex.Masked().Contains(addr) {
				return false
			}
		}
		return true
	}
	if peerPod == nil {
		return false
	}
	if peer.NamespaceSelector == nil {
		if peerPod.Namespace != p.Namespace {
			return false
		}
	} else if !selectorMatches(peer.NamespaceSelector, r.nsLabels[peerPod.Namespace]) {
		return false
	}
	return peer.PodSelector == nil || selectorMatches(peer.PodSelector, peerPod.Labels)
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, proto uint8, dstPort uint16, portPod *Pod) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pp := range ports {
		if portMatches(pp, proto, dstPort, portPod) {
			return true
		}
	}
	return false
}

func portMatches(pp networkingv1.NetworkPolicyPort, proto uint8, dstPort uint16, portPod *Pod) bool {
	want, ok := protoNumber(*pp.Protocol)
	if !ok || want != proto {
		return false
	}
	if pp.Port == nil {
		return true
	}
	if pp.Port.Type == intstr.Int {
		lo, hi := pp.Port.IntVal, pp.Port.IntVal
		if pp.EndPort != nil {
			hi = *pp.EndPort
		}
		return int32(dstPort) >= lo && int32(dstPort) <= hi
	}
	if portPod == nil {
		return false
	}
	for _, cp := range portPod.Ports {
		cpProto, _ := protoNumber(cp.Protocol)
		if cp.Name == pp.Port.StrVal && cpProto == proto && cp.Port == int32(dstPort) {
			return true
		}
	}
	return false
}

func selectorMatches(s *metav1.LabelSelector, set map[string]string) bool {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(set))
}
