package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/sluice-dev/sluice/internal/cni"
)

// wire builds the attachment: a veth whose host side (HostVethName, MAC
// GatewayMAC) stays in the plugin's netns and whose peer is created
// directly inside the pod's netns under CNI_IFNAME, so no half-moved pair
// can exist. Leftovers of a killed run are removed first.
func wire(conf *cni.Config, args *skel.CmdArgs, podNS ns.NetNS, ips []netip.Addr, reused bool) (*current.Result, error) {
	hostName := cni.HostVethName(conf.HostVethPrefix, args.ContainerID, args.IfName)
	// A link with this attachment's host name can only be a leftover of an
	// earlier run for the same attachment; deleting it deletes its peer.
	if err := deleteLink(hostName); err != nil {
		return nil, err
	}
	if reused {
		// A retried ADD: the reservation is ours, so is any interface of
		// that name left in the pod.
		if err := podNS.Do(func(ns.NetNS) error { return deleteLink(args.IfName) }); err != nil {
			return nil, err
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName, MTU: conf.MTU, HardwareAddr: GatewayMAC},
		PeerName:      args.IfName,
		PeerMTU:       uint32(conf.MTU),
		PeerNamespace: netlink.NsFd(int(podNS.Fd())),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("create veth %s: an interface %s already exists in netns %s", hostName, args.IfName, args.Netns)
		}
		return nil, fmt.Errorf("create veth %s with peer %s in netns %s: %w", hostName, args.IfName, args.Netns, err)
	}
	host, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return nil, fmt.Errorf("find host veth %s: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("set host veth %s up: %w", hostName, err)
	}
	var pod netlink.Link
	err = podNS.Do(func(ns.NetNS) error {
		var err error
		pod, err = configurePod(args.IfName, ips)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("configure %s in netns %s: %w", args.IfName, args.Netns, err)
	}
	if err := configureHost(host, ips, pod.Attrs().HardwareAddr); err != nil {
		return nil, fmt.Errorf("configure host veth %s: %w", hostName, err)
	}
	return buildResult(conf, args, hostName, pod, ips), nil
}

// configurePod runs inside the pod's netns.
func configurePod(ifName string, ips []netip.Addr) (netlink.Link, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", ifName, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", ifName, err)
	}
	idx := link.Attrs().Index
	for _, ip := range ips {
		addr := &netlink.Addr{IPNet: hostNet(ip)}
		if ip.Is6() {
			addr.Flags = syscall.IFA_F_NODAD // a /128 no one else can hold
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return nil, fmt.Errorf("add address %s: %w", addr.IPNet, err)
		}
		gw := gatewayFor(ip)
		if err := netlink.NeighSet(&netlink.Neigh{
			LinkIndex: idx, Family: family(ip), State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: GatewayMAC,
		}); err != nil {
			return nil, fmt.Errorf("add neighbour %s: %w", gw, err)
		}
		for _, r := range podRoutes(idx, ip) {
			if err := netlink.RouteReplace(&r); err != nil {
				return nil, fmt.Errorf("add route %s: %w", r, err)
			}
		}
	}
	return link, nil
}

// podRoutes are the routes in the pod for one address family: for IPv4
// the gateway /32 scope link and the default route via the gateway onlink;
// for IPv6 the default route via fe80::1 onlink (link-local, so on the
// link by definition).
func podRoutes(idx int, ip netip.Addr) []netlink.Route {
	gw := gatewayFor(ip)
	var out []netlink.Route
	if ip.Is4() {
		out = append(out, netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK})
	}
	bits := ip.BitLen()
	out = append(out, netlink.Route{
		LinkIndex: idx,
		Dst:       &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)},
		Gw:        gw,
		Flags:     int(netlink.FLAG_ONLINK),
	})
	return out
}

// configureHost gives the host a permanent neighbour entry and a host
// route for each of the pod's addresses.
func configureHost(host netlink.Link, ips []netip.Addr, podMAC net.HardwareAddr) error {
	idx := host.Attrs().Index
	for _, ip := range ips {
		if err := netlink.NeighSet(&netlink.Neigh{
			LinkIndex: idx, Family: family(ip), State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: podMAC,
		}); err != nil {
			return fmt.Errorf("add neighbour %s: %w", ip, err)
		}
		r := hostRoute(idx, ip)
		if err := netlink.RouteReplace(&r); err != nil {
			return fmt.Errorf("add route %s: %w", r, err)
		}
	}
	return nil
}

func hostRoute(idx int, ip netip.Addr) netlink.Route {
	r := netlink.Route{LinkIndex: idx, Dst: hostNet(ip)}
	if ip.Is4() {
		r.Scope = netlink.SCOPE_LINK
	}
	return r
}

func buildResult(conf *cni.Config, args *skel.CmdArgs, hostName string, pod netlink.Link, ips []netip.Addr) *current.Result {
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostName, Mac: GatewayMAC.String(), Mtu: conf.MTU},
			{Name: args.IfName, Mac: pod.Attrs().HardwareAddr.String(), Mtu: conf.MTU, Sandbox: args.Netns},
		},
	}
	for _, ip := range ips {
		res.IPs = append(res.IPs, &current.IPConfig{Interface: current.Int(1), Address: *hostNet(ip), Gateway: gatewayFor(ip)})
		for _, r := range podRoutes(0, ip) {
			route := &types.Route{Dst: *r.Dst, GW: r.Gw}
			if r.Scope == netlink.SCOPE_LINK {
				scope := int(netlink.SCOPE_LINK)
				route.Scope = &scope
			}
			res.Routes = append(res.Routes, route)
		}
	}
	return res
}

// unwire deletes the host veth (its peer goes with it) and, if the pod's
// netns still exists, a veth left there under CNI_IFNAME. Missing pieces
// are not errors.
func unwire(conf *cni.Config, args *skel.CmdArgs) error {
	hostName := cni.HostVethName(conf.HostVethPrefix, args.ContainerID, args.IfName)
	if err := deleteLink(hostName); err != nil {
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	if args.Netns == "" {
		return nil
	}
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil // the netns is gone, and the interface with it
	}
	defer func() { _ = podNS.Close() }()
	err = podNS.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(args.IfName)
		if err != nil || link.Type() != "veth" {
			return nil
		}
		return deleteLink(args.IfName)
	})
	if err != nil {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("in netns %s: %v", args.Netns, err), "")
	}
	return nil
}

// removeStaleVeths deletes the host veths with the prefix that are not in
// keep; it is GC's sweep and runs in the plugin's netns.
func removeStaleVeths(prefix string, keep map[string]bool) []error {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return []error{fmt.Errorf("list links: %w", err)}
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if l.Type() != "veth" || !isHostVethName(prefix, name) || keep[name] {
			continue
		}
		if err := deleteLink(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// deleteLink deletes the link in the current netns; a missing link is fine.
func deleteLink(name string) error {
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV)
}

func hostNet(ip netip.Addr) *net.IPNet {
	return &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}
}

func gatewayFor(ip netip.Addr) net.IP {
	if ip.Is4() {
		return GatewayIPv4
	}
	return GatewayIPv6
}

func family(ip netip.Addr) int {
	if ip.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
