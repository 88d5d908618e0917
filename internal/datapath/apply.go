package datapath

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/sluice-dev/sluice/internal/policy"
)

// The mask entry of an inner policy map (bpf/lib/common.h, through
// bpf2go): its key's class, and the mask bit for (class, ProtoAny) entries
// (bits 0-16 are port prefix lengths).
const (
	classMask    = uint32(sluicePeerClassCLASS_MASK)
	maskProtoAny = uint32(sluicePolicyMaskMASK_PROTO_ANY)
)

// slot is one generation of the maps and what the loader knows it holds.
type slot struct {
	endpointsMap *ebpf.Map // inner map of sluice_endpoints[gen]
	ipcacheMap   *ebpf.Map // inner map of sluice_ipcache[gen]
	endpoints    map[[16]byte]sluiceEndpointInfo
	ipcache      map[sluiceIpcacheKey]uint32
	policy       map[policyID]policyRef
}

// policyID names one endpoint's policy in one direction.
type policyID struct {
	id  uint32
	dir policy.Direction
}

// policyRef is the inner map a policy outer entry points at and the
// entries in it; known is false for maps found pinned from an earlier run.
type policyRef struct {
	entries []policy.Entry
	known   bool
}

// openSlot finds (or creates) the inner endpoints and ipcache maps of a
// generation and reads what they, and the policy map, hold.
func (d *Datapath) openSlot(gen uint32, specs map[string]*ebpf.MapSpec) error {
	s := &d.slots[gen]
	s.endpoints = map[[16]byte]sluiceEndpointInfo{}
	s.ipcache = map[sluiceIpcacheKey]uint32{}
	s.policy = map[policyID]policyRef{}
	var err error
	if s.endpointsMap, err = innerMap(d.objs.SluiceEndpoints, gen, specs[sluiceMapSluiceEndpoints].InnerMap); err != nil {
		return fmt.Errorf("endpoints of generation %d: %w", gen, err)
	}
	if s.ipcacheMap, err = innerMap(d.objs.SluiceIpcache, gen, specs[sluiceMapSluiceIpcache].InnerMap); err != nil {
		return fmt.Errorf("ipcache of generation %d: %w", gen, err)
	}

	var (
		addr [16]byte
		info sluiceEndpointInfo
		ik   sluiceIpcacheKey
		cls  uint32
		ok   sluicePolicyOuterKey
		id   uint32
	)
	it := s.endpointsMap.Iterate()
	for it.Next(&addr, &info) {
		s.endpoints[addr] = info
	}
	if err := it.Err(); err != nil {
		return err
	}
	it = s.ipcacheMap.Iterate()
	for it.Next(&ik, &cls) {
		s.ipcache[ik] = cls
	}
	if err := it.Err(); err != nil {
		return err
	}
	it = d.objs.SluicePolicy.Iterate()
	for it.Next(&ok, &id) {
		if uint32(ok.Generation) == gen {
			s.policy[policyID{ok.Endpoint, policy.Direction(ok.Direction)}] = policyRef{}
		}
	}
	return it.Err()
}

// innerMap returns the inner map in outer[gen], creating it if the slot is
// empty.
func innerMap(outer *ebpf.Map, gen uint32, spec *ebpf.MapSpec) (*ebpf.Map, error) {
	var m *ebpf.Map
	err := outer.Lookup(gen, &m)
	if err == nil {
		return m, nil
	}
	if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, err
	}
	if m, err = ebpf.NewMap(spec); err != nil {
		return nil, err
	}
	if err := outer.Update(gen, m, ebpf.UpdateAny); err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

// desired is a snapshot in the maps' terms.
type desired struct {
	endpoints map[[16]byte]sluiceEndpointInfo
	ipcache   map[sluiceIpcacheKey]uint32
	policy    map[policyID][]policy.Entry
}

// Apply makes the datapath enforce snap: ipcache, endpoints and every
// endpoint's policy, and forgets endpoints snap lacks (their counters and
// tracked flows too).
//
// The switch is atomic for every packet: Apply rewrites the idle
// generation of the maps, makes it live with one write, waits until no
// program still runs on the old one, and then brings the old one up to
// date too. A packet is judged wholly by the old or wholly by the new
// snapshot. On error the live generation is still the old snapshot or, if
// the error came after the switch, the new one.
//
// A snapshot the maps already hold changes nothing, not even the epoch:
// callers may apply every batch they compute, and tracked flows are sent
// back to the policy only when the policy changed.
func (d *Datapath) Apply(snap *policy.Snapshot) error {
	if d == nil {
		return errClosed
	}
	want, err := d.desiredFrom(snap)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.use(func() error {
		if d.holds(want) {
			return nil
		}
		return d.apply(want)
	})
}

