package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/internal/policy"
)

// service is a protocol and port every pod serves an echo on.
type service struct {
	proto corev1.Protocol
	port  int
}

func (s service) String() string {
	switch s.proto {
	case corev1.ProtocolUDP:
		return "udp/" + strconv.Itoa(s.port)
	case corev1.ProtocolSCTP:
		return "sctp/" + strconv.Itoa(s.port)
	}
	return "tcp/" + strconv.Itoa(s.port)
}

// protoNumber is the IP protocol number the policy package uses.
func (s service) protoNumber() uint8 {
	switch s.proto {
	case corev1.ProtocolUDP:
		return policy.ProtoUDP
	case corev1.ProtocolSCTP:
		return policy.ProtoSCTP
	}
	return policy.ProtoTCP
}

// services every pod serves: two TCP ports, a third TCP port with the
// number of the UDP one (to tell the protocols apart), UDP and SCTP.
var services = []service{
	{corev1.ProtocolTCP, 8080},
	{corev1.ProtocolTCP, 9090},
	{corev1.ProtocolTCP, 5353},
	{corev1.ProtocolUDP, 5353},
	{corev1.ProtocolSCTP, 3868},
}

// sctpSupport is nil when this kernel opens SCTP sockets, else the error
// that says it doesn't (the protocol isn't built or loadable).
var sctpSupport = sync.OnceValue(func() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return err
	}
	_ = unix.Close(fd)
	return nil
})

// sctpUnavailable reports whether err says the kernel has no SCTP: only
// then may the SCTP probes be skipped.
func sctpUnavailable(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) ||
		errors.Is(err, unix.EAFNOSUPPORT)
}

// probedServices are the services this kernel can carry; SCTP is left out
// (and the test says so) only when the kernel has no SCTP sockets.
func probedServices(t *testing.T) []service {
	t.Helper()
	err := sctpSupport()
	if err != nil && !sctpUnavailable(err) {
		t.Fatalf("SCTP socket: %v", err)
	}
	var out []service
	for _, s := range services {
		if s.proto == corev1.ProtocolSCTP && err != nil {
			t.Logf("SKIP the %s probes: this kernel has no SCTP sockets (%v)", s, err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// startServers starts p's echo servers, one per service (SCTP only when
// the kernel has it), bound to p's address in p's netns.
func (w *world) startServers(p *testPod) {
	w.t.Helper()
	for _, s := range services {
		addr := net.JoinHostPort(p.ip.String(), strconv.Itoa(s.port))
		var closer io.Closer
		err := p.netns.Do(func(ns.NetNS) error {
			switch s.proto {
			case corev1.ProtocolTCP:
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return err
				}
				closer = ln
				go serveTCP(ln)
			case corev1.ProtocolUDP:
				pc, err := net.ListenPacket("udp", addr)
				if err != nil {
					return err
				}
				closer = pc
				go serveUDP(pc)
			case corev1.ProtocolSCTP:
				if sctpSupport() != nil {
					return nil
				}
				ln, err := listenRawStream(unix.IPPROTO_SCTP, p.ip, s.port)
				if err != nil {
					return err
				}
				closer = ln
				go serveRawStream(ln)
			}
			return nil
		})
		if err != nil {
			w.t.Fatalf("%s: %s server: %v", p, s, err)
		}
		if closer != nil {
			w.t.Cleanup(func() { _ = closer.Close() })
		}
	}
}

func serveTCP(ln net.Listener) {
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

func serveUDP(pc net.PacketConn) {
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

// The SCTP echo uses raw one-to-one (SOCK_STREAM) sockets, made
// non-blocking and handed to the runtime poller through os.NewFile, so
// that deadlines and Close work as for net's connections. The code is
// protocol-agnostic (it works as well with IPPROTO_TCP).

// listenRawStream listens on ip:port with a SOCK_STREAM socket of proto,
// in the caller's netns.
func listenRawStream(proto int, ip netip.Addr, port int) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: ip.As4()}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("listen: %w", err)
	}
	return os.NewFile(uintptr(fd), "stream-listener"), nil
}

// serveRawStream accepts connections on ln and echoes them until ln is
// closed.
func serveRawStream(ln *os.File) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return
	}
	for {
		var nfd int
		var aerr error
		if err := rc.Read(func(fd uintptr) bool {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return !errors.Is(aerr, unix.EAGAIN)
		}); err != nil {
			return // closed
		}
		if aerr != nil {
			if errors.Is(aerr, unix.EBADF) || errors.Is(aerr, unix.EINVAL) {
				return
			}
			continue
		}
		conn := os.NewFile(uintptr(nfd), "stream-conn")
		go func() {
			defer func() { _ = conn.Close() }()
			buf := make([]byte, 1500)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				if _, err := conn.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

// dialRawStream connects a SOCK_STREAM socket of proto to ip:port within
// timeout, in the caller's netns. The file it returns has the deadline set.
func dialRawStream(proto int, ip netip.Addr, port int, deadline time.Time) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "stream-dial")
	fail := func(err error) (*os.File, error) {
		_ = f.Close()
		return nil, err
	}
	if err := f.SetDeadline(deadline); err != nil {
		return fail(err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cerr = unix.Connect(int(fd), &unix.SockaddrInet4{Port: port, Addr: ip.As4()})
	}); err != nil {
		return fail(err)
	}
	if cerr != nil && !errors.Is(cerr, unix.EINPROGRESS) {
		return fail(fmt.Errorf("connect: %w", cerr))
	}
	if errors.Is(cerr, unix.EINPROGRESS) {
		// Wait for writability; connected once the peer name is known,
		// failed once SO_ERROR says so. Checking before each wait leaves no
		// window for a completion to go unnoticed.
		if err := rc.Write(func(fd uintptr) bool {
			if soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
				cerr = err
				return true
			} else if soerr != 0 && !errors.Is(unix.Errno(soerr), unix.EINPROGRESS) && !errors.Is(unix.Errno(soerr), unix.EALREADY) {
				cerr = fmt.Errorf("connect: %w", unix.Errno(soerr))
				return true
			}
			if _, err := unix.Getpeername(int(fd)); err == nil {
				cerr = nil
				return true
			}
			return false
		}); err != nil {
			return fail(err) // os.ErrDeadlineExceeded on a timeout
		}
		if cerr != nil {
			return fail(cerr)
		}
	}
	return f, nil
}

