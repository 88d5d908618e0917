package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Go's net package has no SCTP, so the SCTP echo and probe use raw
// one-to-one (SOCK_STREAM) sockets, made non-blocking and handed to the
// runtime poller through os.NewFile: deadlines and Close then work as for
// net's connections. The code is protocol-agnostic (it works as well with
// IPPROTO_TCP, which is how it is tested on kernels without SCTP).

// SCTPSupport is nil when this kernel opens SCTP sockets, else the error
// that says it doesn't (the protocol isn't built or loadable).
var SCTPSupport = sync.OnceValue(func() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return err
	}
	_ = unix.Close(fd)
	return nil
})

// SCTPUnavailable reports whether err (SCTPSupport's) says the kernel has
// no SCTP, as opposed to a failure that must not be skipped over.
func SCTPUnavailable(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) ||
		errors.Is(err, unix.EAFNOSUPPORT)
}

func sockaddr4(ip netip.Addr, port int) (*unix.SockaddrInet4, error) {
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	if !ip.Is4() {
		return nil, fmt.Errorf("%s: the stream sockets speak IPv4 only", ip)
	}
	return &unix.SockaddrInet4{Port: port, Addr: ip.As4()}, nil
}

// ListenStream listens on ip:port (every address when ip is the zero
// Addr) with a SOCK_STREAM socket of proto, in the caller's namespace.
func ListenStream(proto int, ip netip.Addr, port int) (*os.File, error) {
	sa, err := sockaddr4(ip, port)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("listen: %w", err)
	}
	return os.NewFile(uintptr(fd), "stream-listener"), nil
}

// ServeStreamEcho accepts connections on ln and echoes them until ln is
// closed.
func ServeStreamEcho(ln *os.File) {
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

// DialStream connects a SOCK_STREAM socket of proto to ip:port by
// deadline, in the caller's namespace. The file it returns has the
// deadline set; a deadline that passes is os.ErrDeadlineExceeded.
func DialStream(proto int, ip netip.Addr, port int, deadline time.Time) (*os.File, error) {
	sa, err := sockaddr4(ip, port)
	if err != nil {
		return nil, err
	}
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
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
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
			return fail(err)
		}
		if cerr != nil {
			return fail(cerr)
		}
	}
	return f, nil
}
