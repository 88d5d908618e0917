package datapath

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// DefaultPinDir is where the node agent pins the datapath.
const DefaultPinDir = "/sys/fs/bpf/sluice"

// Defaults for the zero fields of Options. The map sizes the operator
// configures are the API's defaults (v1.BPFMapSizes), so that an agent
// without the operator's configuration sizes its maps as one with it.
const (
	DefaultMaxEndpoints      = 4096
	DefaultMaxIPCacheEntries = int(v1.DefaultBPFIPCacheEntries)
	DefaultMaxPolicyEntries  = int(v1.DefaultBPFPolicyEntries)
	DefaultMaxConntrack      = int(v1.DefaultBPFConntrackEntries)
	DefaultCTTimeoutTCP      = 6 * time.Hour
	DefaultCTTimeoutOther    = time.Minute
)

// Options configure New. Zero fields take the defaults above.
type Options struct {
	// PinDir, if set, is the bpffs directory the maps (and links made by
	// Attach) are pinned in, and reused from when they exist; empty pins
	// nothing (tests, the CLI).
	PinDir string

	// MaxEndpoints bounds the endpoints of one snapshot.
	MaxEndpoints int
	// MaxIPCacheEntries bounds the prefixes of one snapshot's ipcache.
	MaxIPCacheEntries int
	// MaxPolicyEntries bounds the entries of one endpoint in one direction
	// (the size of each inner policy map).
	MaxPolicyEntries int
	// MaxConntrack is the size of the connection-tracking LRU table, shared
	// by every endpoint (preallocated).
	MaxConntrack int
	// CTTimeoutTCP and CTTimeoutOther: how long after its last packet a
	// flow's replies still pass.
	CTTimeoutTCP   time.Duration
	CTTimeoutOther time.Duration
}

func (o *Options) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxEndpoints, DefaultMaxEndpoints)
	def(&o.MaxIPCacheEntries, DefaultMaxIPCacheEntries)
	def(&o.MaxPolicyEntries, DefaultMaxPolicyEntries)
	def(&o.MaxConntrack, DefaultMaxConntrack)
	if o.CTTimeoutTCP <= 0 {
		o.CTTimeoutTCP = DefaultCTTimeoutTCP
	}
	if o.CTTimeoutOther <= 0 {
		o.CTTimeoutOther = DefaultCTTimeoutOther
	}
}

// Datapath is the loaded BPF datapath: its programs and maps, and what the
// loader knows the maps hold.
type Datapath struct {
	opts Options

	// mu serialises Apply, Attach and Close.
	mu sync.Mutex
	// life guards the kernel objects: readers use them, Close takes it.
	life   sync.RWMutex
	closed bool

	objs        sluiceObjects
	policyInner *ebpf.MapSpec
	slots       [2]slot
	// epoch is the live snapshot's number in sluice_state; its low bit
	// is the live generation. Each Apply bumps it, which is what tells
	// the programs that a tracked flow's forward packets must meet the
	// policy again.
	epoch uint32
	// ids are the endpoints of the last snapshot applied.
	ids   map[uint32]bool
	links map[*attachment]struct{}
}

// New loads the programs and maps (pinned under opts.PinDir when set,
// reusing maps already pinned there) and cleans up everything it made if
// anything fails.
func New(opts Options) (d *Datapath, err error) {
	opts.setDefaults()
	spec, err := loadSluice()
	if err != nil {
		return nil, err
	}
	if err := configure(spec, opts); err != nil {
		return nil, err
	}
	colOpts, err := pinOptions(spec.Maps, opts.PinDir)
	if err != nil {
		return nil, err
	}

	d = &Datapath{
		opts:        opts,
		policyInner: spec.Maps[sluiceMapSluicePolicy].InnerMap.Copy(),
		ids:         map[uint32]bool{},
		links:       map[*attachment]struct{}{},
	}
	if err := spec.LoadAndAssign(&d.objs, &colOpts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load datapath: %+v", verr)
		}
		return nil, fmt.Errorf("load datapath: %w", err)
	}
	defer func() {
		if err != nil {
			_ = d.Close()
			d = nil
		}
	}()
	if err := d.readBack(spec.Maps); err != nil {
		return nil, err
	}
	return d, nil
}