// verdict is what a probe saw.
type verdict int

const (
	passed  verdict = iota // the echo came back
	dropped                // timed out: the policy dropped it
	broken                 // anything else: a refusal, a wrong echo... a test bug
)

func (v verdict) String() string {
	return [...]string{"allowed", "denied", "ERROR"}[v]
}

// probeTimeout bounds each probe: connect (or the first datagram's echo)
// and the echo. A local veth answers in well under a millisecond.
const probeTimeout = 300 * time.Millisecond

// probeOnce sends an echo from src to dst on s and says what came back.
func probeOnce(src, dst *testPod, s service) (verdict, error) {
	var err error
	if derr := src.netns.Do(func(ns.NetNS) error {
		err = echoOnce(dst.ip, s, time.Now().Add(probeTimeout))
		return nil
	}); derr != nil {
		return broken, derr
	}
	switch {
	case err == nil:
		return passed, nil
	case isTimeout(err):
		return dropped, err
	}
	return broken, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// echoOnce opens a new socket (a new source port, so a new flow) in the
// caller's netns, sends a message to ip on s and reads it back.
func echoOnce(ip netip.Addr, s service, deadline time.Time) error {
	var conn io.ReadWriteCloser
	switch s.proto {
	case corev1.ProtocolTCP:
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(s.port)), time.Until(deadline))
		if err != nil {
			return err
		}
		_ = c.SetDeadline(deadline)
		conn = c
	case corev1.ProtocolUDP:
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(s.port))))
		if err != nil {
			return err
		}
		_ = c.SetDeadline(deadline)
		conn = c
	case corev1.ProtocolSCTP:
		c, err := dialRawStream(unix.IPPROTO_SCTP, ip, s.port, deadline)
		if err != nil {
			return err
		}
		conn = c
	default:
		return fmt.Errorf("no probe for %s", s)
	}
	defer func() { _ = conn.Close() }()
	msg := []byte("sluice " + s.String())
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(conn, buf, len(msg))
	if err != nil {
		return err
	}
	if string(buf[:n]) != string(msg) {
		return fmt.Errorf("echo %q, want %q", buf[:n], msg)
	}
	return nil
}
