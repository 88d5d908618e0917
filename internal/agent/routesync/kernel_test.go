package routesync

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
)

// routes lists the main table's routes in the namespace as
// "dst via gw proto N", sorted.
func routes(t *testing.T, k *Kernel) []string {
	t.Helper()
	var out []string
	if err := k.do(func() error {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		for _, r := range rs {
			if r.Gw != nil {
				out = append(out, r.Dst.String()+" via "+r.Gw.String()+" proto "+r.Protocol.String())
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestKernel(t *testing.T) {
	k := &Kernel{NetNS: netlabtest.NewNetNS(t)}
	// A node's uplink with its addresses, so the gateways are on-link; a
	// stale route of an earlier run; a route someone else owns to a range
	// the agent will want; and one it won't.
	err := k.do(func() error {
		// A veth: dummy interfaces need a module the machine may lack.
		l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "uplink-peer"}
		if err := netlink.LinkAdd(l); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink-peer"}}); err != nil {
			return err
		}
		for _, a := range []string{"192.168.0.1/24", "fd00::1/64"} {
			addr, _ := netlink.ParseAddr(a)
			addr.Flags = unix.IFA_F_NODAD
			if err := netlink.AddrAdd(l, addr); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		for _, r := range []*netlink.Route{
			kernelRoute(route("10.0.7.0/24", "192.168.0.7", "gone")),
			{Dst: ipNet("10.0.9.0/24"), Gw: net.ParseIP("192.168.0.99"), Protocol: unix.RTPROT_STATIC},
			{Dst: ipNet("10.0.8.0/24"), Gw: net.ParseIP("192.168.0.98"), Protocol: unix.RTPROT_BOOT},
		} {
			if err := netlink.RouteAdd(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	static := []string{"10.0.8.0/24 via 192.168.0.98 proto boot", "10.0.9.0/24 via 192.168.0.99 proto static"}

	want := []Route{
		route("10.0.2.0/24", "192.168.0.2", "b"), route("10.0.9.0/24", "192.168.0.3", "c"),
		route("fd10:0:2::/64", "fd00::2", "b"),
	}
	out, err := k.Sync(want)
	if err != nil {
		t.Fatal(err)
	}
	if out.Installed != 2 || len(out.Added) != 2 || !slices.Equal(out.Removed, []netip.Prefix{netip.MustParsePrefix("10.0.7.0/24")}) {
		t.Errorf("first sync: %+v; want 2 added, the stale 10.0.7.0/24 removed", out)
	}
	if len(out.Conflicts) != 1 || out.Conflicts[0].Want != want[1] || out.Conflicts[0].Existing != "10.0.9.0/24 via 192.168.0.99 dev uplink proto static" {
		t.Errorf("conflicts: %+v; want the route to 10.0.9.0/24, naming the existing one", out.Conflicts)
	}
	wantTable := append([]string{"10.0.2.0/24 via 192.168.0.2 proto 83", "fd10:0:2::/64 via fd00::2 proto 83"}, static...)
	slices.Sort(wantTable)
	if got := routes(t, k); !slices.Equal(got, wantTable) {
		t.Errorf("routes after the first sync:\n got %q\nwant %q", got, wantTable)
	}

	// Nothing changed: nothing written.
	out, err = k.Sync(want)
	if err != nil || out.Installed != 2 || len(out.Added)+len(out.Removed) != 0 {
		t.Errorf("second sync: %+v, %v; want no writes", out, err)
	}

	// The range moved to another node; node b's IPv6 range left.
	out, err = k.Sync([]Route{route("10.0.2.0/24", "192.168.0.4", "d")})
	if err != nil || len(out.Added) != 1 || len(out.Removed) != 1 {
		t.Errorf("third sync: %+v, %v", out, err)
	}
	wantTable = append([]string{"10.0.2.0/24 via 192.168.0.4 proto 83"}, static...)
	if got := routes(t, k); !slices.Equal(got, wantTable) {
		t.Errorf("routes after the move:\n got %q\nwant %q", got, wantTable)
	}

	// An unreachable gateway fails that route only.
	_, err = k.Sync([]Route{route("10.0.2.0/24", "192.168.0.4", "d"), route("10.0.5.0/24", "172.16.0.5", "e")})
	if err == nil || !strings.Contains(err.Error(), "10.0.5.0/24") {
		t.Errorf("sync with an off-link gateway: %v", err)
	}

	// Nothing wanted: every owned route goes, the others stay.
	if _, err := k.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if got := routes(t, k); !slices.Equal(got, static) {
		t.Errorf("routes after the last sync:\n got %q\nwant %q", got, static)
	}
}

func ipNet(s string) *net.IPNet {
	_, n, _ := net.ParseCIDR(s)
	return n
}