// configure sizes every map from opts and sets the knobs in .rodata.
func configure(spec *ebpf.CollectionSpec, opts Options) error {
	maps := spec.Maps
	maps[sluiceMapSluiceEndpoints].InnerMap.MaxEntries = uint32(opts.MaxEndpoints)
	maps[sluiceMapSluiceIpcache].InnerMap.MaxEntries = uint32(opts.MaxIPCacheEntries)
	maps[sluiceMapSluicePolicy].InnerMap.MaxEntries = uint32(opts.MaxPolicyEntries)
	// Two directions in each of two generations.
	maps[sluiceMapSluicePolicy].MaxEntries = uint32(4 * opts.MaxEndpoints)
	maps[sluiceMapSluiceConntrack].MaxEntries = uint32(opts.MaxConntrack)
	maps[sluiceMapSluiceCounters].MaxEntries = uint32(opts.MaxEndpoints)
	maps[sluiceMapSluiceIfaces].MaxEntries = uint32(opts.MaxEndpoints)
	if err := spec.Variables[sluiceVarCtTimeoutTcpNs].Set(uint64(opts.CTTimeoutTCP)); err != nil {
		return err
	}
	return spec.Variables[sluiceVarCtTimeoutOtherNs].Set(uint64(opts.CTTimeoutOther))
}

// pinOptions marks the maps to pin under dir (none if dir is empty) and
// clears pins there that this build can't reuse.
func pinOptions(maps map[string]*ebpf.MapSpec, dir string) (ebpf.CollectionOptions, error) {
	var colOpts ebpf.CollectionOptions
	if dir == "" {
		return colOpts, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return colOpts, fmt.Errorf("create pin directory: %w", err)
	}
	// Everything an agent restart must not lose: the live state and the
	// tracked flows. Not .rodata: the next run sets its own knobs.
	for _, name := range []string{
		sluiceMapSluiceState, sluiceMapSluiceEndpoints, sluiceMapSluiceIpcache,
		sluiceMapSluicePolicy, sluiceMapSluiceConntrack, sluiceMapSluiceCounters,
		sluiceMapSluiceIfaces,
	} {
		maps[name].Pinning = ebpf.PinByName
	}
	colOpts.Maps.PinPath = dir
	return colOpts, unpinIncompatible(dir, maps)
}

// readBack learns what the loaded maps hold: the live epoch, both
// generations, and the endpoints in maps pinned by an earlier run (Apply
// removes the ones its snapshot lacks).
func (d *Datapath) readBack(maps map[string]*ebpf.MapSpec) error {
	if err := d.objs.SluiceState.Lookup(uint32(0), &d.epoch); err != nil {
		return fmt.Errorf("read the live epoch: %w", err)
	}
	for gen := range d.slots {
		if err := d.openSlot(uint32(gen), maps); err != nil {
			return err
		}
	}
	for gen := range d.slots {
		for _, info := range d.slots[gen].endpoints {
			d.ids[info.Id] = true
		}
	}
	return nil
}

// unpinIncompatible handles pins this build can't use (an upgrade that
// changed a map's key, value, size or inner map type, or other Options):
// if any pinned map is incompatible it removes the pins of all of them,
// so New starts from fresh maps instead of failing. All, not just the
// incompatible ones, because they only make sense together: conntrack
// entries carry epochs of sluice_state, the per-generation maps belong to
// its generation bit. Until the new programs replace the old ones on the
// pinned links (Attach), the old programs keep enforcing with the old
// maps, which they hold open; tracked flows and counters are lost.
func unpinIncompatible(dir string, maps map[string]*ebpf.MapSpec) error {
	var pinned []string
	var incompatible []error
	for name, spec := range maps {
		if spec.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open pinned map %s: %w", path, err)
		}
		pinned = append(pinned, path)
		if err := pinnedCompatible(spec, m); err != nil {
			incompatible = append(incompatible, fmt.Errorf("%s: %w", name, err))
		}
		_ = m.Close()
	}
	if len(incompatible) == 0 {
		return nil
	}
	for _, path := range pinned {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace pinned maps (%v): %w", errors.Join(incompatible...), err)
		}
	}
	return nil
}

// pinnedCompatible is spec.Compatible(m), and for a map of maps also of
// an inner map m holds against spec.InnerMap (MapSpec.Compatible doesn't
// look at inner maps, and a new inner map type needs a new outer map).
func pinnedCompatible(spec *ebpf.MapSpec, m *ebpf.Map) error {
	if err := spec.Compatible(m); err != nil || spec.InnerMap == nil {
		return err
	}
	key := make([]byte, m.KeySize())
	if err := m.NextKey(nil, &key); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil // empty: nothing to compare
	} else if err != nil {
		return err
	}
	var inner *ebpf.Map
	if err := m.Lookup(key, &inner); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return err
	}
	defer func() { _ = inner.Close() }()
	return spec.InnerMap.Compatible(inner)
}

