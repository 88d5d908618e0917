package routesync

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// Protocol marks the kernel routes this package owns (`ip route show
// proto 83`): 'S' for Sluice, a number iproute2's rt_protos and the
// common routing daemons leave free.
const Protocol netlink.RouteProtocol = 83

// Conflict is a wanted route the kernel has another owner's route for.
type Conflict struct {
	Want Route
	// Existing is the other route as `ip route` would show it: its
	// destination, gateway, device and protocol.
	Existing string
}

func (c Conflict) String() string {
	return fmt.Sprintf("route to %s: a route the agent doesn't own is there (%s); not replaced", c.Want, c.Existing)
}

// Problem is the conflict as a problem of the node's routing.
func (c Conflict) Problem() Problem {
	return Problem{Dst: c.Want.Dst.String(), Node: c.Want.Node, Reason: v1.ReasonRouteConflict, Message: c.String()}
}

// Outcome is what a Sync left in the kernel.
type Outcome struct {
	// Installed counts the owned routes in place after the sync.
	Installed int
	// Added and Removed are the routes the sync added or changed, and
	// the destinations of the owned routes it removed.
	Added   []Route
	Removed []netip.Prefix
	// Conflicts are the wanted routes left out, in the order wanted.
	Conflicts []Conflict
}

// Kernel keeps the owned routes of the main table, in NetNS (the
// caller's namespace when nil), equal to the wanted ones.
type Kernel struct {
	NetNS ns.NetNS
}

// Sync adds or changes each wanted route unless another owner has a route
// to its destination, and removes the owned routes no longer wanted. It
// goes on past a failed write and returns the errors joined.
func (k *Kernel) Sync(want []Route) (Outcome, error) {
	var out Outcome
	err := k.do(func() error {
		var err error
		out, err = syncTable(want)
		return err
	})
	return out, err
}

func (k *Kernel) do(fn func() error) error {
	if k.NetNS == nil {
		return fn()
	}
	return k.NetNS.Do(func(ns.NetNS) error { return fn() })
}

func syncTable(want []Route) (Outcome, error) {
	var out Outcome
	existing, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return out, fmt.Errorf("list routes: %w", err)
	}
	owned := map[netip.Prefix]netlink.Route{}
	others := map[netip.Prefix]netlink.Route{}
	for _, r := range existing {
		dst, ok := prefixOf(r.Dst)
		if !ok {
			continue // the default route: not a pod range
		}
		if r.Protocol == Protocol {
			owned[dst] = r
		} else {
			others[dst] = r
		}
	}
	var errs []error
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		if o, taken := others[w.Dst]; taken {
			out.Conflicts = append(out.Conflicts, Conflict{Want: w, Existing: describe(o)})
			continue
		}
		wanted[w.Dst] = true
		if r, ok := owned[w.Dst]; ok && gateway(r) == w.Via {
			out.Installed++
			continue
		}
		// Replace: a route of ours to the same destination via another
		// node (the range moved) is changed in one step.
		if err := netlink.RouteReplace(kernelRoute(w)); err != nil {
			errs = append(errs, fmt.Errorf("add route %s: %w", w, err))
			continue
		}
		out.Installed++
		out.Added = append(out.Added, w)
	}
	for dst, r := range owned {
		if wanted[dst] {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("remove route to %s: %w", dst, err))
			continue
		}
		out.Removed = append(out.Removed, dst)
	}
	return out, errors.Join(errs...)
}

func kernelRoute(r Route) *netlink.Route {
	family := netlink.FAMILY_V4
	if r.Dst.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	return &netlink.Route{
		Family:   family,
		Table:    unix.RT_TABLE_MAIN,
		Protocol: Protocol,
		Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Gw:       r.Via.AsSlice(),
	}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	a = a.Unmap()
	if a.Is4() && bits > 32 {
		bits -= 96
	}
	return netip.PrefixFrom(a, bits), true
}

// describe is r in `ip route` words, e.g. "10.0.9.0/24 via 192.168.0.99
// dev eth0 proto static": what a person looks for to find the route's
// owner. It runs in the route's namespace (for the device's name).
func describe(r netlink.Route) string {
	var b strings.Builder
	if dst, ok := prefixOf(r.Dst); ok {
		b.WriteString(dst.String())
	}
	if gw := gateway(r); gw.IsValid() {
		b.WriteString(" via " + gw.String())
	}
	if r.LinkIndex > 0 {
		dev := fmt.Sprintf("if%d", r.LinkIndex)
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		b.WriteString(" dev " + dev)
	}
	switch r.Type {
	case unix.RTN_BLACKHOLE:
		b.WriteString(" blackhole")
	case unix.RTN_UNREACHABLE:
		b.WriteString(" unreachable")
	case unix.RTN_PROHIBIT:
		b.WriteString(" prohibit")
	}
	b.WriteString(" proto " + r.Protocol.String())
	return b.String()
}

func gateway(r netlink.Route) netip.Addr {
	a, _ := netip.AddrFromSlice(r.Gw)
	return a.Unmap()
}
