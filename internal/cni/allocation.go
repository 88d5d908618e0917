package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/sluice-dev/sluice/internal/fsutil"
)

// Allocation modes, as in the NodeNetwork status.
const (
	ModeOverlay = "Overlay"
	ModeSubnet  = "Subnet"
)

// Allocation is what this node holds, mirrored by the node side from the
// node's NodeNetwork status into the allocation file.
type Allocation struct {
	Node string `json:"node"`
	Pool string `json:"pool"`
	// Mode is ModeOverlay or ModeSubnet.
	Mode string `json:"mode"`
	// CIDRs are the blocks the node may hand out, e.g. ["10.244.3.0/24"] or
	// several /28 batches; they may include one IPv6 family.
	CIDRs []string `json:"cidrs"`
	// ExcludeIPs are never handed out (network and broadcast addresses of
	// an overlay block, addresses the cloud reserves in a subnet).
	ExcludeIPs []string `json:"excludeIPs"`
	// MaxPods caps the reservations per address family; 0 means no cap
	// beyond the size of the CIDRs.
	MaxPods int `json:"maxPods"`
}

// WriteAllocation writes a to path atomically (temporary file in the same
// directory, fsync, rename, fsync of the directory), creating the directory
// if needed, so the plugin never reads a half-written file.
func WriteAllocation(path string, a Allocation) error {
	if _, err := a.parse(); err != nil {
		return fmt.Errorf("allocation for %s: %w", path, err)
	}
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("encode allocation: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory of %s: %w", path, err)
	}
	return fsutil.WriteFileAtomic(path, append(data, '\n'), 0o644)
}

// ReadAllocation reads and validates the allocation file. A missing file
// gives an error for which errors.Is(err, fs.ErrNotExist) holds.
func ReadAllocation(path string) (Allocation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Allocation{}, err
	}
	var a Allocation
	if err := json.Unmarshal(data, &a); err != nil {
		return Allocation{}, fmt.Errorf("decode allocation file %s: %w", path, err)
	}
	if _, err := a.parse(); err != nil {
		return Allocation{}, fmt.Errorf("allocation file %s: %w", path, err)
	}
	return a, nil
}

// parsedAllocation is an Allocation in the types the allocator works with.
type parsedAllocation struct {
	prefixes []netip.Prefix
	exclude  map[netip.Addr]bool
	maxPods  int
}

func (a Allocation) parse() (parsedAllocation, error) {
	p := parsedAllocation{exclude: make(map[netip.Addr]bool, len(a.ExcludeIPs)), maxPods: a.MaxPods}
	switch a.Mode {
	case ModeOverlay, ModeSubnet:
	default:
		return p, fmt.Errorf("mode %q is neither %s nor %s", a.Mode, ModeOverlay, ModeSubnet)
	}
	if a.MaxPods < 0 {
		return p, fmt.Errorf("maxPods %d is negative", a.MaxPods)
	}
	for _, c := range a.CIDRs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return p, fmt.Errorf("cidrs: %w", err)
		}
		if pfx != pfx.Masked() {
			return p, fmt.Errorf("cidrs: %s has host bits set (the block is %s)", c, pfx.Masked())
		}
		if pfx.Addr().Is4In6() || pfx.Addr().Zone() != "" {
			return p, fmt.Errorf("cidrs: %s is neither a plain IPv4 nor IPv6 prefix", c)
		}
		for _, other := range p.prefixes {
			if other.Overlaps(pfx) {
				return p, fmt.Errorf("cidrs: %s overlaps %s", c, other)
			}
		}
		p.prefixes = append(p.prefixes, pfx)
	}
	for _, e := range a.ExcludeIPs {
		ip, err := netip.ParseAddr(e)
		if err != nil {
			return p, fmt.Errorf("excludeIPs: %w", err)
		}
		p.exclude[ip] = true
	}
	return p, nil
}
