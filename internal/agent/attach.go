package agent

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/sluice-dev/sluice/internal/datapath"
)

// Attacher attaches the datapath's programs to host veths. The agent's is
// datapath.Attach in the node's network namespace; unit tests use fakes.
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

// badInterfaceError is a registration naming a host interface that isn't
// there (the client's mistake: 400).
type badInterfaceError struct{ msg string }

func (e *badInterfaceError) Error() string { return e.msg }

// datapathAttacher is the production Attacher.
type datapathAttacher struct {
	dp     *datapath.Datapath
	netns  ns.NetNS // nil: the agent's own
	pinDir string
}

func (a *datapathAttacher) in(fn func() error) error {
	if a.netns == nil {
		return fn()
	}
	return a.netns.Do(func(ns.NetNS) error { return fn() })
}

// checkLink is Exists's test, as an error.
func checkLink(name string, ifindex int) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return &badInterfaceError{fmt.Sprintf("host interface %s (ifindex %d) does not exist", name, ifindex)}
		}
		return fmt.Errorf("find ifindex %d: %w", ifindex, err)
	}
	if got := l.Attrs().Name; got != name {
		return &badInterfaceError{fmt.Sprintf("host ifindex %d is %s, not %s", ifindex, got, name)}
	}
	return nil
}

func (a *datapathAttacher) Attach(name string, ifindex int, podIPs []netip.Addr) (io.Closer, error) {
	var c io.Closer
	err := a.in(func() error {
		if err := checkLink(name, ifindex); err != nil {
			return err
		}
		var err error
		c, err = a.dp.Attach(ifindex, podIPs...)
		return err
	})
	return c, err
}

func (a *datapathAttacher) Spoofed(ifindex int) (uint64, error) { return a.dp.Spoofed(ifindex) }

func (a *datapathAttacher) Exists(name string, ifindex int) (bool, error) {
	var ok bool
	err := a.in(func() error {
		err := checkLink(name, ifindex)
		var bad *badInterfaceError
		if errors.As(err, &bad) {
			return nil
		}
		ok = err == nil
		return err
	})
	return ok, err
}

// Sweep knows the datapath's pin names: links/<ifindex>_from_pod and
// links/<ifindex>_to_pod (internal/datapath's doc).
func (a *datapathAttacher) Sweep(keep map[int]bool) error {
	if err := a.dp.ForgetInterfaces(keep); err != nil {
		return err
	}
	if a.pinDir == "" {
		return nil
	}
	dir := filepath.Join(a.pinDir, "links")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		idxStr, _, ok := strings.Cut(e.Name(), "_")
		idx, err := strconv.Atoi(idxStr)
		if !ok || err != nil || keep[idx] {
			continue
		}
		gone := false
		if err := a.in(func() error {
			_, err := netlink.LinkByIndex(idx)
			var nf netlink.LinkNotFoundError
			gone = errors.As(err, &nf)
			return nil
		}); err != nil {
			errs = append(errs, err)
			continue
		}
		if gone {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