// Close releases the programs and maps. Pinned maps and links stay in
// bpffs (that is what pinning is for); unpinned links made by Attach are
// detached. Close is idempotent and safe on a nil Datapath.
func (d *Datapath) Close() error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.life.Lock()
	defer d.life.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for a := range d.links {
		errs = append(errs, a.release(false))
	}
	d.links = nil
	for i := range d.slots {
		for _, m := range []*ebpf.Map{d.slots[i].endpointsMap, d.slots[i].ipcacheMap} {
			if m != nil {
				errs = append(errs, m.Close())
			}
		}
	}
	// bpf2go's Close covers every program and map of the object, and
	// closing a nil one (a load that failed half-way) is a no-op.
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// use runs fn with the kernel objects, unless Close has run.
func (d *Datapath) use(fn func() error) error {
	if d == nil {
		return errClosed
	}
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return errClosed
	}
	return fn()
}

var errClosed = errors.New("datapath is closed")

// Counters are an endpoint's packet counts since it was first applied.
type Counters struct {
	IngressAllowed, IngressDropped uint64
	EgressAllowed, EgressDropped   uint64
}

// Counters sums an endpoint's per-CPU counters.
func (d *Datapath) Counters(id uint32) (Counters, error) {
	var sum Counters
	err := d.use(func() error {
		var perCPU []sluiceCounters
		if err := d.objs.SluiceCounters.Lookup(id, &perCPU); err != nil {
			return fmt.Errorf("counters of endpoint %d: %w", id, err)
		}
		for _, c := range perCPU {
			sum.IngressAllowed += c.IngressAllowed
			sum.IngressDropped += c.IngressDropped
			sum.EgressAllowed += c.EgressAllowed
			sum.EgressDropped += c.EgressDropped
		}
		return nil
	})
	return sum, err
}

// ResetConntrack forgets every tracked flow, so that probes made with
// Verdict don't see each other's flows as replies.
func (d *Datapath) ResetConntrack() error {
	return d.use(func() error {
		var (
			k    sluiceCtKey
			v    sluiceCtValue
			keys []sluiceCtKey
		)
		it := d.objs.SluiceConntrack.Iterate()
		for it.Next(&k, &v) {
			keys = append(keys, k)
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("iterate conntrack: %w", err)
		}
		return deleteKeys(d.objs.SluiceConntrack, keys)
	})
}

