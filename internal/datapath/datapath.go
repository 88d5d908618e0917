package datapath

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// DefaultPinDir is where the node agent pins the datapath.
const DefaultPinDir = "/sys/fs/bpf/sluice"

// Defaults for the zero fields of Options.
const (
	DefaultMaxEndpoints      = 4096
	DefaultMaxIPCacheEntries = 1 << 20
	DefaultMaxPolicyEntries  = 1 << 18
	DefaultMaxConntrack      = 1 << 16
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
	// MaxPolicyEntries bounds the entries of one endpoint in one direction.
	MaxPolicyEntries int
	// MaxConntrack is the size of the connection-tracking LRU table.
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
	active      uint32
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
	maps := spec.Maps
	maps[sluiceMapSluiceEndpoints].InnerMap.MaxEntries = uint32(opts.MaxEndpoints)
	maps[sluiceMapSluiceIpcache].InnerMap.MaxEntries = uint32(opts.MaxIPCacheEntries)
	maps[sluiceMapSluicePolicy].InnerMap.MaxEntries = uint32(opts.MaxPolicyEntries)
	// Two directions in each of two generations.
	maps[sluiceMapSluicePolicy].MaxEntries = uint32(4 * opts.MaxEndpoints)
	maps[sluiceMapSluiceConntrack].MaxEntries = uint32(opts.MaxConntrack)
	maps[sluiceMapSluiceCounters].MaxEntries = uint32(opts.MaxEndpoints)
	if err := spec.Variables[sluiceVarCtTimeoutTcpNs].Set(uint64(opts.CTTimeoutTCP)); err != nil {
		return nil, err
	}
	if err := spec.Variables[sluiceVarCtTimeoutOtherNs].Set(uint64(opts.CTTimeoutOther)); err != nil {
		return nil, err
	}

	var colOpts ebpf.CollectionOptions
	if opts.PinDir != "" {
		if err := os.MkdirAll(opts.PinDir, 0o700); err != nil {
			return nil, fmt.Errorf("create pin directory: %w", err)
		}
		// Everything an agent restart must not lose: the live state and
		// the tracked flows. Not .rodata: the next run sets its own knobs.
		for _, name := range []string{
			sluiceMapSluiceState, sluiceMapSluiceEndpoints, sluiceMapSluiceIpcache,
			sluiceMapSluicePolicy, sluiceMapSluiceConntrack, sluiceMapSluiceCounters,
		} {
			maps[name].Pinning = ebpf.PinByName
		}
		colOpts.Maps.PinPath = opts.PinDir
	}

	d = &Datapath{
		opts:        opts,
		policyInner: maps[sluiceMapSluicePolicy].InnerMap.Copy(),
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
	if err := d.objs.SluiceState.Lookup(uint32(0), &d.active); err != nil {
		return nil, fmt.Errorf("read the live generation: %w", err)
	}
	d.active &= 1
	for gen := range d.slots {
		if err := d.openSlot(uint32(gen), maps); err != nil {
			return nil, err
		}
	}
	// Endpoints in pinned maps from an earlier run: Apply removes the ones
	// its snapshot lacks.
	for gen := range d.slots {
		for _, info := range d.slots[gen].endpoints {
			d.ids[info.Id] = true
		}
	}
	return d, nil
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
	for _, c := range []io.Closer{
		d.objs.SluiceFromPod, d.objs.SluiceToPod,
		d.objs.SluiceState, d.objs.SluiceEndpoints, d.objs.SluiceIpcache,
		d.objs.SluicePolicy, d.objs.SluiceConntrack, d.objs.SluiceCounters,
	} {
		if c != nil && !isNilPointer(c) {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

func isNilPointer(c io.Closer) bool {
	switch v := c.(type) {
	case *ebpf.Program:
		return v == nil
	case *ebpf.Map:
		return v == nil
	}
	return false
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
func (d *Datapath) Attach(ifindex int) (io.Closer, error) {
	if d == nil {
		return nil, errClosed
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var a *attachment
	err := d.use(func() error {
		a = &attachment{d: d}
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
	d      *Datapath
	once   sync.Once
	links  []link.Link
	pinned bool
	err    error
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

// release closes the links, unpinning them first if detach is set (a
// pinned link whose pin stays keeps the programs attached).
func (a *attachment) release(detach bool) error {
	a.once.Do(func() {
		var errs []error
		for _, l := range a.links {
			if detach && a.pinned {
				errs = append(errs, l.Unpin())
			}
			errs = append(errs, l.Close())
		}
		a.err = errors.Join(errs...)
	})
	return a.err
}
