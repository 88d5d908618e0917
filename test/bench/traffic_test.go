package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// startServer listens on port in the server pod and serves every kind.
func startServer(b *testing.B, server p2pPod, port int) {
	b.Helper()
	var ln net.Listener
	if err := server.NetNS.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(server.IP.String(), strconv.Itoa(port)))
		return err
	}); err != nil {
		b.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(conn) })
		}
	})
}

func serve(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	msg := make([]byte, p2pMsg)
	if _, err := io.ReadFull(conn, msg); err != nil {
		return
	}
	switch msg[0] {
	case kindRR:
		for {
			if _, err := conn.Write(msg); err != nil {
				return
			}
			if _, err := io.ReadFull(conn, msg); err != nil {
				return
			}
		}
	case kindConn:
		_, _ = conn.Write(msg)
	case kindBulk:
		want := binary.BigEndian.Uint64(msg[8:])
		buf := make([]byte, 256<<10)
		var got uint64
		for got < want {
			n, err := conn.Read(buf)
			got += uint64(n)
			if err != nil {
				return
			}
		}
		_, _ = conn.Write(msg[8:16])
	}
}

// measure takes one configuration's figures.
func measure(b *testing.B, client p2pPod, server netip.Addr) p2pFigures {
	b.Helper()
	var f p2pFigures
	var err error
	if f.rrP50, err = rrP50(client, server, p2pRRSamples); err != nil {
		b.Fatalf("request/response: %v", err)
	}
	if f.connP50, err = connP50(client, server); err != nil {
		b.Fatalf("connections: %v", err)
	}
	if f.mbps, err = throughput(client, server); err != nil {
		b.Fatalf("bulk: %v", err)
	}
	return f
}

func dial(client p2pPod, server netip.Addr, port int, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := client.NetNS.Do(func(ns.NetNS) error {
		var err error
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(server.String(), strconv.Itoa(port)), timeout)
		return err
	})
	if conn != nil {
		_ = conn.SetDeadline(time.Now().Add(p2pTimeout))
	}
	return conn, err
}

// dialOnce connects to port and closes the connection.
func dialOnce(client p2pPod, server netip.Addr, port int, timeout time.Duration) error {
	conn, err := dial(client, server, port, timeout)
	if err != nil {
		return err
	}
	return conn.Close()
}

// rrP50 is the median of n round trips on one connection, after a warm-up.
func rrP50(client p2pPod, server netip.Addr, n int) (time.Duration, error) {
	conn, err := dial(client, server, p2pPort, p2pTimeout)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close() }()
	req, resp := make([]byte, p2pMsg), make([]byte, p2pMsg)
	req[0] = kindRR
	samples := make([]time.Duration, 0, n)
	for i := range p2pRRWarmup + n {
		start := time.Now()
		if _, err := conn.Write(req); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			return 0, err
		}
		if i >= p2pRRWarmup {
			samples = append(samples, time.Since(start))
		}
	}
	return median(samples), nil
}