// holds says whether both generations and the endpoint set already are
// want, as far as the loader knows: an Apply of want would write nothing
// but the epoch. Policy maps found pinned from an earlier run are unknown,
// so a restarted agent's first Apply always runs.
func (d *Datapath) holds(want *desired) bool {
	if len(d.ids) != len(want.endpoints) {
		return false
	}
	for _, info := range want.endpoints {
		if !d.ids[info.Id] {
			return false
		}
	}
	for gen := range d.slots {
		s := &d.slots[gen]
		if !maps.Equal(s.endpoints, want.endpoints) || !maps.Equal(s.ipcache, want.ipcache) || len(s.policy) != len(want.policy) {
			return false
		}
		for pid, entries := range want.policy {
			ref, ok := s.policy[pid]
			if !ok || !ref.known || !slices.Equal(ref.entries, entries) {
				return false
			}
		}
	}
	return true
}

func (d *Datapath) apply(want *desired) error {
	built := map[policyID]*ebpf.Map{}
	defer func() {
		for _, m := range built {
			_ = m.Close()
		}
	}()

	epoch := d.epoch + 1
	next := epoch & 1
	if err := d.writeSlot(next, want, built); err != nil {
		return err
	}
	// Counters exist before the first packet of a new endpoint is judged.
	ids := map[uint32]bool{}
	zero := make([]sluiceCounters, ebpf.MustPossibleCPU())
	for _, info := range want.endpoints {
		ids[info.Id] = true
		err := d.objs.SluiceCounters.Update(info.Id, zero, ebpf.UpdateNoExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("create counters of endpoint %d: %w", info.Id, err)
		}
	}

	if err := d.objs.SluiceState.Update(uint32(0), epoch, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("switch to generation %d: %w", next, err)
	}
	d.epoch = epoch
	// An update of a map-in-map returns only after an RCU grace period
	// (the kernel's maybe_wait_bpf_programs): once this returns, no
	// program that read the old generation number is still running.
	// Rewriting the slot with the map it already holds changes nothing
	// else.
	if err := d.objs.SluiceEndpoints.Update(next, d.slots[next].endpointsMap, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("wait for programs on generation %d: %w", next^1, err)
	}
	if err := d.writeSlot(next^1, want, built); err != nil {
		return err
	}

	var gone []uint32
	for id := range d.ids {
		if !ids[id] {
			gone = append(gone, id)
		}
	}
	d.ids = ids
	if len(gone) > 0 {
		return d.forget(gone)
	}
	return nil
}

// writeSlot makes generation gen hold want. The generation must not be
// live.
func (d *Datapath) writeSlot(gen uint32, want *desired, built map[policyID]*ebpf.Map) error {
	s := &d.slots[gen]
	if err := syncMap(s.ipcacheMap, s.ipcache, want.ipcache); err != nil {
		return fmt.Errorf("ipcache of generation %d: %w", gen, err)
	}
	if err := syncMap(s.endpointsMap, s.endpoints, want.endpoints); err != nil {
		return fmt.Errorf("endpoints of generation %d: %w", gen, err)
	}
	return d.writePolicies(gen, want, built)
}

// syncMap makes m, which holds have, hold want, and keeps have current.
func syncMap[K, V comparable](m *ebpf.Map, have, want map[K]V) error {
	for k := range have {
		if _, ok := want[k]; !ok {
			if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
			delete(have, k)
		}
	}
	for k, v := range want {
		if old, ok := have[k]; ok && old == v {
			continue
		}
		if err := m.Update(&k, &v, ebpf.UpdateAny); err != nil {
			return err
		}
		have[k] = v
	}
	return nil
}

