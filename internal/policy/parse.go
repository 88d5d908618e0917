package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// policyState is a defaulted, validated policy, its selectors parsed. Its
// peers and blocks are the compiler's shared ones once registered.
type policyState struct {
	ns, name string
	podSel   labels.Selector
	ingress  bool // isolates ingress of the pods it selects
	egress   bool
	ingRules []rule
	egRules  []rule
	spec     networkingv1.NetworkPolicySpec // defaulted, to spot no-op updates
}

// rule is one ingress or egress rule.
type rule struct {
	// any: no peers listed, every address is a peer.
	any   bool
	peers []*peer
	// specs are the numeric and port-less ports (anyPortSpec when the rule
	// lists no ports); named are the named ones.
	specs []portSpec
	named []namedPort
}

// namedPort is a named port of a rule. anyPeer, for an egress rule without
// peers, stands for "every pod with a port of this name".
type namedPort struct {
	proto   uint8
	name    string
	anyPeer *peer
}

type peerKind uint8

const (
	// peerPodsInNS: pods of the policy's namespace matching podSel.
	peerPodsInNS peerKind = iota + 1
	// peerPodsByNS: pods matching podSel in namespaces matching nsSel.
	peerPodsByNS
	// peerBlock: every address in block.
	peerBlock
	// peerPodsWithPort: every pod with a container port named portName
	// (only for egress named ports of rules without peers).
	peerPodsWithPort
)

// peer is a set of addresses some rule names, shared by every rule that
// names the same set (key). It caches its classes until a class it may
// contain appears or disappears.
type peer struct {
	key      string
	kind     peerKind
	ns       string
	nsSel    labels.Selector
	podSel   labels.Selector
	block    *block
	portName string

	refs    map[*policyState]int
	cached  bool
	classes []Class
}

// block is an ipBlock after validation: a masked cidr minus masked excepts,
// shared by every peer naming the same one (key). id numbers it in class
// memberships.
type block struct {
	key    string
	id     int
	cidr   netip.Prefix
	except []netip.Prefix
	refs   int
}

// parsePolicy validates a defaulted policy the way the API server would
// (and a little more: unsupported protocols), naming the policy in errors.
func parsePolicy(np *networkingv1.NetworkPolicy) (*policyState, error) {
	name := np.Namespace + "/" + np.Name
	ps := &policyState{ns: np.Namespace, name: np.Name, spec: np.Spec}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		return nil, fmt.Errorf("policy %s: podSelector: %w", name, err)
	}
	ps.podSel = sel
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ps.ingress = true
		case networkingv1.PolicyTypeEgress:
			ps.egress = true
		default:
			return nil, fmt.Errorf("policy %s: policyType %q: want Ingress or Egress", name, t)
		}
	}
	for i, r := range np.Spec.Ingress {
		pr, err := parseRule(np.Namespace, r.From, r.Ports, false)
		if err != nil {
			return nil, fmt.Errorf("policy %s: ingress[%d]: %w", name, i, err)
		}
		ps.ingRules = append(ps.ingRules, pr)
	}
	for i, r := range np.Spec.Egress {
		pr, err := parseRule(np.Namespace, r.To, r.Ports, true)
		if err != nil {
			return nil, fmt.Errorf("policy %s: egress[%d]: %w", name, i, err)
		}
		ps.egRules = append(ps.egRules, pr)
	}
	return ps, nil
}

func parseRule(ns string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort,
	egress bool) (rule, error) {
	r := rule{any: len(peers) == 0}
	for i, p := range peers {
		pe, err := parsePeer(ns, p)
		if err != nil {
			return rule{}, fmt.Errorf("peer %d: %w", i, err)
		}
		r.peers = append(r.peers, pe)
	}
	if len(ports) == 0 {
		r.specs = []portSpec{anyPortSpec}
	}
	for i, p := range ports {
		spec, named, err := parsePort(p)
		if err != nil {
			return rule{}, fmt.Errorf("ports[%d]: %w", i, err)
		}
		if named.name == "" {
			r.specs = append(r.specs, spec)
			continue
		}
		if egress && r.any {
			named.anyPeer = &peer{key: "port\x01" + named.name, kind: peerPodsWithPort, portName: named.name}
		}
		r.named = append(r.named, named)
	}
	return r, nil
}

