package lab

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/internal/netlab"
)

// ParsePorts parses "8080/TCP,9090" (TCP when the protocol is left out).
// Only TCP: the lab's echo server (Serve) speaks nothing else.
func ParsePorts(s string) ([]netlab.Port, error) {
	var ports []netlab.Port
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netlab.ParsePort(f)
		if err == nil && p.Protocol != corev1.ProtocolTCP {
			err = fmt.Errorf("port %q: only TCP is probed", f)
		}
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		return nil, errors.New("no ports")
	}
	return ports, nil
}

// cellString is how the lab names a cell: FROM -> TO:PORT/PROTO.
func cellString(c netlab.Cell) string {
	return fmt.Sprintf("%s -> %s:%s", c.From.Key(), c.To.Key(), c.Port)
}

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
func (d Denied) Allowed(c netlab.Cell) bool {
	for _, p := range d {
		fm, _ := path.Match(p.from, c.From.Key())
		tm, _ := path.Match(p.to, c.To.Key())
		if fm && tm && (p.port == 0 || p.port == c.Port.Number) {
			return false
		}
	}
	return true
}

// Matrix is a probed matrix laid out as the lab prints it: a row per
// source pod, a column per destination pod and port.
type Matrix struct {
	Pods    []*netlab.Pod
	Ports   []netlab.Port
	Results map[netlab.Cell]netlab.Result
}

func newMatrix(pods []*netlab.Pod, ports []netlab.Port, m *netlab.Matrix) *Matrix {
	out := &Matrix{Pods: pods, Ports: ports, Results: make(map[netlab.Cell]netlab.Result, len(m.Cells))}
	for i, c := range m.Cells {
		out.Results[c] = m.Results[i]
	}
	return out
}

// Print writes the matrix as a table, a row per source and a column per
// destination and port: ✓ reached, ✗ not, "-" a pod to itself. With
// want, a cell that disagrees with it (netlab.Agrees) is marked "!".
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
				c := netlab.Cell{From: src, To: dst, Port: port}
				r, s := m.Results[c], "✗"
				if r.Verdict == netlab.Reached {
					s = "✓"
				}
				if want != nil && !netlab.Agrees(want.Allowed(c), r) {
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