// writePolicies makes the policy entries of generation gen hold want.
func (d *Datapath) writePolicies(gen uint32, want *desired, built map[policyID]*ebpf.Map) error {
	s := &d.slots[gen]
	// Each write to a map-in-map waits for an RCU grace period, so the
	// policy outer map is written in one batch of deletes and one of
	// updates.
	var gone []sluicePolicyOuterKey
	for pid := range s.policy {
		if _, ok := want.policy[pid]; !ok {
			gone = append(gone, outerKey(pid, gen))
		}
	}
	if len(gone) > 0 {
		if _, err := d.objs.SluicePolicy.BatchDelete(gone, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete policies: %w", err)
		}
		for _, k := range gone {
			delete(s.policy, policyID{k.Endpoint, policy.Direction(k.Direction)})
		}
	}
	var (
		keys []sluicePolicyOuterKey
		fds  []uint32
		pids []policyID
	)
	for pid, entries := range want.policy {
		if old, ok := s.policy[pid]; ok && old.known && slices.Equal(old.entries, entries) {
			continue
		}
		m, ok := built[pid]
		if !ok {
			var err error
			if m, err = d.buildPolicy(entries); err != nil {
				return fmt.Errorf("policy of endpoint %d: %w", pid.id, err)
			}
			built[pid] = m
		}
		keys = append(keys, outerKey(pid, gen))
		fds = append(fds, uint32(m.FD()))
		pids = append(pids, pid)
	}
	if len(keys) > 0 {
		// Each endpoint's whole inner map replaces its old one in one
		// write (built stays open until the batch is done).
		if _, err := d.objs.SluicePolicy.BatchUpdate(keys, fds, nil); err != nil {
			// Some may have been written: forget what this slot holds
			// for all of them, so the next Apply rewrites them.
			for _, pid := range pids {
				s.policy[pid] = policyRef{}
			}
			return fmt.Errorf("write policies: %w", err)
		}
		for _, pid := range pids {
			s.policy[pid] = policyRef{entries: want.policy[pid], known: true}
		}
	}
	return nil
}

func outerKey(pid policyID, gen uint32) sluicePolicyOuterKey {
	return sluicePolicyOuterKey{Endpoint: pid.id, Direction: uint8(pid.dir), Generation: uint8(gen)}
}

// buildPolicy makes a new inner policy map holding entries.
func (d *Datapath) buildPolicy(entries []policy.Entry) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(d.policyInner)
	if err != nil {
		return nil, err
	}
	keys := make([]sluicePolicyKey, len(entries), len(entries)+1)
	values := make([]uint32, len(entries), len(entries)+1)
	var mask uint32
	for i, e := range entries {
		keys[i], values[i] = policyKey(e), 1
		if e.Proto == policy.ProtoAny {
			mask |= maskProtoAny
		} else {
			mask |= 1 << e.PortPrefixLen
		}
	}
	keys = append(keys, sluicePolicyKey{Class: classMask})
	values = append(values, mask)
	for i := range keys {
		if err := m.Update(&keys[i], values[i], ebpf.UpdateAny); err != nil {
			_ = m.Close()
			return nil, err
		}
	}
	return m, nil
}

// policyKey is e's key in an inner policy map (normalize has cleared the
// port's bits past its prefix).
func policyKey(e policy.Entry) sluicePolicyKey {
	return sluicePolicyKey{
		Class: uint32(e.Class), Proto: e.Proto, Plen: e.PortPrefixLen,
		Port: [2]uint8{uint8(e.Port >> 8), uint8(e.Port)},
	}
}

