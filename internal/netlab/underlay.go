package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults of UnderlayOptions.
var (
	DefaultUnderlayIPv4 = netip.MustParsePrefix("192.168.200.0/24")
	DefaultUnderlayIPv6 = netip.MustParsePrefix("fd5c:1ce:200::/64")
)

// UnderlayIfName is a node's interface on the underlay, in its host
// namespace: what a real node calls eth0.
const UnderlayIfName = "underlay0"

// underlayBridge is the bridge in the underlay's namespace.
const underlayBridge = "br0"

// UnderlayNetNSSuffix ends the name of an underlay's network namespace.
const UnderlayNetNSSuffix = "underlay"

// UnderlayOptions say where an underlay lives and which subnets it has.
type UnderlayOptions struct {
	// NetNSPrefix starts the name of the underlay's namespace
	// (NetNSPrefix+"underlay"). Required.
	NetNSPrefix string
	// IPv4 and IPv6 are the node subnets (DefaultUnderlayIPv4 and
	// DefaultUnderlayIPv6 when invalid, i.e. unset).
	IPv4, IPv6 netip.Prefix
}

// Underlay is the network the nodes share: a namespace holding a Linux
// bridge, which each node joins with a veth from its host namespace. It
// stands for the switch of a real cluster's node network; the machine's
// own network is not part of it.
type Underlay struct {
	opts  UnderlayOptions
	netns ns.NetNS
}

// CreateUnderlay creates the underlay's namespace and its bridge. It fails
// when the namespace exists.
func CreateUnderlay(opts UnderlayOptions) (_ *Underlay, retErr error) {
	if opts.NetNSPrefix == "" {
		return nil, errors.New("netlab: an underlay needs a NetNSPrefix")
	}
	if !opts.IPv4.IsValid() {
		opts.IPv4 = DefaultUnderlayIPv4
	}
	if !opts.IPv6.IsValid() {
		opts.IPv6 = DefaultUnderlayIPv6
	}
	if !opts.IPv4.Addr().Is4() || !opts.IPv6.Addr().Is6() {
		return nil, fmt.Errorf("netlab: underlay subnets %s and %s: want an IPv4 and an IPv6 prefix", opts.IPv4, opts.IPv6)
	}
	opts.IPv4, opts.IPv6 = opts.IPv4.Masked(), opts.IPv6.Masked()
	u := &Underlay{opts: opts}
	if NetNSExists(u.NetNSName()) {
		return nil, fmt.Errorf("netns %s exists: an underlay with prefix %q is up already", u.NetNSName(), opts.NetNSPrefix)
	}
	netns, err := AddNetNS(u.NetNSName())
	if err != nil {
		return nil, err
	}
	u.netns = netns
	defer func() {
		if retErr != nil {
			_ = u.Remove()
		}
	}()
	err = u.netns.Do(func(ns.NetNS) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: underlayBridge}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		return netlink.LinkSetUp(br)
	})
	if err != nil {
		return nil, fmt.Errorf("underlay %s: %w", u.NetNSName(), err)
	}
	return u, nil
}

// NetNSName is the name of the underlay's namespace.
func (u *Underlay) NetNSName() string { return u.opts.NetNSPrefix + UnderlayNetNSSuffix }

// Options are the options the underlay was made with, defaults filled in.
func (u *Underlay) Options() UnderlayOptions { return u.opts }

// NodeAddrs are the IPv4 and IPv6 addresses of the i-th node (from 0) on
// the underlay: the i+1-th address of each subnet, so that callers number
// their nodes without keeping a registry.
func (u *Underlay) NodeAddrs(i int) []netip.Addr {
	return []netip.Addr{nthAddr(u.opts.IPv4, i+1), nthAddr(u.opts.IPv6, i+1)}
}

// nthAddr is the n-th address of p (n small: it adds to the last bytes).
func nthAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Addr().AsSlice()
	carry := n
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		s := int(b[i]) + carry
		b[i], carry = byte(s), s>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Remove removes the underlay's namespace: the bridge and the bridge ends
// of the nodes' veths go with it, and so do the nodes' ends (a veth dies
// with its peer). Removing a removed underlay does nothing.
func (u *Underlay) Remove() error {
	var errs []error
	if u.netns != nil {
		errs = append(errs, u.netns.Close())
		u.netns = nil
	}
	errs = append(errs, DelNetNS(u.NetNSName()))
	return errors.Join(errs...)
}

// JoinUnderlay connects the node's host namespace to the underlay: a veth
// whose node end (UnderlayIfName) has addrs, each with its subnet's prefix
// length, and whose other end is a port of the underlay's bridge. Each
// address must be in one of the underlay's subnets, and the first names
// the bridge port, so it must differ between nodes.
func (n *Node) JoinUnderlay(u *Underlay, addrs ...netip.Addr) error {
	if len(addrs) == 0 {
		return errors.New("netlab: joining an underlay needs an address")
	}
	var prefixes []netip.Prefix
	for _, a := range addrs {
		switch {
		case u.opts.IPv4.Contains(a):
			prefixes = append(prefixes, netip.PrefixFrom(a, u.opts.IPv4.Bits()))
		case u.opts.IPv6.Contains(a):
			prefixes = append(prefixes, netip.PrefixFrom(a, u.opts.IPv6.Bits()))
		default:
			return fmt.Errorf("netlab: %s is in neither underlay subnet (%s, %s)", a, u.opts.IPv4, u.opts.IPv6)
		}
	}
	if n.host == nil || u.netns == nil {
		return errors.New("netlab: node or underlay closed")
	}
	// The port's name comes from the node's first address: unique on the
	// bridge, and it says which node a port belongs to.
	port := fmt.Sprintf("ul-%x", addrs[0].AsSlice()[len(addrs[0].AsSlice())-4:])
	peer := port + "-n"
	err := u.netns.Do(func(ns.NetNS) error {
		br, err := netlink.LinkByName(underlayBridge)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index}, PeerName: peer}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", port, err)
		}
		if err := netlink.LinkSetUp(veth); err != nil {
			return err
		}
		p, err := netlink.LinkByName(peer)
		if err != nil {
			return err
		}
		return netlink.LinkSetNsFd(p, int(n.host.Fd()))
	})
	if err != nil {
		return fmt.Errorf("join %s to underlay %s: %w", n.HostNetNSName(), u.NetNSName(), err)
	}
	err = n.Do(func() error {
		l, err := netlink.LinkByName(peer)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetName(l, UnderlayIfName); err != nil {
			return err
		}
		for _, p := range prefixes {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
			if p.Addr().Is6() {
				// No duplicate address detection: the address works at
				// once, and the lab's numbering already keeps addresses
				// apart.
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := netlink.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("add %s: %w", p, err)
			}
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		return fmt.Errorf("configure %s in %s: %w", UnderlayIfName, n.HostNetNSName(), err)
	}
	return nil
}
