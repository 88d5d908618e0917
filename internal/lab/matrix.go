package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Port is a port and protocol of a reachability matrix. Only TCP is probed.
type Port struct {
	Number   int
	Protocol string
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Number, p.Protocol) }

// ParsePorts parses "8080/TCP,9090" (TCP when the protocol is left out).
func ParsePorts(s string) ([]Port, error) {
	var ports []Port
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		num, proto, _ := strings.Cut(f, "/")
		if proto == "" {
			proto = "TCP"
		}
		proto = strings.ToUpper(proto)
		if proto != "TCP" {
			return nil, fmt.Errorf("port %q: only TCP is probed", f)
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q: want NUMBER[/TCP] with NUMBER in 1-65535", f)
		}
		ports = append(ports, Port{n, proto})
	}
	if len(ports) == 0 {
		return nil, errors.New("no ports")
	}
	return ports, nil
}

// Cell is one probe of a matrix: From connects to To on Port.
type Cell struct {
	From, To string // namespace/name
	Port     Port
}

func (c Cell) String() string { return fmt.Sprintf("%s -> %s:%s", c.From, c.To, c.Port) }

// Denied is a list of patterns FROM>TO[:PORT] of cells expected to be
// denied (every other cell is expected to be allowed). FROM and TO are
// namespace/name globs (path.Match: "shop/*", "*/*"); PORT, a number, is
// every port when left out.
type Denied []deniedPattern

type deniedPattern struct {
	from, to string
	port     int // 0: any
}

// ParseDenied parses a comma-separated list of FROM>TO[:PORT]; "" and
// "none" are the empty list.
func ParseDenied(s string) (Denied, error) {
	var d Denied
	if strings.TrimSpace(s) == "none" {
		return d, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		from, to, ok := strings.Cut(f, ">")
		if !ok {
			return nil, fmt.Errorf("denied %q: want FROM>TO[:PORT]", f)
		}
		p := deniedPattern{from: strings.TrimSpace(from), to: strings.TrimSpace(to)}
		if t, port, ok := strings.Cut(p.to, ":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.ToUpper(port), "/TCP"))
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("denied %q: bad port %q", f, port)
			}
			p.to, p.port = t, n
		}
		for _, g := range []string{p.from, p.to} {
			if _, err := path.Match(g, ""); err != nil || !strings.Contains(g, "/") {
				return nil, fmt.Errorf("denied %q: %q is not a namespace/name pattern", f, g)
			}
		}
		d = append(d, p)
	}
	return d, nil
}

// Allowed is the expected verdict of c.
func (d Denied) Allowed(c Cell) bool {
	for _, p := range d {
		fm, _ := path.Match(p.from, c.From)
		tm, _ := path.Match(p.to, c.To)
		if fm && tm && (p.port == 0 || p.port == c.Port.Number) {
			return false
		}
	}
	return true
}

// Matrix is the result of probing every pod from every other pod.
type Matrix struct {
	Pods    []*PodRecord
	Ports   []Port
	Reached map[Cell]bool
}

// Probe connects from every pod to every other pod's address on every
// port, in parallel, from inside the source's netns, and echoes a message:
// a cell is reachable when the echo comes back within timeout.
func Probe(pods []*PodRecord, ports []Port, timeout time.Duration) *Matrix {
	m := &Matrix{Pods: pods, Ports: ports, Reached: map[Cell]bool{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, src := range pods {
		for _, dst := range pods {
			if src == dst {
				continue
			}
			for _, port := range ports {
				wg.Go(func() {
					err := InNetNS(src.NetNS, func() error {
						return echoOnce(net.JoinHostPort(dst.IP, strconv.Itoa(port.Number)), timeout)
					})
					mu.Lock()
					m.Reached[Cell{src.Key(), dst.Key(), port}] = err == nil
					mu.Unlock()
				})
			}
		}
	}
	wg.Wait()
	return m
}

func echoOnce(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	msg := []byte("sluice")
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(conn, buf)
	return err
}

// Wrong lists the cells whose reachability differs from want.
func (m *Matrix) Wrong(want Denied) []Cell {
	var bad []Cell
	for _, src := range m.Pods {
		for _, dst := range m.Pods {
			if src == dst {
				continue
			}
			for _, port := range m.Ports {
				c := Cell{src.Key(), dst.Key(), port}
				if m.Reached[c] != want.Allowed(c) {
					bad = append(bad, c)
				}
			}
		}
	}
	return bad
}

// Print writes the matrix as a table, a row per source and a column per
// destination and port: ✓ reachable, ✗ not, "-" a pod to itself. With
// want, a cell that differs from it is marked "!".
func (m *Matrix) Print(w io.Writer, want Denied) {
	header := make([]string, 0, 1+len(m.Pods)*len(m.Ports))
	header = append(header, "from \\ to")
	for _, dst := range m.Pods {
		for _, port := range m.Ports {
			h := dst.Key()
			if len(m.Ports) > 1 {
				h += ":" + strconv.Itoa(port.Number)
			}
			header = append(header, h)
		}
	}
	rows := make([][]string, 0, 1+len(m.Pods))
	rows = append(rows, header)
	for _, src := range m.Pods {
		row := []string{src.Key()}
		for _, dst := range m.Pods {
			for _, port := range m.Ports {
				if src == dst {
					row = append(row, "-")
					continue
				}
				c := Cell{src.Key(), dst.Key(), port}
				s := "✗"
				if m.Reached[c] {
					s = "✓"
				}
				if want != nil && m.Reached[c] != want.Allowed(c) {
					s += "!"
				}
				row = append(row, s)
			}
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(header))
	for _, r := range rows {
		for i, s := range r {
			widths[i] = max(widths[i], len([]rune(s)))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, s := range r {
			b.WriteString(s)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(s))+2))
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

// Serve runs a TCP echo server on every port (all addresses of this
// process's netns) until SIGINT or SIGTERM.
func Serve(ports []int, log io.Writer) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for _, port := range ports {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Fprintf(log, "echo server on %s\n", ln.Addr())
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer func() { _ = conn.Close() }()
					_ = conn.SetDeadline(time.Now().Add(time.Minute))
					_, _ = io.Copy(conn, conn)
				}()
			}
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(log, "echo server stopping")
	return nil
}
