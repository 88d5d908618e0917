package ipam

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// dns1123Subdomain is Kubernetes' object name rule (IsDNS1123Subdomain).
var dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func checkName(t testing.TB, p netip.Prefix, name string) {
	t.Helper()
	if len(name) > 253 || !dns1123Subdomain.MatchString(name) {
		t.Errorf("BlockName(%v) = %q, not a DNS-1123 subdomain", p, name)
	}
	got, err := ParseBlockName(name)
	if err != nil || got != p {
		t.Errorf("ParseBlockName(%q) = %v, %v; want %v", name, got, err, p)
	}
}

func TestBlockName(t *testing.T) {
	for _, tc := range []struct{ p, want string }{
		{"10.244.3.0/24", "10.244.3.0-24"},
		{"10.0.0.16/28", "10.0.0.16-28"},
		{"0.0.0.0/0", "0.0.0.0-0"},
		{"255.255.255.255/32", "255.255.255.255-32"},
		{"fd00::100/120", "fd00xx100-120"},
		{"fd00::/120", "fd00xx-120"},
		{"::/0", "xx-0"},
		{"::1/128", "xx1-128"},
		{"2001:db8:0:1::/64", "2001xdb8x0x1xx-64"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "ffffxffffxffffxffffxffffxffffxffffxffff-128"},
		{"::ffff:10.0.0.0/120", "xxffffx10.0.0.0-120"},
		{"10.0.0.1/24", "10.0.0.1-24"}, // names any prefix, masked or not
	} {
		p := mp(tc.p)
		got := BlockName(p)
		if got != tc.want {
			t.Errorf("BlockName(%v) = %q, want %q", p, got, tc.want)
		}
		checkName(t, p, got)
	}
	if got := BlockName(netip.Prefix{}); got != "" {
		t.Errorf("BlockName(invalid) = %q, want empty", got)
	}
	// Every block of some spaces.
	for _, sp := range []struct {
		cidr string
		bl   int
	}{{"10.0.0.0/20", 28}, {"fd00:1234::/112", 124}, {"::/116", 124}} {
		s := mustSpace(t, mps(sp.cidr), sp.bl, sp.bl)
		seen := map[string]bool{}
		for {
			p, err := s.Allocate(FamilyOf(mp(sp.cidr)))
			if err != nil {
				break
			}
			name := BlockName(p)
			if seen[name] {
				t.Fatalf("name %q used twice", name)
			}
			seen[name] = true
			checkName(t, p, name)
		}
	}
}

func TestParseBlockNameErrors(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"", "ipam: block name"},
		{"10.244.3.0/24", "unexpected character '/'"},
		{"10.244.3.0-", "ipam: block name"},
		{"10.244.3.0", "ipam: block name"},
		{"10.244.3.0-33", "ipam: block name"},
		{"10.244.3-24", "ipam: block name"},
		{"FD00xx-120", "unexpected character 'F'"},
		{"fd00::-120", "unexpected character ':'"},
		{"fd00x0x0x0x0x0x0x0-120", "not canonical; want \"fd00xx-120\""},
		{"fd00x0000xx-120", "not canonical"},
		{"xx%eth0-120", "unexpected character '%'"},
		{"010.0.0.0-8", "ipam: block name"},
		{strings.Repeat("1", 300), "too long"},
	} {
		p, err := ParseBlockName(tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseBlockName(%q) = %v, %v; want error containing %q", tc.name, p, err, tc.want)
		}
	}
}

func FuzzBlockName(f *testing.F) {
	f.Add([]byte{10, 244, 3, 0}, uint8(24), "10.244.3.0-24")
	f.Add([]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, uint8(120), "fd00xx100-120")
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0}, uint8(104), "xxffffx10.0.0.0-104")
	f.Add([]byte{}, uint8(0), "xx-0")
	f.Add([]byte{1, 2, 3}, uint8(200), "-")
	f.Add([]byte{255, 255, 255, 255}, uint8(32), "fd00x0x0x0x0x0x0x0-120")
	f.Fuzz(func(t *testing.T, addr []byte, bits uint8, name string) {
		// Arbitrary strings never panic, and what parses names itself.
		if p, err := ParseBlockName(name); err == nil {
			if got := BlockName(p); got != name {
				t.Fatalf("BlockName(ParseBlockName(%q)) = %q", name, got)
			}
		}
		var a netip.Addr
		if len(addr) == 4 {
			a = netip.AddrFrom4([4]byte(addr))
		} else {
			var b [16]byte
			copy(b[:], addr)
			a = netip.AddrFrom16(b)
		}
		p := netip.PrefixFrom(a, int(bits)%(a.BitLen()+1))
		checkName(t, p, BlockName(p))
	})
}
