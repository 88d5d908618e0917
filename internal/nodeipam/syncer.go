package nodeipam

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/cni"
)

// Syncer keeps one node's allocation file and NodeNetwork spec current.
type Syncer struct {
	Client   client.Client
	NodeName string
	// AllocationFile is what the CNI plugin reads (its allocationFile).
	AllocationFile string
	// StateDir is the CNI plugin's state directory (its stateDir).
	StateDir string
}

// Run syncs every interval until ctx ends, logging failures.
func (s *Syncer) Run(ctx context.Context, interval time.Duration) error {
	log := ctrl.LoggerFrom(ctx).WithValues("node", s.NodeName)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := s.Sync(ctx); err != nil {
			log.Error(err, "Sync of the node's pod addresses failed; retrying")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Sync does one round: allocation file from status, spec from the plugin's
// state.
func (s *Syncer) Sync(ctx context.Context) error {
	nn := &v1.NodeNetwork{}
	if err := s.Client.Get(ctx, client.ObjectKey{Name: s.NodeName}, nn); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // the operator hasn't made it yet
		}
		return fmt.Errorf("get NodeNetwork %s: %w", s.NodeName, err)
	}
	spec, err := s.syncLocked(nn, watermarksOf(nn))
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(spec, nn.Spec) {
		return nil
	}
	before := nn.DeepCopy()
	nn.Spec = spec
	if err := s.Client.Patch(ctx, nn, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("report pod addresses of node %s: %w", s.NodeName, err)
	}
	return nil
}

// syncLocked decides releases and writes the allocation file while holding
// the plugin's lock, and returns the spec to report.
func (s *Syncer) syncLocked(nn *v1.NodeNetwork, wm *watermarks) (v1.NodeNetworkSpec, error) {
	store, err := cni.OpenStore(s.StateDir)
	if err != nil {
		return v1.NodeNetworkSpec{}, fmt.Errorf("open CNI state: %w", err)
	}
	defer func() { _ = store.Close() }()

	var inUse []netip.Addr
	for _, r := range store.Reservations() {
		inUse = append(inUse, r.IP)
	}
	excluded := parseAddrs(nn.Status.ExcludeIPs)

	// Batches given back earlier stay out until status stops listing them.
	var releasing, available []netip.Prefix
	for _, c := range nn.Status.CIDRs {
		prefix, err := netip.ParsePrefix(string(c))
		if err != nil {
			return v1.NodeNetworkSpec{}, fmt.Errorf("status of NodeNetwork %s: %w", nn.Name, err)
		}
		if slices.Contains(nn.Spec.ReleaseCIDRs, c) {
			releasing = append(releasing, prefix)
		} else {
			available = append(available, prefix)
		}
	}
	if wm != nil {
		var more []netip.Prefix
		available, more = chooseReleases(available, inUse, excluded, *wm)
		releasing = append(releasing, more...)
	}

	if err := s.writeAllocation(nn, available); err != nil {
		return v1.NodeNetworkSpec{}, err
	}

	spec := v1.NodeNetworkSpec{IPsInUse: int32(countV4(inUse))}
	for _, p := range releasing {
		spec.ReleaseCIDRs = append(spec.ReleaseCIDRs, v1.CIDR(p.String()))
	}
	slices.Sort(spec.ReleaseCIDRs)
	return spec, nil
}

// chooseReleases moves unused IPv4 batches, highest first, out of
// available while the node keeps more than maxFree free addresses and would
// still keep at least minFree. (IPv6 batches of a dual-stack subnet pool
// are kept: the watermarks count IPv4 addresses.)
func chooseReleases(available []netip.Prefix, inUse []netip.Addr, excluded map[netip.Addr]bool, wm watermarks) (kept, released []netip.Prefix) {
	free := -countV4(inUse)
	for _, p := range available {
		if p.Addr().Is4() {
			free += usable(p, excluded)
		}
	}
	candidates := slices.Clone(available)
	slices.SortFunc(candidates, func(a, b netip.Prefix) int { return b.Addr().Compare(a.Addr()) })
	kept = slices.Clone(available)
	for _, batch := range candidates {
		if free <= wm.maxFree {
			break
		}
		if !batch.Addr().Is4() || slices.ContainsFunc(inUse, batch.Contains) {
			continue
		}
		n := usable(batch, excluded)
		if free-n < wm.minFree {
			continue
		}
		kept = slices.DeleteFunc(kept, func(p netip.Prefix) bool { return p == batch })
		released = append(released, batch)
		free -= n
	}
	return kept, released
}

// usable is the number of addresses in an IPv4 batch a pod may get.
func usable(batch netip.Prefix, excluded map[netip.Addr]bool) int {
	n := 1 << (32 - batch.Bits())
	for a := range excluded {
		if batch.Contains(a) {
			n--
		}
	}
	return n
}

// watermarks are a Subnet pool's release thresholds.
type watermarks struct {
	minFree, maxFree int
}

// watermarksOf are the release thresholds the operator published in the
// node's status. Overlay pools have none and never release; neither does a
// Subnet node whose status doesn't carry them yet (the safe default: a node
// that releases nothing only holds more than it needs).
func watermarksOf(nn *v1.NodeNetwork) *watermarks {
	st := nn.Status
	if st.Mode != v1.IPAMModeSubnet || st.MaxFreeIPs == nil {
		return nil
	}
	return &watermarks{minFree: int(ptr.Deref(st.MinFreeIPs, 0)), maxFree: int(*st.MaxFreeIPs)}
}

// writeAllocation writes the allocation file when its content changes; a
// node without addresses has none, so the plugin says so instead of using
// a stale one.
func (s *Syncer) writeAllocation(nn *v1.NodeNetwork, cidrs []netip.Prefix) error {
	if len(cidrs) == 0 {
		if err := os.Remove(s.AllocationFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove allocation file: %w", err)
		}
		return nil
	}
	want := cni.Allocation{
		Node: nn.Name, Pool: nn.Status.Pool, Mode: string(nn.Status.Mode),
		ExcludeIPs: slices.Clone(nn.Status.ExcludeIPs), MaxPods: int(nn.Status.MaxPods),
	}
	for _, p := range cidrs {
		want.CIDRs = append(want.CIDRs, p.String())
	}
	if have, err := cni.ReadAllocation(s.AllocationFile); err == nil && equality.Semantic.DeepEqual(have, want) {
		return nil
	}
	if err := cni.WriteAllocation(s.AllocationFile, want); err != nil {
		return fmt.Errorf("write allocation file: %w", err)
	}
	return nil
}

func parseAddrs(in []string) map[netip.Addr]bool {
	out := make(map[netip.Addr]bool, len(in))
	for _, s := range in {
		if a, err := netip.ParseAddr(s); err == nil {
			out[a] = true
		}
	}
	return out
}

func countV4(addrs []netip.Addr) int {
	n := 0
	for _, a := range addrs {
		if a.Is4() {
			n++
		}
	}
	return n
}
