package datapath

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// The pinned tcx links (the package doc's pin layout): Attach pins a
// veth's two links as links/<ifindex>_from_pod and links/<ifindex>_to_pod
// under PinDir. A pinned link keeps its program attached while no agent
// runs, and outlives its interface as a pin of a defunct link: the sweep
// below is what removes those.

// linksDir is where Attach pins links ("" without a PinDir).
func (d *Datapath) linksDir() string {
	if d.opts.PinDir == "" {
		return ""
	}
	return filepath.Join(d.opts.PinDir, "links")
}

// linkPinIfindex is the interface index a pin in the links directory is
// named after; false for a name not of Attach's making.
func linkPinIfindex(name string) (int, bool) {
	idx, hook, ok := strings.Cut(name, "_")
	if !ok || (hook != "from_pod" && hook != "to_pod") {
		return 0, false
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n <= 0 || strconv.Itoa(n) != idx {
		return 0, false
	}
	return n, true
}

// SweepInterfaces forgets what the datapath holds for interfaces an agent
// no longer knows: the pod addresses of every veth not in keep, and the
// pinned links of every interface not in keep that no longer exists in the
// caller's network namespace. An agent restart re-attaches the veths it
// knows and then sweeps the rest (interfaces deleted while it was down).
//
// A link of an interface that still exists stays pinned even when keep
// lacks it: its programs keep enforcing until someone detaches them.
func (d *Datapath) SweepInterfaces(keep map[int]bool) error {
	if err := d.ForgetInterfaces(keep); err != nil {
		return err
	}
	dir := d.linksDir()
	if dir == "" {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		idx, ok := linkPinIfindex(e.Name())
		if !ok || keep[idx] {
			continue
		}
		_, err := netlink.LinkByIndex(idx)
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			continue // there (or unknown): leave it
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
