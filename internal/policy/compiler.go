package policy

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Compile compiles a whole cluster into a snapshot. It fails on a pod in a
// namespace that doesn't exist, an address used twice (by pods or nodes),
// an object listed twice, and an invalid policy (selector, CIDR, port),
// naming the object.
func Compile(c *Cluster) (*Snapshot, error) {
	cc, err := NewCompiler(c)
	if err != nil {
		return nil, err
	}
	return cc.Snapshot(), nil
}

// Compiler keeps a compiled cluster up to date as objects change, redoing
// only what a change touches (doc.go says what that is for each kind of
// change). It is not safe for concurrent use.
type Compiler struct {
	namespaces   map[string]*nsState
	pods         map[string]*podState // by namespace/name
	podsByID     map[uint32]*podState
	podsByNode   map[string]map[*podState]struct{}
	nodes        map[string]*nodeState
	ipOwner      map[netip.Addr]string // "pod ns/name" or "node name"
	policies     map[string]*policyState
	policiesByNS map[string]map[string]*policyState

	blocks      map[string]*block
	nextBlock   int
	egressNames map[string]int // port names egress rules name, with counts
	frag        *fragTable

	classes          map[string]*class
	classByID        map[Class]*class
	nextClass        Class
	extClasses       map[string]*class // by membership key
	podClassesByNS   map[string]map[*class]struct{}
	podClassesByPort map[string]map[*class]struct{}
	classesByBlock   map[int]map[*class]struct{}

	peers        map[string]*peer
	peersByNS    map[string]map[*peer]struct{}
	nsSelPeers   map[*peer]struct{}
	peersByBlock map[int]map[*peer]struct{}
	peersByPort  map[string]map[*peer]struct{}

	nextID  uint32
	changed map[uint32]struct{}

	// Work pending within one change; bulk (NewCompiler) skips it and
	// computes everything at the end.
	bulk          bool
	events        []*class // classes created or destroyed
	dirtyPods     map[*podState]struct{}
	dirtyPolicies map[*policyState]struct{}
	fragDirty     bool
	blocksChanged []netip.Prefix // cidrs of blocks added or removed
	namesChanged  []string

	scratch [2]accumulator // reused by computeBase

	// recomputed counts endpoint computations, for tests of locality.
	recomputed int
}

type nsState struct {
	name   string
	labels labels.Set
	pods   map[string]*podState
}

type podState struct {
	pod       Pod // normalized copy
	key       string
	id        uint32
	labelsKey string
	portsKey  string
	class     *class
	computed  bool
	ep        EndpointPolicy
}

type nodeState struct {
	node    Node
	classes []*class // one per IP
}

func newCompiler() *Compiler {
	return &Compiler{
		namespaces:       map[string]*nsState{},
		pods:             map[string]*podState{},
		podsByID:         map[uint32]*podState{},
		podsByNode:       map[string]map[*podState]struct{}{},
		nodes:            map[string]*nodeState{},
		ipOwner:          map[netip.Addr]string{},
		policies:         map[string]*policyState{},
		policiesByNS:     map[string]map[string]*policyState{},
		blocks:           map[string]*block{},
		nextBlock:        1,
		egressNames:      map[string]int{},
		frag:             buildFragments(nil),
		classes:          map[string]*class{},
		classByID:        map[Class]*class{},
		nextClass:        FirstDynamicClass,
		extClasses:       map[string]*class{},
		podClassesByNS:   map[string]map[*class]struct{}{},
		podClassesByPort: map[string]map[*class]struct{}{},
		classesByBlock:   map[int]map[*class]struct{}{},
		peers:            map[string]*peer{},
		peersByNS:        map[string]map[*peer]struct{}{},
		nsSelPeers:       map[*peer]struct{}{},
		peersByBlock:     map[int]map[*peer]struct{}{},
		peersByPort:      map[string]map[*peer]struct{}{},
		nextID:           1,
		changed:          map[uint32]struct{}{},
		dirtyPods:        map[*podState]struct{}{},
		dirtyPolicies:    map[*policyState]struct{}{},
	}
}