// forget removes the counters and tracked flows of endpoints that left.
func (d *Datapath) forget(ids []uint32) error {
	gone := map[uint32]bool{}
	for _, id := range ids {
		gone[id] = true
	}
	if err := deleteKeys(d.objs.SluiceCounters, ids); err != nil {
		return fmt.Errorf("delete counters: %w", err)
	}
	var (
		k    sluiceCtKey
		v    sluiceCtValue
		keys []sluiceCtKey
	)
	it := d.objs.SluiceConntrack.Iterate()
	for it.Next(&k, &v) {
		if gone[k.Endpoint] {
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate conntrack: %w", err)
	}
	return deleteKeys(d.objs.SluiceConntrack, keys)
}

// desiredFrom checks snap and turns it into map contents.
func (d *Datapath) desiredFrom(snap *policy.Snapshot) (*desired, error) {
	if snap == nil {
		return nil, errors.New("nil snapshot")
	}
	opts := d.opts
	opts.setDefaults()
	want := &desired{
		endpoints: make(map[[16]byte]sluiceEndpointInfo, len(snap.Endpoints)),
		ipcache:   make(map[sluiceIpcacheKey]uint32, len(snap.IPCache)),
		policy:    map[policyID][]policy.Entry{},
	}
	if len(snap.IPCache) > opts.MaxIPCacheEntries {
		return nil, fmt.Errorf("%d ipcache entries, more than the %d the map holds", len(snap.IPCache), opts.MaxIPCacheEntries)
	}
	for _, e := range snap.IPCache {
		if !e.Prefix.IsValid() {
			return nil, fmt.Errorf("ipcache: invalid prefix %v", e.Prefix)
		}
		k := ipcacheKey(e.Prefix)
		if c, dup := want.ipcache[k]; dup && c != uint32(e.Class) {
			return nil, fmt.Errorf("ipcache: %s has classes %d and %d", e.Prefix, c, e.Class)
		}
		want.ipcache[k] = uint32(e.Class)
	}
	if len(snap.Endpoints) > opts.MaxEndpoints {
		return nil, fmt.Errorf("%d endpoints, more than the %d the maps hold", len(snap.Endpoints), opts.MaxEndpoints)
	}
	ids := map[uint32]bool{}
	for _, ep := range snap.Endpoints {
		if !ep.IP.IsValid() {
			return nil, fmt.Errorf("endpoint %d: no IP", ep.ID)
		}
		addr := addr16(ep.IP)
		if _, dup := want.endpoints[addr]; dup {
			return nil, fmt.Errorf("endpoint %d: IP %s belongs to another endpoint", ep.ID, ep.IP)
		}
		if ids[ep.ID] {
			return nil, fmt.Errorf("endpoint ID %d appears twice", ep.ID)
		}
		ids[ep.ID] = true
		want.endpoints[addr] = sluiceEndpointInfo{
			Id: ep.ID, IngressIsolated: b2u(ep.IngressIsolated), EgressIsolated: b2u(ep.EgressIsolated),
		}
		for _, dir := range []struct {
			d        policy.Direction
			isolated bool
			entries  []policy.Entry
		}{{policy.Ingress, ep.IngressIsolated, ep.Ingress}, {policy.Egress, ep.EgressIsolated, ep.Egress}} {
			if !dir.isolated {
				continue // not isolated: everything passes, entries unused
			}
			entries, err := normalize(dir.entries)
			if err != nil {
				return nil, fmt.Errorf("endpoint %d: %w", ep.ID, err)
			}
			if len(entries)+1 > opts.MaxPolicyEntries { // and the mask entry
				return nil, fmt.Errorf("endpoint %d: %d entries, more than the %d a policy map holds", ep.ID, len(entries), opts.MaxPolicyEntries-1)
			}
			if len(entries) > 0 { // none: no map, and the program drops
				want.policy[policyID{ep.ID, dir.d}] = entries
			}
		}
	}
	return want, nil
}

// normalize checks entries, clears port bits past each prefix, and sorts
// and deduplicates them so equal policies compare equal.
func normalize(in []policy.Entry) ([]policy.Entry, error) {
	out := make([]policy.Entry, 0, len(in))
	for _, e := range in {
		if uint32(e.Class) == classMask {
			return nil, fmt.Errorf("entry %+v: class %d is reserved", e, e.Class)
		}
		if e.PortPrefixLen > 16 {
			return nil, fmt.Errorf("entry %+v: port prefix longer than 16 bits", e)
		}
		if e.Proto == policy.ProtoAny && (e.PortPrefixLen != 0 || e.Port != 0) {
			return nil, fmt.Errorf("entry %+v: ProtoAny with a port", e)
		}
		e.Port &^= uint16(0xffff >> e.PortPrefixLen)
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b policy.Entry) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.PortPrefixLen, b.PortPrefixLen), cmp.Compare(a.Port, b.Port))
	})
	return slices.Compact(out), nil
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// addr16 is an address as the maps hold it: IPv6, or IPv4-mapped IPv6.
func addr16(a netip.Addr) [16]byte {
	return a.Unmap().As16()
}

func ipcacheKey(p netip.Prefix) sluiceIpcacheKey {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return sluiceIpcacheKey{Prefixlen: uint32(bits), Addr: addr16(p.Addr())}
}
