package netlab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// Verdict is what a probe saw.
type Verdict int

const (
	// Reached means the echo came back.
	Reached Verdict = iota
	// TimedOut means nothing came back in time: what a dropped packet
	// looks like.
	TimedOut
	// Failed is anything else (a refused connection, a wrong echo): the
	// packet got somewhere, but not to an echo server.
	Failed
)

func (v Verdict) String() string {
	switch v {
	case Reached:
		return "reached"
	case TimedOut:
		return "timed out"
	}
	return "failed"
}

// Result is a probe's verdict and, unless Reached, why.
type Result struct {
	Verdict Verdict
	Err     error
}

// Probe opens a new flow (a new socket, so a new source port) from the
// pod to to:port, sends a message and waits up to timeout for the echo.
func Probe(from *Pod, to netip.Addr, port Port, timeout time.Duration) Result {
	var err error
	if derr := from.Do(func() error {
		err = EchoOnce(to, port, time.Now().Add(timeout))
		return nil
	}); derr != nil {
		return Result{Failed, derr}
	}
	switch {
	case err == nil:
		return Result{Reached, nil}
	case IsTimeout(err):
		return Result{TimedOut, err}
	}
	return Result{Failed, err}
}

// IsTimeout says whether err is a deadline that passed.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// EchoOnce opens a new socket in the caller's namespace, sends a message
// to ip:port and reads it back, all by deadline.
func EchoOnce(ip netip.Addr, port Port, deadline time.Time) error {
	var conn io.ReadWriteCloser
	switch port.Protocol {
	case corev1.ProtocolTCP:
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port.Number)), time.Until(deadline))
		if err != nil {
			return err
		}
		_ = c.SetDeadline(deadline)
		conn = c
	case corev1.ProtocolUDP:
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port.Number))))
		if err != nil {
			return err
		}
		_ = c.SetDeadline(deadline)
		conn = c
	case corev1.ProtocolSCTP:
		c, err := DialStream(unix.IPPROTO_SCTP, ip, port.Number, deadline)
		if err != nil {
			return err
		}
		conn = c
	default:
		return fmt.Errorf("no probe for %s", port)
	}
	defer func() { _ = conn.Close() }()
	return echo(conn, []byte("sluice "+port.String()))
}

func echo(conn io.ReadWriter, msg []byte) error {
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg)+64)
	n, err := io.ReadAtLeast(conn, buf, len(msg))
	if err != nil {
		return err
	}
	if string(buf[:n]) != string(msg) {
		return fmt.Errorf("echo %q, want %q", buf[:n], msg)
	}
	return nil
}

// DialEcho opens a TCP connection from the pod to to and checks one echo
// on it within timeout; the caller keeps the connection (EchoOn reuses
// it) and closes it.
func DialEcho(from *Pod, to netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	if err := from.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", to.String(), timeout)
		return err
	}); err != nil {
		return nil, err
	}
	if err := EchoOn(conn, timeout); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// EchoOn sends a message on an open connection and reads it back within
// timeout.
func EchoOn(conn net.Conn, timeout time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	return echo(conn, []byte("sluice"))
}
