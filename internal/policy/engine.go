package policy

import (
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// This file is the incremental machinery: classes appear and disappear as
// addresses are (re)classified; each appearance or disappearance is an
// event that invalidates the peers that may contain the class and marks
// their policies dirty; flush turns dirty policies into dirty pods and
// recomputes those.

func addTo[K comparable, V comparable](m map[K]map[V]struct{}, k K, v V) {
	if m[k] == nil {
		m[k] = map[V]struct{}{}
	}
	m[k][v] = struct{}{}
}

func removeFrom[K comparable, V comparable](m map[K]map[V]struct{}, k K, v V) {
	delete(m[k], v)
	if len(m[k]) == 0 {
		delete(m, k)
	}
}

// acquireClass returns the class of key, creating it with mk.
func (c *Compiler) acquireClass(key string, mk func() *class) *class {
	if cl := c.classes[key]; cl != nil {
		cl.refs++
		return cl
	}
	cl := mk()
	cl.key, cl.id, cl.refs = key, c.nextClass, 1
	c.nextClass++
	c.classes[key] = cl
	c.classByID[cl.id] = cl
	if cl.kind == classPod {
		addTo(c.podClassesByNS, cl.ns, cl)
		for _, p := range cl.ports {
			addTo(c.podClassesByPort, p.Name, cl)
		}
	}
	for _, m := range cl.members {
		addTo(c.classesByBlock, m, cl)
	}
	c.event(cl)
	return cl
}

func (c *Compiler) releaseClass(cl *class) {
	if cl == nil {
		return
	}
	cl.refs--
	if cl.refs > 0 {
		return
	}
	delete(c.classes, cl.key)
	delete(c.classByID, cl.id)
	if cl.kind == classPod {
		removeFrom(c.podClassesByNS, cl.ns, cl)
		for _, p := range cl.ports {
			removeFrom(c.podClassesByPort, p.Name, cl)
		}
	}
	for _, m := range cl.members {
		removeFrom(c.classesByBlock, m, cl)
	}
	c.event(cl)
}

func (c *Compiler) event(cl *class) {
	if !c.bulk {
		c.events = append(c.events, cl)
	}
}

func (c *Compiler) classifyPod(ps *podState) {
	members, mkey := c.frag.membershipOf(ps.pod.IP)
	var ports []NamedPort
	for _, p := range ps.pod.Ports {
		if c.egressNames[p.Name] > 0 {
			ports = append(ports, p)
		}
	}
	key := podClassKey(ps.pod.Namespace, ps.labelsKey, ports, mkey)
	if ps.class != nil && ps.class.key == key {
		return
	}
	c.releaseClass(ps.class)
	ps.class = c.acquireClass(key, func() *class {
		return &class{kind: classPod, ns: ps.pod.Namespace, labels: labels.Set(ps.pod.Labels), ports: ports, members: members}
	})
}

func (c *Compiler) classifyNode(ns *nodeState) {
	old := ns.classes
	ns.classes = make([]*class, len(ns.node.IPs))
	for i, ip := range ns.node.IPs {
		members, mkey := c.frag.membershipOf(ip)
		ns.classes[i] = c.acquireClass(nodeClassKey(ns.node.Name, mkey), func() *class {
			return &class{kind: classNode, node: ns.node.Name, members: members}
		})
	}
	for _, cl := range old {
		c.releaseClass(cl)
	}
}

// hostChanged notes that an address got or lost its pod or node: a
// single-address fragment there is hidden or shown.
func (c *Compiler) hostChanged(ip netip.Addr) {
	if c.frag.hosts[ip] {
		c.fragDirty = true
	}
}

// refreshExternal makes the external classes those of the fragments the
// ipcache shows (not hidden by a pod or node), creating and releasing
// classes as needed.
func (c *Compiler) refreshExternal() {
	live := map[string]bool{}
	for _, e := range c.frag.kept {
		if len(e.members) == 0 || live[e.key] {
			continue
		}
		if _, hidden := c.ipOwner[e.prefix.Addr()]; hidden && e.prefix.IsSingleIP() {
			continue
		}
		live[e.key] = true
		if c.extClasses[e.key] == nil {
			c.extClasses[e.key] = c.acquireClass(externalClassKey(e.key), func() *class {
				return &class{kind: classExternal, members: e.members}
			})
		}
	}
	for key, cl := range c.extClasses {
		if !live[key] {
			delete(c.extClasses, key)
			c.releaseClass(cl)
		}
	}
}

// register swaps ps's peers and blocks for the shared ones and counts its
// egress port names.
func (c *Compiler) register(ps *policyState) {
	for _, rules := range [][]rule{ps.ingRules, ps.egRules} {
		for i := range rules {
			r := &rules[i]
			for j, pe := range r.peers {
				r.peers[j] = c.acquirePeer(pe, ps)
			}
			for j := range r.named {
				if r.named[j].anyPeer != nil {
					r.named[j].anyPeer = c.acquirePeer(r.named[j].anyPeer, ps)
				}
			}
		}
	}
	for _, r := range ps.egRules {
		for _, np := range r.named {
			c.egressNames[np.name]++
			if c.egressNames[np.name] == 1 {
				c.namesChanged = append(c.namesChanged, np.name)
			}
		}
	}
}

func (c *Compiler) unregister(ps *policyState) {
	for _, rules := range [][]rule{ps.ingRules, ps.egRules} {
		for _, r := range rules {
			for _, pe := range r.peers {
				c.releasePeer(pe, ps)
			}
			for _, np := range r.named {
				if np.anyPeer != nil {
					c.releasePeer(np.anyPeer, ps)
				}
			}
		}
	}
	for _, r := range ps.egRules {
		for _, np := range r.named {
			c.egressNames[np.name]--
			if c.egressNames[np.name] == 0 {
				delete(c.egressNames, np.name)
				c.namesChanged = append(c.namesChanged, np.name)
			}
		}
	}
}

func (c *Compiler) acquirePeer(pe *peer, ps *policyState) *peer {
	if have := c.peers[pe.key]; have != nil {
		have.refs[ps]++
		return have
	}
	pe.refs = map[*policyState]int{ps: 1}
	c.peers[pe.key] = pe
	switch pe.kind {
	case peerPodsInNS:
		addTo(c.peersByNS, pe.ns, pe)
	case peerPodsByNS:
		c.nsSelPeers[pe] = struct{}{}
	case peerBlock:
		if have := c.blocks[pe.block.key]; have != nil {
			pe.block = have
			have.refs++
		} else {
			pe.block.id, pe.block.refs = c.nextBlock, 1
			c.nextBlock++
			c.blocks[pe.block.key] = pe.block
			c.blocksChanged = append(c.blocksChanged, pe.block.cidr)
		}
		addTo(c.peersByBlock, pe.block.id, pe)
	case peerPodsWithPort:
		addTo(c.peersByPort, pe.portName, pe)
	}
	return pe
}

func (c *Compiler) releasePeer(pe *peer, ps *policyState) {
	pe.refs[ps]--
	if pe.refs[ps] == 0 {
		delete(pe.refs, ps)
	}
	if len(pe.refs) > 0 {
		return
	}
	delete(c.peers, pe.key)
	switch pe.kind {
	case peerPodsInNS:
		removeFrom(c.peersByNS, pe.ns, pe)
	case peerPodsByNS:
		delete(c.nsSelPeers, pe)
	case peerBlock:
		removeFrom(c.peersByBlock, pe.block.id, pe)
		pe.block.refs--
		if pe.block.refs == 0 {
			delete(c.blocks, pe.block.key)
			c.blocksChanged = append(c.blocksChanged, pe.block.cidr)
		}
	case peerPodsWithPort:
		removeFrom(c.peersByPort, pe.portName, pe)
	}
}

// applyFeatureChanges reclassifies after the set of blocks or of egress
// port names changed: the addresses whose memberships or relevant ports
// may differ, only.
func (c *Compiler) applyFeatureChanges() {
	if len(c.blocksChanged) > 0 {
		c.frag = buildFragments(c.blocks)
		c.fragDirty = true
		// Only an address inside an added or removed block's cidr can
		// change memberships.
		for _, ps := range c.pods {
			for _, p := range c.blocksChanged {
				if p.Contains(ps.pod.IP) {
					c.classifyPod(ps)
					break
				}
			}
		}
		for _, ns := range c.nodes {
			c.classifyNode(ns)
		}
	}
	if len(c.namesChanged) > 0 {
		for _, ps := range c.pods {
			for _, p := range ps.pod.Ports {
				if slices.Contains(c.namesChanged, p.Name) {
					c.classifyPod(ps)
					break
				}
			}
		}
	}
	c.blocksChanged, c.namesChanged = nil, nil
}

// invalidate drops pe's cached classes and marks its policies dirty.
func (c *Compiler) invalidate(pe *peer) {
	pe.cached, pe.classes = false, nil
	for ps := range pe.refs {
		c.dirtyPolicies[ps] = struct{}{}
	}
}

// classEvent handles a class that appeared or disappeared: the peers that
// may contain it, and for a node class the pods on the node.
func (c *Compiler) classEvent(cl *class) {
	switch cl.kind {
	case classPod:
		for pe := range c.peersByNS[cl.ns] {
			if pe.podSel.Matches(cl.labels) {
				c.invalidate(pe)
			}
		}
		if ns := c.namespaces[cl.ns]; ns != nil {
			for pe := range c.nsSelPeers {
				if pe.nsSel.Matches(ns.labels) && pe.podSel.Matches(cl.labels) {
					c.invalidate(pe)
				}
			}
		}
		for _, p := range cl.ports {
			for pe := range c.peersByPort[p.Name] {
				c.invalidate(pe)
			}
		}
	case classNode:
		for ps := range c.podsByNode[cl.node] {
			c.dirtyPods[ps] = struct{}{}
		}
	}
	for _, m := range cl.members {
		for pe := range c.peersByBlock[m] {
			c.invalidate(pe)
		}
	}
}

// markSelected marks the pods ps selects dirty.
func (c *Compiler) markSelected(ps *policyState) {
	ns := c.namespaces[ps.ns]
	if ns == nil {
		return
	}
	for _, pod := range ns.pods {
		if ps.podSel.Matches(labels.Set(pod.pod.Labels)) {
			c.dirtyPods[pod] = struct{}{}
		}
	}
}

// flush finishes a change: external classes, events, dirty policies, then
// the dirty pods' entries.
func (c *Compiler) flush() {
	if c.fragDirty {
		c.fragDirty = false
		c.refreshExternal()
	}
	for _, cl := range c.events {
		c.classEvent(cl)
	}
	c.events = nil
	for ps := range c.dirtyPolicies {
		c.markSelected(ps)
	}
	clear(c.dirtyPolicies)
	m := memo{}
	for ps := range c.dirtyPods {
		c.recompute(ps, m)
	}
	clear(c.dirtyPods)
}
