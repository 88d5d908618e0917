package endpoint

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/sluice-dev/sluice/internal/datapath"
)

// Attacher attaches the datapath's programs to host veths. The agent's is
// DatapathAttacher; unit tests use fakes.
type Attacher interface {
	// Attach checks that ifindex is a link named name and attaches both
	// programs to it, dropping packets from the pod whose source isn't
	// one of podIPs; closing the result detaches them (and unpins).
	Attach(name string, ifindex int, podIPs []netip.Addr) (io.Closer, error)
	// Exists says whether ifindex is still a link named name.
	Exists(name string, ifindex int) (bool, error)
	// Sweep removes pinned links of interfaces that no longer exist,
	// except those of the ifindexes in keep, and forgets the pod
	// addresses of every interface not in keep.
	Sweep(keep map[int]bool) error
	// Spoofed is how many packets the veth ifindex dropped for a source
	// that isn't its pod's.
	Spoofed(ifindex int) (uint64, error)
}

// BadInterfaceError is a registration naming a host interface that isn't
// there: the client's mistake.
type BadInterfaceError struct{ Msg string }

func (e *BadInterfaceError) Error() string { return e.Msg }

// DatapathAttacher is the production Attacher: the datapath's programs on
// the host veths of the node's network namespace.
type DatapathAttacher struct {
	DP    *datapath.Datapath
	NetNS ns.NetNS // nil: the agent's own
}

func (a *DatapathAttacher) in(fn func() error) error {
	if a.NetNS == nil {
		return fn()
	}
	return a.NetNS.Do(func(ns.NetNS) error { return fn() })
}

// checkLink is Exists's test, as an error.
func checkLink(name string, ifindex int) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return &BadInterfaceError{fmt.Sprintf("host interface %s (ifindex %d) does not exist", name, ifindex)}
		}
		return fmt.Errorf("find ifindex %d: %w", ifindex, err)
	}
	if got := l.Attrs().Name; got != name {
		return &BadInterfaceError{fmt.Sprintf("host ifindex %d is %s, not %s", ifindex, got, name)}
	}
	return nil
}

// Attach checks the link and attaches the datapath to it.
func (a *DatapathAttacher) Attach(name string, ifindex int, podIPs []netip.Addr) (io.Closer, error) {
	var c io.Closer
	err := a.in(func() error {
		if err := checkLink(name, ifindex); err != nil {
			return err
		}
		var err error
		c, err = a.DP.Attach(ifindex, podIPs...)
		return err
	})
	return c, err
}

// Spoofed reads the veth's spoofed-packet count from the datapath.
func (a *DatapathAttacher) Spoofed(ifindex int) (uint64, error) { return a.DP.Spoofed(ifindex) }

// Exists checks the link in the node's network namespace.
func (a *DatapathAttacher) Exists(name string, ifindex int) (bool, error) {
	var ok bool
	err := a.in(func() error {
		err := checkLink(name, ifindex)
		var bad *BadInterfaceError
		if errors.As(err, &bad) {
			return nil
		}
		ok = err == nil
		return err
	})
	return ok, err
}

// Sweep removes what the datapath holds for interfaces not in keep that
// are gone (datapath.SweepInterfaces), in the node's network namespace.
func (a *DatapathAttacher) Sweep(keep map[int]bool) error {
	return a.in(func() error { return a.DP.SweepInterfaces(keep) })
}

// attachments are the registrations' attachments, by container ID.
type attachments struct {
	attacher Attacher
	// serial serialises attaching and detaching.
	serial sync.Mutex

	mu   sync.Mutex
	live map[string]*attached
}

// attached is a registration's attachment.
type attached struct {
	closer  io.Closer
	name    string
	ifindex int
	ips     []netip.Addr // the sources the veth admits
}

func newAttachments(a Attacher) *attachments {
	return &attachments{attacher: a, live: map[string]*attached{}}
}

// attach attaches the programs to a registration's veth, unless they
// already are; current says whether r is still the container's
// registration once it is done.
func (as *attachments) attach(cid string, r *registration, current func() bool) error {
	as.serial.Lock()
	defer as.serial.Unlock()
	cur := as.get(cid)
	if cur != nil && cur.ifindex == r.HostIfIndex && cur.name == r.HostIfName && slices.Equal(cur.ips, r.IPs) {
		return nil
	}
	if cur != nil {
		// A retried ADD rebuilt the veth.
		_ = cur.closer.Close()
		as.mu.Lock()
		delete(as.live, cid)
		as.mu.Unlock()
	}
	c, err := as.attacher.Attach(r.HostIfName, r.HostIfIndex, r.IPs)
	if err != nil {
		return err
	}
	if !current() {
		// A DELETE (or a newer PUT) came while we attached.
		_ = c.Close()
		return fmt.Errorf("endpoint %s was deleted or replaced while attaching", cid)
	}
	as.mu.Lock()
	as.live[cid] = &attached{closer: c, name: r.HostIfName, ifindex: r.HostIfIndex, ips: slices.Clone(r.IPs)}
	as.mu.Unlock()
	return nil
}

// detach detaches (and unpins) a container's programs; it returns the
// interface they were on ("": none).
func (as *attachments) detach(cid string) (string, error) {
	as.serial.Lock()
	defer as.serial.Unlock()
	as.mu.Lock()
	cur := as.live[cid]
	delete(as.live, cid)
	as.mu.Unlock()
	if cur == nil {
		return "", nil
	}
	return cur.name, cur.closer.Close()
}

func (as *attachments) get(cid string) *attached {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.live[cid]
}

// ifindexes are the attached veths by container ID.
func (as *attachments) ifindexes() map[string]int {
	as.mu.Lock()
	defer as.mu.Unlock()
	out := make(map[string]int, len(as.live))
	for cid, a := range as.live {
		out[cid] = a.ifindex
	}
	return out
}
