package plugin

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// checkHost verifies the host side: the veth exists, is up, carries the
// gateway MAC and has a host route to each of the pod's addresses.
func checkHost(hostName string, ips []netip.Addr) error {
	link, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", hostName, err)
	}
	if err := checkLinkUp(link); err != nil {
		return err
	}
	if !bytes.Equal(link.Attrs().HardwareAddr, GatewayMAC) {
		return fmt.Errorf("host veth %s has MAC %s, want %s", hostName, link.Attrs().HardwareAddr, GatewayMAC)
	}
	for _, ip := range ips {
		if err := hasRoute(link, hostRoute(link.Attrs().Index, ip)); err != nil {
			return fmt.Errorf("host: %w", err)
		}
	}
	return nil
}

// checkPod runs inside the pod's netns and verifies the interface, its
// addresses, the routes and the gateway's neighbour entry.
func checkPod(ifName string, ips []netip.Addr) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("interface %s not found: %w", ifName, err)
	}
	if err := checkLinkUp(link); err != nil {
		return err
	}
	idx := link.Attrs().Index
	for _, ip := range ips {
		addrs, err := netlinksafe.AddrList(link, family(ip))
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", ifName, err)
		}
		if !hasAddr(addrs, hostNet(ip)) {
			return fmt.Errorf("interface %s does not have address %s", ifName, hostNet(ip))
		}
		for _, r := range podRoutes(idx, ip) {
			if err := hasRoute(link, r); err != nil {
				return err
			}
		}
		if err := hasGatewayNeigh(idx, ip); err != nil {
			return err
		}
	}
	return nil
}

func checkLinkUp(link netlink.Link) error {
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("interface %s is down", link.Attrs().Name)
	}
	return nil
}

func hasAddr(addrs []netlink.Addr, want *net.IPNet) bool {
	for _, a := range addrs {
		if a.IPNet != nil && a.IPNet.String() == want.String() {
			return true
		}
	}
	return false
}

// hasRoute looks for a route to want.Dst through the link with want's
// gateway (if any).
func hasRoute(link netlink.Link, want netlink.Route) error {
	fam := netlink.FAMILY_V4
	if want.Dst.IP.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	routes, err := netlinksafe.RouteList(link, fam)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", link.Attrs().Name, err)
	}
	wantDst := want.Dst.String()
	for _, r := range routes {
		dst := "0.0.0.0/0"
		if fam == netlink.FAMILY_V6 {
			dst = "::/0"
		}
		if r.Dst != nil {
			dst = r.Dst.String()
		}
		if dst == wantDst && r.Gw.Equal(want.Gw) {
			return nil
		}
	}
	via := ""
	if want.Gw != nil {
		via = " via " + want.Gw.String()
	}
	return fmt.Errorf("route to %s%s on %s is missing", wantDst, via, link.Attrs().Name)
}

func hasGatewayNeigh(idx int, ip netip.Addr) error {
	gw := gatewayFor(ip)
	neighs, err := netlink.NeighList(idx, family(ip))
	if err != nil {
		return fmt.Errorf("list neighbours: %w", err)
	}
	for _, n := range neighs {
		if n.IP.Equal(gw) && bytes.Equal(n.HardwareAddr, GatewayMAC) && n.State&netlink.NUD_PERMANENT != 0 {
			return nil
		}
	}
	return fmt.Errorf("permanent neighbour entry %s -> %s is missing", gw, GatewayMAC)
}
