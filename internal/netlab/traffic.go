package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// Single flows between namespaces, for tests that look at one packet
// rather than a matrix.

// TCPRoundTripOn starts an echo server on serverIP:port inside server,
// connects from client, and checks the echo: a real packet each way
// through the host. A connection not answered within timeout (a dropped
// SYN) is an error.
func TCPRoundTripOn(server ns.NetNS, serverIP netip.Addr, port int, client ns.NetNS, timeout time.Duration) error {
	var s *EchoServer
	if err := server.Do(func(ns.NetNS) error {
		var err error
		s, err = ListenEcho(serverIP, []Port{TCP(port)})
		return err
	}); err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	return client.Do(func(ns.NetNS) error {
		if err := EchoOnce(serverIP, TCP(port), time.Now().Add(timeout)); err != nil {
			return fmt.Errorf("echo from %s: %w", netip.AddrPortFrom(serverIP, uint16(port)), err)
		}
		return nil
	})
}

// AddAddress adds addr (as a /32 or /128) to the interface ifName inside
// netns: a second source address a test can send from, as a pod that
// forges its source would.
func AddAddress(netns ns.NetNS, ifName string, addr netip.Addr) error {
	return netns.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(addr.BitLen(), addr.BitLen())}}
		return netlink.AddrAdd(l, a)
	})
}

// UDPDatagramFrom sends one datagram from src (an address of client's, or
// the zero Addr to let the kernel choose) to dst:port inside server and
// reports whether it arrived within timeout, and from which address.
func UDPDatagramFrom(server ns.NetNS, dst netip.Addr, port int, client ns.NetNS, src netip.Addr, timeout time.Duration) (arrived bool, from netip.Addr, err error) {
	laddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port)))
	var conn *net.UDPConn
	if err := server.Do(func(ns.NetNS) error {
		var err error
		conn, err = net.ListenUDP("udp", laddr)
		return err
	}); err != nil {
		return false, netip.Addr{}, fmt.Errorf("listen on %s: %w", laddr, err)
	}
	defer func() { _ = conn.Close() }()

	if err := client.Do(func(ns.NetNS) error {
		var local *net.UDPAddr
		if src.IsValid() {
			local = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		}
		c, err := net.DialUDP("udp", local, laddr)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		_, err = c.Write([]byte("sluice"))
		return err
	}); err != nil {
		return false, netip.Addr{}, fmt.Errorf("send from %v: %w", src, err)
	}

	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	_, peer, err := conn.ReadFromUDPAddrPort(buf)
	if IsTimeout(err) {
		return false, netip.Addr{}, nil
	}
	if err != nil {
		return false, netip.Addr{}, err
	}
	return true, peer.Addr().Unmap(), nil
}

// UDPRefused sends a datagram from client to dst:port, where nothing
// listens, and reports whether the "port unreachable" ICMP error came back
// within timeout (the next read fails with ECONNREFUSED) rather than the
// read timing out.
func UDPRefused(client ns.NetNS, dst netip.Addr, port int, timeout time.Duration) (bool, error) {
	var refused bool
	err := client.Do(func(ns.NetNS) error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		if _, err := c.Write([]byte("anyone?")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		_, err = c.Read(make([]byte, 64))
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			refused = true
			return nil
		case IsTimeout(err):
			return nil
		case err == nil:
			return errors.New("a datagram came back from a port nobody listens on")
		}
		return err
	})
	return refused, err
}

// TCXPrograms counts the tcx programs attached to the interface ifName, in
// both directions, in the namespace the calling thread is in (call it
// inside Node.Do or a NetNS's Do).
func TCXPrograms(ifName string) (int, error) {
	l, err := netlink.LinkByName(ifName)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		r, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
		if err != nil {
			return 0, fmt.Errorf("query tcx programs on %s: %w", ifName, err)
		}
		n += len(r.Programs)
	}
	return n, nil
}