// connP50 is the median of p2pConns connect, request, response, close.
func connP50(client p2pPod, server netip.Addr) (time.Duration, error) {
	addr := net.JoinHostPort(server.String(), strconv.Itoa(p2pPort))
	samples := make([]time.Duration, 0, p2pConns)
	// Sockets are made in the client's netns: the whole loop runs there.
	err := client.NetNS.Do(func(ns.NetNS) error {
		req, resp := make([]byte, p2pMsg), make([]byte, p2pMsg)
		req[0] = kindConn
		for range p2pConns {
			start := time.Now()
			conn, err := net.DialTimeout("tcp", addr, p2pTimeout)
			if err != nil {
				return err
			}
			_ = conn.SetDeadline(time.Now().Add(p2pTimeout))
			if _, err := conn.Write(req); err != nil {
				_ = conn.Close()
				return err
			}
			if _, err := io.ReadFull(conn, resp); err != nil {
				_ = conn.Close()
				return err
			}
			if err := conn.Close(); err != nil {
				return err
			}
			samples = append(samples, time.Since(start))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return median(samples), nil
}

// throughput is the median MB/s (10^6 bytes) of p2pBulkRuns sends of
// p2pBulkBytes, each timed until the server acknowledges the last byte.
func throughput(client p2pPod, server netip.Addr) (float64, error) {
	runs := make([]float64, 0, p2pBulkRuns)
	data := make([]byte, 64<<10)
	for range p2pBulkRuns {
		conn, err := dial(client, server, p2pPort, p2pTimeout)
		if err != nil {
			return 0, err
		}
		hdr := make([]byte, p2pMsg)
		hdr[0] = kindBulk
		binary.BigEndian.PutUint64(hdr[8:], p2pBulkBytes)
		start := time.Now()
		err = func() error {
			defer func() { _ = conn.Close() }()
			if _, err := conn.Write(hdr); err != nil {
				return err
			}
			for sent := 0; sent < p2pBulkBytes; sent += len(data) {
				if _, err := conn.Write(data); err != nil {
					return err
				}
			}
			ack := make([]byte, 8)
			if _, err := io.ReadFull(conn, ack); err != nil {
				return err
			}
			if binary.BigEndian.Uint64(ack) != p2pBulkBytes {
				return errors.New("short bulk acknowledgement")
			}
			return nil
		}()
		if err != nil {
			return 0, err
		}
		runs = append(runs, p2pBulkBytes/time.Since(start).Seconds()/1e6)
	}
	return medianF(runs), nil
}

func median(s []time.Duration) time.Duration {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(s []float64) float64 {
	s = slices.Clone(s)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// report logs the per-round table and reports each configuration's
// medians. figs[round][cfg] are the figures of the configurations names
// (the first is the baseline the others' ratios are taken against); the
// verdict is target's ratios.
func report(b *testing.B, names []string, figs [][]p2pFigures, target int) {
	b.Helper()
	configs := len(names)
	// vals[metric][cfg][round], ratios[metric][cfg][round] (against the
	// same round's baseline).
	const rr, conn, mbps, numMetric = 0, 1, 2, 3
	var vals, ratios [numMetric][][]float64
	for m := range numMetric {
		vals[m], ratios[m] = make([][]float64, configs), make([][]float64, configs)
	}
	for _, f := range figs {
		for cfg := range configs {
			for m, v := range [numMetric]float64{us(f[cfg].rrP50), us(f[cfg].connP50), f[cfg].mbps} {
				vals[m][cfg] = append(vals[m][cfg], v)
			}
		}
		for m := range numMetric {
			base := vals[m][0][len(vals[m][0])-1]
			for cfg := range configs {
				ratios[m][cfg] = append(ratios[m][cfg], vals[m][cfg][len(vals[m][cfg])-1]/base)
			}
		}
	}

	// Rounds are columns and the verdict shares the table's first line
	// (the testing package keeps only the first ten lines a benchmark
	// logs); the last column is the median across rounds.
	table := [][]string{{"round"}}
	for r := range figs {
		table[0] = append(table[0], strconv.Itoa(r+1))
	}
	table[0] = append(table[0], "median")
	for m, name := range [numMetric]string{"rr_us", "conn_us", "MB/s"} {
		format := "%.0f"
		if m == rr {
			format = "%.1f"
		}
		table = append(table,
			append([]string{name}, row(vals[m], format, "/")...),
			append([]string{name + "_ratio"}, row(ratios[m][1:], "%.3f", ",")...))
	}
	rrT, connT := medianF(ratios[rr][target]), medianF(ratios[conn][target])
	verdict := "met"
	if rrT > 1.10 || connT > 1.10 {
		verdict = "missed"
	}
	b.Logf("Target %s/%s <= 1.10 at %d rules: rr %.3f, conn %.3f: %s. Per round: p50 latencies (us) and median MB/s of %s; ratios of %s against the same round's %s\n%s",
		names[target], names[0], p2pRules, rrT, connT, verdict, strings.Join(names, "/"), strings.Join(names[1:], ","), names[0], formatTable(table))

	for cfg, n := range names {
		b.ReportMetric(medianF(vals[rr][cfg]), "rr_p50_us_"+n)
		b.ReportMetric(medianF(vals[conn][cfg]), "conn_p50_us_"+n)
		b.ReportMetric(medianF(vals[mbps][cfg]), "MB/s_"+n)
		if cfg != 0 {
			b.ReportMetric(medianF(ratios[rr][cfg]), "rr_ratio_"+n)
			b.ReportMetric(medianF(ratios[conn][cfg]), "conn_ratio_"+n)
			b.ReportMetric(medianF(ratios[mbps][cfg]), "MB/s_ratio_"+n)
		}
	}
}

// benchRounds is the number of interleaved rounds: def, or the variable
// env when set (at least 5, so that a median means something).
func benchRounds(b *testing.B, env string, def int) int {
	b.Helper()
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	rounds, err := strconv.Atoi(v)
	if err != nil || rounds < 5 {
		b.Fatalf("%s=%q: want a number, at least 5", env, v)
	}
	return rounds
}

// row is one table row's cells: per round, the round's value of each
// series joined with sep, then the series' medians across rounds.
func row(series [][]float64, format, sep string) []string {
	join := func(pick func([]float64) float64) string {
		parts := make([]string, len(series))
		for i, s := range series {
			parts[i] = fmt.Sprintf(format, pick(s))
		}
		return strings.Join(parts, sep)
	}
	cells := make([]string, 0, len(series[0])+1)
	for r := range series[0] {
		cells = append(cells, join(func(s []float64) float64 { return s[r] }))
	}
	return append(cells, join(medianF))
}

// formatTable right-aligns every column but the first to the widest cell.
func formatTable(table [][]string) string {
	width := 0
	for _, cells := range table {
		for _, c := range cells[1:] {
			width = max(width, len(c))
		}
	}
	var t strings.Builder
	for i, cells := range table {
		if i > 0 {
			t.WriteByte('\n')
		}
		fmt.Fprintf(&t, "%-14s", cells[0])
		for _, c := range cells[1:] {
			fmt.Fprintf(&t, " %*s", width, c)
		}
	}
	return t.String()
}