func parsePeer(ns string, p networkingv1.NetworkPolicyPeer) (*peer, error) {
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return nil, fmt.Errorf("ipBlock can't be combined with podSelector or namespaceSelector")
		}
		b, err := parseBlock(p.IPBlock)
		if err != nil {
			return nil, err
		}
		return &peer{key: "block\x01" + b.key, kind: peerBlock, block: b}, nil
	}
	podSel := labels.Everything()
	if p.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("podSelector: %w", err)
		}
		podSel = s
	}
	if p.NamespaceSelector != nil {
		nsSel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("namespaceSelector: %w", err)
		}
		return &peer{key: "ns\x01" + nsSel.String() + "\x01" + podSel.String(), kind: peerPodsByNS,
			nsSel: nsSel, podSel: podSel}, nil
	}
	if p.PodSelector == nil {
		return nil, fmt.Errorf("empty peer: set podSelector, namespaceSelector or ipBlock")
	}
	return &peer{key: "pods\x01" + ns + "\x01" + podSel.String(), kind: peerPodsInNS, ns: ns, podSel: podSel}, nil
}

// parseBlock validates as the API server does (except must be a strict
// subset of cidr) and canonicalizes: masked prefixes, excepts sorted and
// without those inside another except, so equal blocks share a key.
func parseBlock(ib *networkingv1.IPBlock) (*block, error) {
	cidr, err := netip.ParsePrefix(ib.CIDR)
	if err != nil {
		return nil, fmt.Errorf("ipBlock cidr %q: %w", ib.CIDR, err)
	}
	b := &block{cidr: cidr.Masked()}
	for _, e := range ib.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("ipBlock except %q: %w", e, err)
		}
		ex = ex.Masked()
		if ex.Addr().Is4() != b.cidr.Addr().Is4() || ex.Bits() <= b.cidr.Bits() || !b.cidr.Contains(ex.Addr()) {
			return nil, fmt.Errorf("ipBlock except %q: not a strict subset of cidr %q", e, ib.CIDR)
		}
		b.except = append(b.except, ex)
	}
	slices.SortFunc(b.except, comparePrefixes)
	b.except = slices.CompactFunc(b.except, func(a, b netip.Prefix) bool { return a == b })
	var outer []netip.Prefix
	for _, e := range b.except {
		// Sorted by address then length, an except inside another comes
		// after it: drop it, the outer one already excludes it.
		if len(outer) == 0 || !outer[len(outer)-1].Contains(e.Addr()) {
			outer = append(outer, e)
		}
	}
	b.except = outer
	var key strings.Builder
	key.WriteString(b.cidr.String())
	for _, e := range b.except {
		key.WriteString(" -")
		key.WriteString(e.String())
	}
	b.key = key.String()
	return b, nil
}

// parsePort resolves one policy port to a spec, or to a named port (name
// set) resolved later against pods.
func parsePort(p networkingv1.NetworkPolicyPort) (portSpec, namedPort, error) {
	proto, ok := protoNumber(*p.Protocol)
	if !ok {
		return portSpec{}, namedPort{}, fmt.Errorf("protocol %q: want TCP, UDP or SCTP", *p.Protocol)
	}
	if p.Port == nil {
		if p.EndPort != nil {
			return portSpec{}, namedPort{}, fmt.Errorf("endPort without port")
		}
		return portSpec{proto: proto, ports: allPorts}, namedPort{}, nil
	}
	if p.Port.Type == intstr.String {
		if errs := validation.IsValidPortName(p.Port.StrVal); len(errs) > 0 {
			return portSpec{}, namedPort{}, fmt.Errorf("port %q: %s", p.Port.StrVal, strings.Join(errs, "; "))
		}
		if p.EndPort != nil {
			return portSpec{}, namedPort{}, fmt.Errorf("endPort with named port %q", p.Port.StrVal)
		}
		return portSpec{}, namedPort{proto: proto, name: p.Port.StrVal}, nil
	}
	lo, hi := p.Port.IntVal, p.Port.IntVal
	if lo < 1 || lo > 65535 {
		return portSpec{}, namedPort{}, fmt.Errorf("port %d: want 1-65535", lo)
	}
	if p.EndPort != nil {
		hi = *p.EndPort
		if hi < lo || hi > 65535 {
			return portSpec{}, namedPort{}, fmt.Errorf("endPort %d: want %d-65535", hi, lo)
		}
	}
	return portSpec{proto: proto, ports: portRange{uint32(lo), uint32(hi)}}, namedPort{}, nil
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
