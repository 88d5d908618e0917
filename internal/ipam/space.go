package ipam

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
)

// Family is an IP address family.
type Family int

// The IP families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String is "ipv4", "ipv6" or "family(N)".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("family(%d)", int(f))
}

// bits is the address width of f, 0 for an unknown family.
func (f Family) bits() int {
	switch f {
	case IPv4:
		return 32
	case IPv6:
		return 128
	}
	return 0
}

// FamilyOf is the family of p: IPv4 for an IPv4 prefix, IPv6 for an IPv6
// one (IPv4-mapped IPv6 prefixes included), 0 for the invalid prefix.
func FamilyOf(p netip.Prefix) Family {
	switch {
	case !p.IsValid():
		return 0
	case p.Addr().Is4():
		return IPv4
	}
	return IPv6
}

var (
	// ErrExhausted is wrapped by Allocate when no block of the family is free.
	ErrExhausted = errors.New("no free block")
	// ErrInUse is wrapped by Claim when the block is already claimed.
	ErrInUse = errors.New("block already in use")
	// ErrNotClaimed is wrapped by Release when the block is inside the
	// space but not claimed.
	ErrNotClaimed = errors.New("block not claimed")
)

// maxBlockBits bounds blockLen-cidrLen so block counts fit a uint64 with room.
const maxBlockBits = 62

// Space is the address space of one pool carved into blocks: aligned
// prefixes of one length per family, inside the pool's CIDRs.
type Space struct {
	mu       sync.Mutex
	blockLen [2]int // by famIdx; 0 when the family has no CIDR
	cidrs    []*cidrSpace
}

// cidrSpace is one CIDR of a Space and the state of its blocks.
type cidrSpace struct {
	prefix    netip.Prefix
	family    Family
	width     int // address bits: 32 or 128
	blockLen  int
	blockBits int // blockLen - prefix.Bits(): the space has 2^blockBits blocks
	base      u128
	used      bitmap
}