// NewCompiler compiles c (see Compile for the errors). Endpoint IDs are
// handed out from 1 in namespace/name order, so the same cluster always
// compiles to the same snapshot. The first Changed reports every endpoint.
func NewCompiler(c *Cluster) (*Compiler, error) {
	cc := newCompiler()
	cc.bulk = true
	for _, ns := range c.Namespaces {
		if cc.namespaces[ns.Name] != nil {
			return nil, fmt.Errorf("namespace %q listed twice", ns.Name)
		}
		if err := cc.setNamespace(ns); err != nil {
			return nil, err
		}
	}
	policies := make([]*networkingv1.NetworkPolicy, len(c.Policies))
	for i := range c.Policies {
		policies[i] = &c.Policies[i]
	}
	slices.SortFunc(policies, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, np := range policies {
		if cc.policies[np.Namespace+"/"+np.Name] != nil {
			return nil, fmt.Errorf("policy %s/%s listed twice", np.Namespace, np.Name)
		}
		if err := cc.setPolicy(np); err != nil {
			return nil, err
		}
	}
	// Blocks first, then addresses: every address is classified once.
	cc.frag = buildFragments(cc.blocks)
	nodes := slices.Clone(c.Nodes)
	slices.SortFunc(nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	for _, n := range nodes {
		if cc.nodes[n.Name] != nil {
			return nil, fmt.Errorf("node %q listed twice", n.Name)
		}
		if err := cc.setNode(n); err != nil {
			return nil, err
		}
	}
	pods := slices.Clone(c.Pods)
	slices.SortFunc(pods, func(a, b Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, p := range pods {
		if cc.pods[p.Namespace+"/"+p.Name] != nil {
			return nil, fmt.Errorf("pod %s/%s listed twice", p.Namespace, p.Name)
		}
		if err := cc.setPod(p); err != nil {
			return nil, err
		}
	}
	cc.refreshExternal()
	cc.bulk = false
	cc.events, cc.namesChanged, cc.blocksChanged, cc.fragDirty = nil, nil, nil, false
	clear(cc.dirtyPolicies)
	clear(cc.dirtyPods)
	memo := memo{}
	for _, ps := range pods {
		cc.recompute(cc.pods[ps.Namespace+"/"+ps.Name], memo)
	}
	return cc, nil
}

// SetNamespace adds or updates a namespace.
func (c *Compiler) SetNamespace(ns Namespace) error {
	if err := c.setNamespace(ns); err != nil {
		return err
	}
	c.flush()
	return nil
}

func (c *Compiler) setNamespace(ns Namespace) error {
	if ns.Name == "" {
		return fmt.Errorf("namespace without a name")
	}
	set := labels.Set(namespaceLabels(ns))
	old := c.namespaces[ns.Name]
	if old == nil {
		c.namespaces[ns.Name] = &nsState{name: ns.Name, labels: set, pods: map[string]*podState{}}
		return nil
	}
	if maps.Equal(old.labels, set) {
		return nil
	}
	if !c.bulk && len(c.podClassesByNS[ns.Name]) > 0 {
		for pe := range c.nsSelPeers {
			if pe.nsSel.Matches(old.labels) != pe.nsSel.Matches(set) {
				c.invalidate(pe)
			}
		}
	}
	old.labels = set
	return nil
}

// DeleteNamespace removes a namespace that has no pods left. Its policies
// stay until deleted; with no pods to select they do nothing.
func (c *Compiler) DeleteNamespace(name string) error {
	ns := c.namespaces[name]
	if ns == nil {
		return nil
	}
	if len(ns.pods) > 0 {
		return fmt.Errorf("namespace %q: %d pods left", name, len(ns.pods))
	}
	delete(c.namespaces, name)
	return nil
}

// SetPod adds or updates a pod. Its endpoint ID stays the same across
// updates; on error nothing changes.
func (c *Compiler) SetPod(p Pod) error {
	if err := c.setPod(p); err != nil {
		return err
	}
	c.flush()
	return nil
}

func normalizePod(p Pod) Pod {
	out := p
	out.Labels = maps.Clone(p.Labels)
	out.Ports = make([]NamedPort, len(p.Ports))
	for i, cp := range p.Ports {
		if cp.Protocol == "" {
			cp.Protocol = "TCP"
		}
		out.Ports[i] = cp
	}
	slices.SortFunc(out.Ports, func(a, b NamedPort) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	return out
}

func (c *Compiler) validatePod(key string, p Pod) error {
	if c.namespaces[p.Namespace] == nil {
		return fmt.Errorf("pod %s: namespace %q does not exist", key, p.Namespace)
	}
	if !p.IP.IsValid() || p.IP.Zone() != "" {
		return fmt.Errorf("pod %s: IP %q: want an address without zone", key, p.IP)
	}
	if owner, ok := c.ipOwner[p.IP]; ok && owner != "pod "+key {
		return fmt.Errorf("pod %s: IP %s already belongs to %s", key, p.IP, owner)
	}
	for _, cp := range p.Ports {
		if _, ok := protoNumber(cp.Protocol); !ok {
			return fmt.Errorf("pod %s: port %q: protocol %q: want TCP, UDP or SCTP", key, cp.Name, cp.Protocol)
		}
		if cp.Port < 1 || cp.Port > 65535 {
			return fmt.Errorf("pod %s: port %q: %d: want 1-65535", key, cp.Name, cp.Port)
		}
	}
	return nil
}

func (c *Compiler) setPod(p Pod) error {
	key := p.Namespace + "/" + p.Name
	if err := c.validatePod(key, p); err != nil {
		return err
	}
	p = normalizePod(p)
	ps := c.pods[key]
	if ps == nil {
		ps = &podState{key: key, id: c.nextID}
		c.nextID++
		c.pods[key] = ps
		c.podsByID[ps.id] = ps
		c.namespaces[p.Namespace].pods[p.Name] = ps
	} else {
		if reflect.DeepEqual(ps.pod, p) {
			return nil
		}
		c.unplacePod(ps)
	}
	ps.pod = p
	ps.labelsKey, ps.portsKey = labelsKey(p.Labels), portsKey(p.Ports)
	c.ipOwner[p.IP] = "pod " + key
	c.hostChanged(p.IP)
	if c.podsByNode[p.Node] == nil {
		c.podsByNode[p.Node] = map[*podState]struct{}{}
	}
	c.podsByNode[p.Node][ps] = struct{}{}
	c.classifyPod(ps)
	c.dirtyPods[ps] = struct{}{}
	return nil
}

// unplacePod forgets ps's address and node, before an update or delete.
func (c *Compiler) unplacePod(ps *podState) {
	delete(c.ipOwner, ps.pod.IP)
	c.hostChanged(ps.pod.IP)
	delete(c.podsByNode[ps.pod.Node], ps)
	if len(c.podsByNode[ps.pod.Node]) == 0 {
		delete(c.podsByNode, ps.pod.Node)
	}
}

// DeletePod removes a pod; its ID is not handed out again.
func (c *Compiler) DeletePod(namespace, name string) {
	key := namespace + "/" + name
	ps := c.pods[key]
	if ps == nil {
		return
	}
	c.unplacePod(ps)
	c.releaseClass(ps.class)
	delete(c.pods, key)
	delete(c.podsByID, ps.id)
	delete(c.namespaces[namespace].pods, name)
	delete(c.dirtyPods, ps)
	c.changed[ps.id] = struct{}{}
	c.flush()
}

// SetNode adds or updates a node.
func (c *Compiler) SetNode(n Node) error {
	if err := c.setNode(n); err != nil {
		return err
	}
	c.flush()
	return nil
}

func (c *Compiler) setNode(n Node) error {
	if n.Name == "" {
		return fmt.Errorf("node without a name")
	}
	seen := map[netip.Addr]bool{}
	for _, ip := range n.IPs {
		if !ip.IsValid() || ip.Zone() != "" {
			return fmt.Errorf("node %s: IP %q: want an address without zone", n.Name, ip)
		}
		if owner, ok := c.ipOwner[ip]; (ok && owner != "node "+n.Name) || seen[ip] {
			return fmt.Errorf("node %s: IP %s already belongs to %s", n.Name, ip, cmp.Or(owner, "node "+n.Name))
		}
		seen[ip] = true
	}
	ns := c.nodes[n.Name]
	if ns != nil && slices.Equal(ns.node.IPs, n.IPs) {
		return nil
	}
	if ns != nil {
		c.unplaceNode(ns)
	}
	ns = &nodeState{node: Node{Name: n.Name, IPs: slices.Clone(n.IPs)}}
	c.nodes[n.Name] = ns
	for _, ip := range n.IPs {
		c.ipOwner[ip] = "node " + n.Name
		c.hostChanged(ip)
	}
	c.classifyNode(ns)
	for ps := range c.podsByNode[n.Name] {
		c.dirtyPods[ps] = struct{}{}
	}
	return nil
}

func (c *Compiler) unplaceNode(ns *nodeState) {
	for i, ip := range ns.node.IPs {
		delete(c.ipOwner, ip)
		c.hostChanged(ip)
		c.releaseClass(ns.classes[i])
	}
	ns.classes = nil
}

// DeleteNode removes a node; its pods lose the always-allowed path from it.
func (c *Compiler) DeleteNode(name string) {
	ns := c.nodes[name]
	if ns == nil {
		return
	}
	c.unplaceNode(ns)
	delete(c.nodes, name)
	for ps := range c.podsByNode[name] {
		c.dirtyPods[ps] = struct{}{}
	}
	c.flush()
}

// SetPolicy adds or updates a policy (Default is applied to a copy). On
// error nothing changes.
func (c *Compiler) SetPolicy(np *networkingv1.NetworkPolicy) error {
	if err := c.setPolicy(np); err != nil {
		return err
	}
	c.applyFeatureChanges()
	c.flush()
	return nil
}

func (c *Compiler) setPolicy(np *networkingv1.NetworkPolicy) error {
	cp := np.DeepCopy()
	Default(cp)
	ps, err := parsePolicy(cp)
	if err != nil {
		return err
	}
	key := cp.Namespace + "/" + cp.Name
	if old := c.policies[key]; old != nil {
		if reflect.DeepEqual(old.spec, ps.spec) {
			return nil
		}
		c.removePolicy(old)
	}
	c.register(ps)
	c.policies[key] = ps
	if c.policiesByNS[ps.ns] == nil {
		c.policiesByNS[ps.ns] = map[string]*policyState{}
	}
	c.policiesByNS[ps.ns][ps.name] = ps
	if !c.bulk {
		c.dirtyPolicies[ps] = struct{}{}
	}
	return nil
}

// DeletePolicy removes a policy.
func (c *Compiler) DeletePolicy(namespace, name string) {
	ps := c.policies[namespace+"/"+name]
	if ps == nil {
		return
	}
	c.removePolicy(ps)
	c.applyFeatureChanges()
	c.flush()
}

func (c *Compiler) removePolicy(ps *policyState) {
	// The pods it selected are recomputed now: once gone, it is no longer
	// found by the events processed in flush.
	c.markSelected(ps)
	delete(c.dirtyPolicies, ps)
	c.unregister(ps)
	delete(c.policies, ps.ns+"/"+ps.name)
	delete(c.policiesByNS[ps.ns], ps.name)
	if len(c.policiesByNS[ps.ns]) == 0 {
		delete(c.policiesByNS, ps.ns)
	}
}

// Snapshot is the compiled state now. Its entry slices are shared with the
// compiler and among endpoints: treat them as read-only.
func (c *Compiler) Snapshot() *Snapshot {
	s := &Snapshot{
		IPCache:   make([]IPCacheEntry, 0, len(c.frag.kept)+len(c.ipOwner)+2),
		Endpoints: make([]EndpointPolicy, 0, len(c.pods)),
	}
	var root [2]bool
	v6 := c.frag.hasV6
	for _, e := range c.frag.kept {
		if _, hidden := c.ipOwner[e.prefix.Addr()]; hidden && e.prefix.IsSingleIP() {
			continue
		}
		cl := ClassWorld
		if len(e.members) > 0 {
			cl = c.extClasses[e.key].id
		}
		s.IPCache = append(s.IPCache, IPCacheEntry{Prefix: e.prefix, Class: cl})
		if e.prefix.Bits() == 0 {
			root[family(e.prefix.Addr())] = true
		}
	}
	for _, ps := range c.pods {
		s.IPCache = append(s.IPCache, IPCacheEntry{Prefix: netip.PrefixFrom(ps.pod.IP, ps.pod.IP.BitLen()), Class: ps.class.id})
		v6 = v6 || !ps.pod.IP.Is4()
		s.Endpoints = append(s.Endpoints, ps.ep)
	}
	for _, ns := range c.nodes {
		for i, ip := range ns.node.IPs {
			s.IPCache = append(s.IPCache, IPCacheEntry{Prefix: netip.PrefixFrom(ip, ip.BitLen()), Class: ns.classes[i].id})
			v6 = v6 || !ip.Is4()
		}
	}
	if !root[0] {
		s.IPCache = append(s.IPCache, IPCacheEntry{Prefix: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Class: ClassWorld})
	}
	if v6 && !root[1] {
		s.IPCache = append(s.IPCache, IPCacheEntry{Prefix: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Class: ClassWorld})
	}
	slices.SortFunc(s.IPCache, func(a, b IPCacheEntry) int { return comparePrefixes(a.Prefix, b.Prefix) })
	slices.SortFunc(s.Endpoints, func(a, b EndpointPolicy) int { return cmp.Compare(a.ID, b.ID) })
	return s
}

// Endpoint is the current policy of endpoint id, so that a caller can
// apply what Changed reports without a whole Snapshot; false once the pod
// is gone. Its slices are shared: treat them as read-only.
func (c *Compiler) Endpoint(id uint32) (EndpointPolicy, bool) {
	ps := c.podsByID[id]
	if ps == nil {
		return EndpointPolicy{}, false
	}
	return ps.ep, true
}

// Changed returns, sorted, the IDs of the endpoints added, deleted or
// whose entries or isolation changed since the last call.
func (c *Compiler) Changed() []uint32 {
	out := slices.Sorted(maps.Keys(c.changed))
	clear(c.changed)
	return out
}
