package ipam

import (
	"fmt"
	"net/netip"
)

// BlockName is the IPAMBlock object name of block p: p's canonical text
// (netip.Prefix.String) with '/' written as '-' and ':' written as 'x'.
//
//	10.244.3.0/24  -> 10.244.3.0-24
//	fd00::100/120  -> fd00xx100-120
//	::/0           -> xx-0
//
// Canonical prefix text contains only digits, a-f, '.', ':' and '/', never
// '-' or 'x', so the mapping is injective and ParseBlockName reverses it.
// The name is a valid DNS-1123 subdomain: it ends with the prefix length (a
// digit), an address begins with a hex digit or "::" (so 'x'), and dots
// only ever sit between decimal octets. It is at most 43 characters long.
// An IPv6 name always contains an 'x' and an IPv4 name never does. The
// invalid Prefix has the name "".
func BlockName(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	var buf [64]byte
	b := p.AppendTo(buf[:0])
	for i, c := range b {
		switch c {
		case '/':
			b[i] = '-'
		case ':':
			b[i] = 'x'
		}
	}
	return string(b)
}

// ParseBlockName is the prefix whose BlockName is name. Only names that
// BlockName produces are accepted, so ParseBlockName(BlockName(p)) == p and
// BlockName(ParseBlockName(name)) == name.
func ParseBlockName(name string) (netip.Prefix, error) {
	if len(name) > 64 {
		return netip.Prefix{}, fmt.Errorf("ipam: block name %.64q...: too long to be a block name", name)
	}
	var buf [64]byte
	b := buf[:0]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c == '.':
		case c == 'x':
			c = ':'
		case c == '-':
			c = '/'
		default:
			return netip.Prefix{}, fmt.Errorf("ipam: block name %q: unexpected character %q", name, name[i])
		}
		b = append(b, c)
	}
	p, err := netip.ParsePrefix(string(b))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ipam: block name %q: %w", name, err)
	}
	if canon := BlockName(p); canon != name {
		return netip.Prefix{}, fmt.Errorf("ipam: block name %q is not canonical; want %q", name, canon)
	}
	return p, nil
}
