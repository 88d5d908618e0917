package datapath

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/policy"
	"github.com/sluice-dev/sluice/test/nodelab"
)

// Real packets: two pods wired by sluice-cni in a node's netns, the
// programs attached with tcx to their host-side veths, TCP connections
// allowed and refused as the snapshot says.
func TestRealPackets(t *testing.T) {
	nodelab.RequirePrivileged(t)
	lab := nodelab.NewNode(t)
	// Addresses inside this test's own network namespaces only.
	if err := cni.WriteAllocation(lab.AllocationFile, cni.Allocation{
		Node: "node-1", Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: []string{"10.250.7.0/24"}, ExcludeIPs: []string{"10.250.7.0", "10.250.7.255"}, MaxPods: 10,
	}); err != nil {
		t.Fatal(err)
	}
	type pod struct {
		netns   ns.NetNS
		ip      netip.Addr
		ifindex int
	}
	addPod := func(id string) pod {
		p := pod{netns: nodelab.NewNetNS(t)}
		res, err := lab.Add(id, p.netns)
		if err != nil {
			t.Fatalf("CNI ADD %s: %v", id, err)
		}
		p.ip, _ = netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
		var hostVeth string
		for _, i := range res.Interfaces {
			if i.Sandbox == "" {
				hostVeth = i.Name
			}
		}
		lab.In(func() error {
			l, err := netlink.LinkByName(hostVeth)
			if err != nil {
				return fmt.Errorf("host veth %q of %s: %w", hostVeth, id, err)
			}
			p.ifindex = l.Attrs().Index
			return nil
		})
		return p
	}
	a, b := addPod("pod-a"), addPod("pod-b")

	d := newDatapath(t, Options{})
	for _, p := range []pod{a, b} {
		lab.In(func() error {
			att, err := d.Attach(p.ifindex)
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = att.Close() })
			return nil
		})
	}

	snap := func(edit func(a, b *policy.EndpointPolicy)) *policy.Snapshot {
		s := &policy.Snapshot{
			IPCache: []policy.IPCacheEntry{
				{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Class: policy.ClassWorld},
				{Prefix: netip.PrefixFrom(a.ip, 32), Class: classA},
				{Prefix: netip.PrefixFrom(b.ip, 32), Class: classB},
			},
			Endpoints: []policy.EndpointPolicy{{ID: idA, IP: a.ip}, {ID: idB, IP: b.ip}},
		}
		edit(&s.Endpoints[0], &s.Endpoints[1])
		return s
	}
	connect := func(port int) error { return roundTrip(b.netns, b.ip, port, a.netns, time.Second) }

	for _, step := range []struct {
		name    string
		snap    *policy.Snapshot
		allowed map[int]bool
	}{{
		name: "B admits A on 7777; A's ingress is closed, yet replies come back",
		snap: snap(func(pa, pb *policy.EndpointPolicy) {
			pa.IngressIsolated = true
			pb.IngressIsolated = true
			pb.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 7777, 16)}
		}),
		allowed: map[int]bool{7777: true, 7778: false},
	}, {
		name: "A's egress admits only 7778",
		snap: snap(func(pa, pb *policy.EndpointPolicy) {
			pa.EgressIsolated = true
			pa.Egress = []policy.Entry{entry(classB, policy.ProtoTCP, 7778, 16)}
		}),
		allowed: map[int]bool{7777: false, 7778: true},
	}, {
		name:    "nothing isolated",
		snap:    snap(func(pa, pb *policy.EndpointPolicy) {}),
		allowed: map[int]bool{7777: true, 7778: true},
	}} {
		t.Run(step.name, func(t *testing.T) {
			if err := d.Apply(step.snap); err != nil {
				t.Fatal(err)
			}
			for port, want := range step.allowed {
				err := connect(port)
				if got := err == nil; got != want {
					t.Errorf("A -> B:%d connected=%v (%v), want %v", port, got, err, want)
				}
			}
		})
	}
	ca, err := d.Counters(idA)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := d.Counters(idB)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counters: A %+v, B %+v", ca, cb)
	if ca.EgressAllowed == 0 || ca.IngressAllowed == 0 || ca.EgressDropped == 0 || cb.IngressDropped == 0 {
		t.Errorf("counters missed packets: A %+v, B %+v", ca, cb)
	}
}

// roundTrip listens on ip:port in server, connects from client and echoes
// a message.
func roundTrip(server ns.NetNS, ip netip.Addr, port int, client ns.NetNS, timeout time.Duration) error {
	addr := net.JoinHostPort(ip.String(), fmt.Sprint(port))
	var ln net.Listener
	if err := server.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = io.Copy(conn, conn)
	}()
	return client.Do(func(ns.NetNS) error {
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(timeout))
		const msg = "through sluice"
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echo %q", buf)
		}
		return nil
	})
}