func deleteKeys[K any](m *ebpf.Map, keys []K) error {
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// Attach attaches sluice_from_pod to the tcx ingress and sluice_to_pod to
// the tcx egress of a pod's host-side veth, in the caller's network
// namespace. With a PinDir the links are pinned (links/<ifindex>_from_pod,
// links/<ifindex>_to_pod), and links already pinned there are updated to
// this Datapath's programs in place. Closing the result detaches (and
// unpins) both.
//
// podIPs are the addresses the pod may send from (at most one of each
// family): the veth is registered in sluice_ifaces before the programs
// attach, so from the first packet sluice_from_pod drops any other source
// (anti-spoofing; IPv6 link-local and unspecified sources pass). Without
// podIPs the veth's sources aren't checked.
func (d *Datapath) Attach(ifindex int, podIPs ...netip.Addr) (io.Closer, error) {
	if d == nil {
		return nil, errClosed
	}
	info, err := ifaceInfo(podIPs)
	if err != nil {
		return nil, fmt.Errorf("attach to ifindex %d: %w", ifindex, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var a *attachment
	err = d.use(func() error {
		a = &attachment{d: d, ifindex: uint32(ifindex)}
		if info != nil {
			if err := d.objs.SluiceIfaces.Update(a.ifindex, info, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("register ifindex %d: %w", ifindex, err)
			}
			a.registered = true
		}
		for _, h := range []struct {
			name string
			prog *ebpf.Program
			at   ebpf.AttachType
		}{
			{"from_pod", d.objs.SluiceFromPod, ebpf.AttachTCXIngress},
			{"to_pod", d.objs.SluiceToPod, ebpf.AttachTCXEgress},
		} {
			var pin string
			if d.opts.PinDir != "" {
				pin = filepath.Join(d.opts.PinDir, "links", fmt.Sprintf("%d_%s", ifindex, h.name))
			}
			l, err := attachTCX(ifindex, h.prog, h.at, pin)
			if err != nil {
				_ = a.release(true)
				return fmt.Errorf("attach %s to ifindex %d: %w", h.name, ifindex, err)
			}
			a.links = append(a.links, l)
			a.pinned = pin != ""
		}
		d.links[a] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// ifaceInfo is a veth's sluice_ifaces value for podIPs (nil for none).
func ifaceInfo(podIPs []netip.Addr) (*sluiceIfaceInfo, error) {
	if len(podIPs) == 0 {
		return nil, nil
	}
	info := &sluiceIfaceInfo{}
	var have4, have6 bool
	for _, ip := range podIPs {
		ip = ip.Unmap()
		switch {
		case !ip.IsValid() || ip.IsUnspecified():
			return nil, fmt.Errorf("pod address %v is not a unicast address", ip)
		case ip.Is4() && !have4:
			info.Addr[0], have4 = addr16(ip), true
		case ip.Is6() && !have6:
			info.Addr[1], have6 = addr16(ip), true
		default:
			return nil, fmt.Errorf("pod addresses %v: more than one of a family", podIPs)
		}
	}
	return info, nil
}

// Spoofed is how many packets sluice_from_pod dropped on the veth ifindex
// (registered by Attach with podIPs) for a source that isn't its pod's.
func (d *Datapath) Spoofed(ifindex int) (uint64, error) {
	var info sluiceIfaceInfo
	err := d.use(func() error {
		if err := d.objs.SluiceIfaces.Lookup(uint32(ifindex), &info); err != nil {
			return fmt.Errorf("ifindex %d: %w", ifindex, err)
		}
		return nil
	})
	return info.Spoofed, err
}

// ForgetInterfaces removes the pod addresses of every veth but those in
// keep (an agent restart re-attaches the veths it knows, then forgets the
// rest: interfaces deleted while it was down).
func (d *Datapath) ForgetInterfaces(keep map[int]bool) error {
	return d.use(func() error {
		var (
			idx   uint32
			info  sluiceIfaceInfo
			stale []uint32
		)
		it := d.objs.SluiceIfaces.Iterate()
		for it.Next(&idx, &info) {
			if !keep[int(idx)] {
				stale = append(stale, idx)
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("iterate interfaces: %w", err)
		}
		return deleteKeys(d.objs.SluiceIfaces, stale)
	})
}

func attachTCX(ifindex int, prog *ebpf.Program, at ebpf.AttachType, pin string) (link.Link, error) {
	if pin != "" {
		if old, err := link.LoadPinnedLink(pin, nil); err == nil {
			if err := old.Update(prog); err == nil {
				return old, nil
			}
			// The interface is gone or the link defunct: start afresh.
			_ = old.Unpin()
			_ = old.Close()
		}
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: at})
	if err != nil {
		return nil, err
	}
	if pin != "" {
		if err := os.MkdirAll(filepath.Dir(pin), 0o700); err != nil {
			_ = l.Close()
			return nil, err
		}
		if err := l.Pin(pin); err != nil {
			_ = l.Close()
			return nil, err
		}
	}
	return l, nil
}

// attachment is what Attach returns.
type attachment struct {
	d          *Datapath
	ifindex    uint32
	registered bool // in sluice_ifaces
	once       sync.Once
	links      []link.Link
	pinned     bool
	err        error
}

// Close detaches both programs.
func (a *attachment) Close() error {
	a.d.mu.Lock()
	defer a.d.mu.Unlock()
	if a.d.links != nil {
		delete(a.d.links, a)
	}
	return a.release(true)
}

// release closes the links, unpinning them and forgetting the veth's
// addresses first if detach is set (a pinned link whose pin stays keeps
// the programs attached, and they keep checking the sources).
func (a *attachment) release(detach bool) error {
	a.once.Do(func() {
		var errs []error
		for _, l := range a.links {
			if detach && a.pinned {
				errs = append(errs, l.Unpin())
			}
			errs = append(errs, l.Close())
		}
		if detach && a.registered {
			err := a.d.objs.SluiceIfaces.Delete(a.ifindex)
			if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, err)
			}
		}
		a.err = errors.Join(errs...)
	})
	return a.err
}