func famIdx(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// NewSpace is the space of blocks of length blockLenV4 (IPv4) and
// blockLenV6 (IPv6) inside cidrs. Every CIDR must be valid, masked, not an
// IPv4-mapped IPv6 prefix, at most as long as its family's block length,
// and hold at most 2^62 blocks; no two may overlap; there must be at least
// one. The block length of a family without CIDRs is ignored (it may be 0),
// otherwise it must be 1..32 (IPv4) or 1..128 (IPv6).
func NewSpace(cidrs []netip.Prefix, blockLenV4, blockLenV6 int) (*Space, error) {
	return newSpace(cidrs, blockLenV4, blockLenV6, denseLevelMaxWords)
}

func newSpace(cidrs []netip.Prefix, blockLenV4, blockLenV6 int, denseMax uint64) (*Space, error) {
	if len(cidrs) == 0 {
		return nil, errors.New("ipam: new space: no cidrs")
	}
	s := &Space{}
	for i, c := range cidrs {
		if !c.IsValid() {
			return nil, fmt.Errorf("ipam: new space: cidr #%d is not a valid prefix", i)
		}
		f := FamilyOf(c)
		if c.Addr().Is4In6() {
			return nil, fmt.Errorf("ipam: new space: cidr %s is an ipv4-mapped ipv6 prefix; give ipv4 ranges in ipv4 form", c)
		}
		if m := c.Masked(); m != c {
			return nil, fmt.Errorf("ipam: new space: cidr %s has host bits set; want %s", c, m)
		}
		for _, prev := range cidrs[:i] {
			if c.Overlaps(prev) {
				return nil, fmt.Errorf("ipam: new space: cidr %s overlaps cidr %s", c, prev)
			}
		}
		bl := blockLenV4
		if f == IPv6 {
			bl = blockLenV6
		}
		if bl < 1 || bl > f.bits() {
			return nil, fmt.Errorf("ipam: new space: cidr %s: %s block length %d is out of range 1..%d", c, f, bl, f.bits())
		}
		if c.Bits() > bl {
			return nil, fmt.Errorf("ipam: new space: cidr %s is smaller than one /%d block", c, bl)
		}
		if d := bl - c.Bits(); d > maxBlockBits {
			return nil, fmt.Errorf("ipam: new space: cidr %s holds 2^%d /%d blocks, more than 2^%d; use a longer cidr or a shorter block length", c, d, bl, maxBlockBits)
		}
		s.blockLen[famIdx(f)] = bl
		s.cidrs = append(s.cidrs, &cidrSpace{
			prefix:    c,
			family:    f,
			width:     f.bits(),
			blockLen:  bl,
			blockBits: bl - c.Bits(),
			base:      u128Of(c.Addr()),
			used:      newBitmap(bl-c.Bits(), denseMax),
		})
	}
	return s, nil
}

// BlockLen is the prefix length of the blocks of family f, 0 when the
// space has no CIDR of that family.
func (s *Space) BlockLen(f Family) int {
	if f != IPv4 && f != IPv6 {
		return 0
	}
	return s.blockLen[famIdx(f)]
}

// Allocate claims and returns the lowest free block of family f, trying
// the CIDRs in the order given to NewSpace. The error wraps ErrExhausted
// when every block of f is in use or the space has no CIDR of family f.
func (s *Space) Allocate(f Family) (netip.Prefix, error) {
	if f != IPv4 && f != IPv6 {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate: unknown family %d", int(f))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bl := s.blockLen[famIdx(f)]
	if bl == 0 {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate %s block: space has no %s cidr: %w", f, f, ErrExhausted)
	}
	for _, c := range s.cidrs {
		if c.family != f || c.used.used == c.used.n {
			continue
		}
		i, ok := c.used.lowestFree()
		if !ok {
			continue // unreachable: used < n
		}
		c.used.set(i)
		return c.block(i), nil
	}
	return netip.Prefix{}, fmt.Errorf("ipam: allocate %s /%d block: %w", f, bl, ErrExhausted)
}

// Claim marks block in use. It fails when block is not a block of the
// space (not inside one of its CIDRs, not of the family's block length, or
// not aligned), and with an error wrapping ErrInUse when it is claimed.
func (s *Space) Claim(block netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, i, err := s.locate(block)
	if err != nil {
		return fmt.Errorf("ipam: claim %s: %w", block, err)
	}
	if !c.used.set(i) {
		return fmt.Errorf("ipam: claim %s: %w", block, ErrInUse)
	}
	return nil
}

// Release returns block to the pool at once. It fails when block is not a
// block of the space, and with an error wrapping ErrNotClaimed when it
// isn't claimed.
func (s *Space) Release(block netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, i, err := s.locate(block)
	if err != nil {
		return fmt.Errorf("ipam: release %s: %w", block, err)
	}
	if !c.used.clear(i) {
		return fmt.Errorf("ipam: release %s: %w", block, ErrNotClaimed)
	}
	return nil
}

// InUse reports whether block is a claimed block of the space.
func (s *Space) InUse(block netip.Prefix) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, i, err := s.locate(block)
	return err == nil && c.used.test(i)
}

// Contains reports whether block is a block of the space: inside one of
// its CIDRs, of the family's block length, and aligned (masked).
func (s *Space) Contains(block netip.Prefix) bool {
	_, _, err := s.locate(block) // reads only immutable fields
	return err == nil
}

// locate finds the CIDR and block index of block.
func (s *Space) locate(block netip.Prefix) (*cidrSpace, uint64, error) {
	f := FamilyOf(block)
	if f == 0 {
		return nil, 0, errors.New("not a valid prefix")
	}
	bl := s.blockLen[famIdx(f)]
	if bl == 0 {
		return nil, 0, fmt.Errorf("space has no %s cidr", f)
	}
	if block.Bits() != bl {
		return nil, 0, fmt.Errorf("wrong length: %s blocks are /%d", f, bl)
	}
	if m := block.Masked(); m != block {
		return nil, 0, fmt.Errorf("not aligned to a /%d boundary (host bits set; want %s)", bl, m)
	}
	for _, c := range s.cidrs {
		if c.family == f && c.prefix.Contains(block.Addr()) {
			return c, c.index(block.Addr()), nil
		}
	}
	return nil, 0, errors.New("not inside any cidr of the space")
}

// index is the number of the block at a, which is inside c.
func (c *cidrSpace) index(a netip.Addr) uint64 {
	return u128Of(a).shr(uint(c.width-c.blockLen)).lo & (1<<uint(c.blockBits) - 1)
}

// block is block number i of c.
func (c *cidrSpace) block(i uint64) netip.Prefix {
	v := c.base.or(u128{lo: i}.shl(uint(c.width - c.blockLen)))
	return netip.PrefixFrom(v.addr(c.family), c.blockLen)
}

// Stats are the block and address counts of one family of a Space.
// Address counts saturate at math.MaxUint64 (huge IPv6 spaces); block
// counts are exact unless more than 4 CIDRs of 2^62 blocks add up past it.
type Stats struct {
	Blocks, BlocksInUse       uint64
	Addresses, AddressesInUse uint64
}

// Stats counts the blocks and addresses of family f.
func (s *Space) Stats(f Family) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	for _, c := range s.cidrs {
		if c.family != f {
			continue
		}
		host := uint(c.width - c.blockLen)
		st.Blocks = satAdd(st.Blocks, c.used.n)
		st.BlocksInUse = satAdd(st.BlocksInUse, c.used.used)
		st.Addresses = satAdd(st.Addresses, satShl(c.used.n, host))
		st.AddressesInUse = satAdd(st.AddressesInUse, satShl(c.used.used, host))
	}
	return st
}

func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func satShl(x uint64, s uint) uint64 {
	if x == 0 {
		return 0
	}
	if s >= 64 || x > math.MaxUint64>>s {
		return math.MaxUint64
	}
	return x << s
}

// u128 is an address as a 128-bit number; IPv4 addresses use the low 32 bits.
type u128 struct{ hi, lo uint64 }

func u128Of(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var v u128
	for i := range 8 {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[8+i])
	}
	return v
}

func (v u128) addr(f Family) netip.Addr {
	if f == IPv4 {
		return netip.AddrFrom4([4]byte{byte(v.lo >> 24), byte(v.lo >> 16), byte(v.lo >> 8), byte(v.lo)})
	}
	var b [16]byte
	for i := range 8 {
		b[7-i] = byte(v.hi >> (8 * i))
		b[15-i] = byte(v.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (v u128) or(w u128) u128 { return u128{v.hi | w.hi, v.lo | w.lo} }

func (v u128) shl(n uint) u128 {
	switch {
	case n == 0:
		return v
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{hi: v.lo << (n - 64)}
	}
	return u128{hi: v.hi<<n | v.lo>>(64-n), lo: v.lo << n}
}

func (v u128) shr(n uint) u128 {
	switch {
	case n == 0:
		return v
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{lo: v.hi >> (n - 64)}
	}
	return u128{hi: v.hi >> n, lo: v.lo>>n | v.hi<<(64-n)}
}
