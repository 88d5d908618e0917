package netlab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// OutsideNetNSSuffix ends the name of an underlay's outside namespace.
const OutsideNetNSSuffix = "outside"

// outsidePort is the outside's port on the underlay's bridge.
const outsidePort = "ul-outside"

// Outside stands for the internet as the nodes see it: a namespace on the
// underlay whose underlay address is the node subnet's gateway, holding
// Addr, an address outside every cluster range. Replies to the nodes go
// straight back on the underlay; nothing here routes pod ranges, so a pod
// reaches Addr only with a node's address as its source.
type Outside struct {
	Addr  netip.Addr
	name  string
	netns ns.NetNS
}

// Gateway is the node subnet's gateway, where the outside answers: the
// IPv4 subnet's last usable address, far from the nodes' numbering at the
// start of the subnet.
func (u *Underlay) Gateway() netip.Addr {
	p := u.opts.IPv4
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 2 // broadcast less one
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// AddOutside creates the underlay's outside with addr (IPv4, outside the
// underlay's subnet) on its loopback.
func (u *Underlay) AddOutside(addr netip.Addr) (_ *Outside, retErr error) {
	if !addr.Is4() || u.opts.IPv4.Contains(addr) {
		return nil, fmt.Errorf("netlab: the outside's address %s must be IPv4 and outside the underlay %s", addr, u.opts.IPv4)
	}
	if u.netns == nil {
		return nil, errors.New("netlab: underlay closed")
	}
	o := &Outside{Addr: addr, name: u.opts.NetNSPrefix + OutsideNetNSSuffix}
	netns, err := AddNetNS(o.name)
	if err != nil {
		return nil, err
	}
	o.netns = netns
	defer func() {
		if retErr != nil {
			_ = o.Remove()
		}
	}()
	peer := outsidePort + "-n"
	err = u.netns.Do(func(ns.NetNS) error {
		br, err := netlink.LinkByName(underlayBridge)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: outsidePort, MasterIndex: br.Attrs().Index}, PeerName: peer}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", outsidePort, err)
		}
		if err := netlink.LinkSetUp(veth); err != nil {
			return err
		}
		p, err := netlink.LinkByName(peer)
		if err != nil {
			return err
		}
		return netlink.LinkSetNsFd(p, int(o.netns.Fd()))
	})
	if err != nil {
		return nil, fmt.Errorf("outside %s: %w", o.name, err)
	}
	gw := netip.PrefixFrom(u.Gateway(), u.opts.IPv4.Bits())
	err = o.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, 32))}); err != nil {
			return fmt.Errorf("add %s: %w", addr, err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		l, err := netlink.LinkByName(peer)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(gw)}); err != nil {
			return fmt.Errorf("add %s: %w", gw, err)
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		return nil, fmt.Errorf("configure outside %s: %w", o.name, err)
	}
	return o, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// NetNSName is the outside's namespace.
func (o *Outside) NetNSName() string { return o.name }

// Do runs fn in the outside's namespace.
func (o *Outside) Do(fn func() error) error {
	if o.netns == nil {
		return errors.New("netlab: outside removed")
	}
	return o.netns.Do(func(ns.NetNS) error { return fn() })
}

// Remove removes the outside's namespace (its veth goes with it).
// Removing a removed outside does nothing.
func (o *Outside) Remove() error {
	var errs []error
	if o.netns != nil {
		errs = append(errs, o.netns.Close())
		o.netns = nil
	}
	errs = append(errs, DelNetNS(o.name))
	return errors.Join(errs...)
}

// ServeSource answers every TCP connection to Addr:port with the source
// the outside saw (ListenSource).
func (o *Outside) ServeSource(port int) (io.Closer, error) {
	var c io.Closer
	err := o.Do(func() error {
		var err error
		c, err = ListenSource(netip.AddrPortFrom(o.Addr, uint16(port)))
		return err
	})
	return c, err
}

// ListenSource answers every TCP connection to addr, in the caller's
// namespace, with the source address and port it saw ("ip:port") and
// closes it: how a test tells whether packets were masqueraded.
func ListenSource(addr netip.AddrPort) (io.Closer, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(conn, conn.RemoteAddr().String()+"\n")
			_ = conn.Close()
		}
	}()
	return ln, nil
}

// RouteDefaultVia gives the node's host namespace a default route via gw
// (the underlay's Gateway, where its outside answers).
func (n *Node) RouteDefaultVia(gw netip.Addr) error {
	return n.Do(func() error {
		l, err := netlink.LinkByName(UnderlayIfName)
		if err != nil {
			return err
		}
		return netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()})
	})
}
