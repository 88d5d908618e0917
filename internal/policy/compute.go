package policy

import (
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// memo shares endpoint computations within one batch: pods with the same
// namespace, labels and container ports get the same entries (the own-node
// entries aside), and the same slices.
type memo map[string]*endpointBase

// endpointBase is an endpoint's policy without its own-node entries.
type endpointBase struct {
	ingIso, egIso bool
	ing, eg       []Entry
	byNode        map[string][]Entry // ing with the node's entries
}

func (c *Compiler) recompute(ps *podState, m memo) {
	c.recomputed++
	k := ps.pod.Namespace + "\x01" + ps.labelsKey + "\x01" + ps.portsKey
	b := m[k]
	if b == nil {
		b = c.computeBase(&ps.pod)
		m[k] = b
	}
	ing := b.ing
	if b.ingIso {
		ing = c.ingressWithNode(b, ps.pod.Node)
	}
	ep := EndpointPolicy{
		ID: ps.id, IP: ps.pod.IP,
		IngressIsolated: b.ingIso, EgressIsolated: b.egIso,
		Ingress: ing, Egress: b.eg,
	}
	if !ps.computed || !endpointEqual(ps.ep, ep) {
		c.changed[ps.id] = struct{}{}
		ps.ep, ps.computed = ep, true
	}
}

func endpointEqual(a, b EndpointPolicy) bool {
	return a.ID == b.ID && a.IP == b.IP && a.IngressIsolated == b.IngressIsolated &&
		a.EgressIsolated == b.EgressIsolated && slices.Equal(a.Ingress, b.Ingress) && slices.Equal(a.Egress, b.Egress)
}

func (c *Compiler) ingressWithNode(b *endpointBase, node string) []Entry {
	ns := c.nodes[node]
	if ns == nil || len(ns.classes) == 0 {
		return b.ing
	}
	if ing, ok := b.byNode[node]; ok {
		return ing
	}
	var ids []Class
	for _, cl := range ns.classes {
		ids = append(ids, cl.id)
	}
	slices.Sort(ids)
	ing := withNodeClasses(b.ing, slices.Compact(ids))
	if b.byNode == nil {
		b.byNode = map[string][]Entry{}
	}
	b.byNode[node] = ing
	return ing
}

// computeBase unions the rules of every policy selecting pod.
func (c *Compiler) computeBase(pod *Pod) *endpointBase {
	b := &endpointBase{}
	ing, eg := &c.scratch[0], &c.scratch[1]
	ing.reset()
	eg.reset()
	set := labels.Set(pod.Labels)
	for _, ps := range c.policiesByNS[pod.Namespace] {
		if !ps.podSel.Matches(set) {
			continue
		}
		if ps.ingress {
			b.ingIso = true
			for i := range ps.ingRules {
				c.addIngress(ing, &ps.ingRules[i], pod)
			}
		}
		if ps.egress {
			b.egIso = true
			for i := range ps.egRules {
				c.addEgress(eg, &ps.egRules[i])
			}
		}
	}
	if b.ingIso {
		b.ing = ing.entries()
	}
	if b.egIso {
		b.eg = eg.entries()
	}
	return b
}

// addIngress adds an ingress rule: named ports are the pod's own.
func (c *Compiler) addIngress(acc *accumulator, r *rule, pod *Pod) {
	specs := r.specs
	for _, np := range r.named {
		for _, cp := range pod.Ports {
			if proto, _ := protoNumber(cp.Protocol); cp.Name == np.name && proto == np.proto {
				specs = append(slices.Clip(specs), portSpec{proto: proto, ports: portRange{uint32(cp.Port), uint32(cp.Port)}})
			}
		}
	}
	c.addPeers(acc, r, specs)
}

// addEgress adds an egress rule: named ports are each peer pod's own, so
// they become entries per pod class; other classes get none.
func (c *Compiler) addEgress(acc *accumulator, r *rule) {
	c.addPeers(acc, r, r.specs)
	for _, np := range r.named {
		if r.any {
			c.addNamed(acc, np, c.peerClasses(np.anyPeer))
			continue
		}
		for _, pe := range r.peers {
			c.addNamed(acc, np, c.peerClasses(pe))
		}
	}
}

func (c *Compiler) addNamed(acc *accumulator, np namedPort, classes []Class) {
	for _, id := range classes {
		cl := c.classByID[id]
		if cl.kind != classPod {
			continue
		}
		for _, cp := range cl.ports {
			if proto, _ := protoNumber(cp.Protocol); cp.Name == np.name && proto == np.proto {
				acc.add(id, portSpec{proto: proto, ports: portRange{uint32(cp.Port), uint32(cp.Port)}})
			}
		}
	}
}

func (c *Compiler) addPeers(acc *accumulator, r *rule, specs []portSpec) {
	if len(specs) == 0 {
		return
	}
	if r.any {
		for _, s := range specs {
			acc.add(ClassAny, s)
		}
		return
	}
	for _, pe := range r.peers {
		for _, id := range c.peerClasses(pe) {
			for _, s := range specs {
				acc.add(id, s)
			}
		}
	}
}

// peerClasses is the classes of pe's addresses, cached until an event
// invalidates them.
func (c *Compiler) peerClasses(pe *peer) []Class {
	if pe.cached {
		return pe.classes
	}
	var out []Class
	addPods := func(ns string) {
		for cl := range c.podClassesByNS[ns] {
			if pe.podSel.Matches(cl.labels) {
				out = append(out, cl.id)
			}
		}
	}
	switch pe.kind {
	case peerPodsInNS:
		addPods(pe.ns)
	case peerPodsByNS:
		for name := range c.podClassesByNS {
			if pe.nsSel.Matches(c.namespaces[name].labels) {
				addPods(name)
			}
		}
	case peerBlock:
		for cl := range c.classesByBlock[pe.block.id] {
			out = append(out, cl.id)
		}
	case peerPodsWithPort:
		for cl := range c.podClassesByPort[pe.portName] {
			out = append(out, cl.id)
		}
	}
	slices.Sort(out)
	pe.classes, pe.cached = out, true
	return out
}
