package netlab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// EchoServer echoes every message it gets back to its sender, on TCP, UDP
// and SCTP ports, until Close. It is what every pod of the lab and of the
// tests serves, and what every probe expects at the other end.
type EchoServer struct {
	closers []io.Closer
}

// ListenEcho starts an echo server on each port, bound to ip (every
// address when ip is the zero Addr), in the caller's network namespace
// (call it inside Pod.Do). SCTP needs a kernel with SCTP (SCTPSupport)
// and speaks IPv4 only.
func ListenEcho(ip netip.Addr, ports []Port) (*EchoServer, error) {
	s := &EchoServer{}
	for _, p := range ports {
		c, err := listenEcho(ip, p)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("echo server on %s: %w", p, err)
		}
		s.closers = append(s.closers, c)
	}
	return s, nil
}

// ServeEcho starts an echo server on the pod's address and ports, in its
// namespace.
func (p *Pod) ServeEcho(ports ...Port) (*EchoServer, error) {
	var s *EchoServer
	err := p.Do(func() error {
		var err error
		s, err = ListenEcho(p.IP, ports)
		return err
	})
	return s, err
}

// Close stops listening; connections already accepted run on until their
// peer closes them.
func (s *EchoServer) Close() error {
	errs := make([]error, 0, len(s.closers))
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	s.closers = nil
	return errors.Join(errs...)
}

func listenEcho(ip netip.Addr, p Port) (io.Closer, error) {
	host := ""
	if ip.IsValid() {
		host = ip.String()
	}
	addr := net.JoinHostPort(host, strconv.Itoa(p.Number))
	switch p.Protocol {
	case corev1.ProtocolTCP:
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		go serveTCPEcho(ln)
		return ln, nil
	case corev1.ProtocolUDP:
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		go serveUDPEcho(pc)
		return pc, nil
	case corev1.ProtocolSCTP:
		if err := SCTPSupport(); err != nil {
			return nil, err
		}
		ln, err := ListenStream(unix.IPPROTO_SCTP, ip, p.Number)
		if err != nil {
			return nil, err
		}
		go ServeStreamEcho(ln)
		return ln, nil
	}
	return nil, fmt.Errorf("no echo server for protocol %q", p.Protocol)
}

func serveTCPEcho(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = conn.Close() }()
			_, _ = io.Copy(conn, conn)
		}()
	}
}

func serveUDPEcho(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}
