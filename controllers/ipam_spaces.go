package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipam"
	"github.com/sluice-dev/sluice/internal/ipampool"
)

// poolSpaces keeps one allocator per IPAMPool. The allocators are a
// cache, not the truth: the truth is the IPAMBlock claims in the API, whose
// names make each block claimable once. An allocator is built from its
// pool's spec and the claims the informer holds, updated synchronously by
// this operator's own claims and releases, and by IPAMBlock events for the
// rest. When it is wrong (a claim it hasn't seen yet), creating the claim
// fails with AlreadyExists and the caller tries the next block; so a stale
// allocator costs a retry, never a block given twice.
type poolSpaces struct {
	mu    sync.Mutex
	pools map[string]*poolSpace
}

type poolSpace struct {
	params ipampool.Params
	space  *ipam.Space
	// fingerprint of the spec fields the space was built from.
	fingerprint string
}

func newPoolSpaces() *poolSpaces {
	return &poolSpaces{pools: map[string]*poolSpace{}}
}

func fingerprint(p ipampool.Params) string {
	return fmt.Sprint(p.CIDRs, p.BlockLenV4, p.BlockLenV6)
}

// get returns the pool's allocator, building it (again) when the pool's
// ranges or block lengths changed.
func (s *poolSpaces) get(ctx context.Context, reader client.Reader, pool *v1.IPAMPool) (ipampool.Params, error) {
	params, err := ipampool.FromSpec(&pool.Spec)
	if err != nil {
		return params, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ps, ok := s.pools[pool.Name]; ok && ps.fingerprint == fingerprint(params) {
		ps.params = params
		return params, nil
	}
	space, err := params.NewSpace()
	if err != nil {
		return params, fmt.Errorf("carve pool %s into blocks: %w", pool.Name, err)
	}
	var blocks v1.IPAMBlockList
	if err := reader.List(ctx, &blocks, client.MatchingLabels{v1.LabelPool: pool.Name}); err != nil {
		return params, fmt.Errorf("list IPAMBlocks of pool %s: %w", pool.Name, err)
	}
	for _, b := range blocks.Items {
		prefix, err := netip.ParsePrefix(string(b.Spec.CIDR))
		if err == nil {
			err = space.Claim(prefix)
		}
		if err != nil && !errors.Is(err, ipam.ErrInUse) {
			ctrl.LoggerFrom(ctx).Info("IPAMBlock doesn't fit its pool; ignoring it", "block", b.Name, "pool", pool.Name, "error", err.Error())
		}
	}
	s.pools[pool.Name] = &poolSpace{params: params, space: space, fingerprint: fingerprint(params)}
	return params, nil
}

// allocate marks the lowest free block of family f in pool used.
func (s *poolSpaces) allocate(pool string, f ipam.Family) (netip.Prefix, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.pools[pool]
	if !ok {
		return netip.Prefix{}, fmt.Errorf("pool %s has no allocator", pool)
	}
	return ps.space.Allocate(f)
}

// markUsed records a block claimed by someone else.
func (s *poolSpaces) markUsed(pool string, block netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ps, ok := s.pools[pool]; ok {
		_ = ps.space.Claim(block) // in use already, or outside the pool: nothing to record
	}
}

// release returns a block to the pool's allocator.
func (s *poolSpaces) release(pool string, block netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ps, ok := s.pools[pool]; ok && ps.space.InUse(block) {
		_ = ps.space.Release(block)
	}
}

// blockEvents keeps the allocators in step with claims made and released
// by others (or by an earlier run of this operator).
func (s *poolSpaces) blockEvents() cache.ResourceEventHandler {
	apply := func(obj any, claim bool) {
		b, ok := obj.(*v1.IPAMBlock)
		if !ok {
			if tomb, isTomb := obj.(cache.DeletedFinalStateUnknown); isTomb {
				b, ok = tomb.Obj.(*v1.IPAMBlock)
			}
		}
		if !ok {
			return
		}
		prefix, err := netip.ParsePrefix(string(b.Spec.CIDR))
		if err != nil {
			return
		}
		if claim {
			s.markUsed(b.Spec.Pool, prefix)
		} else {
			s.release(b.Spec.Pool, prefix)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { apply(obj, true) },
		DeleteFunc: func(obj any) { apply(obj, false) },
	}
}

// sortedCIDRs returns the prefixes as sorted API strings.
func sortedCIDRs(prefixes []netip.Prefix) []v1.CIDR {
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := make([]v1.CIDR, 0, len(prefixes))
	for _, p := range prefixes {
		out = append(out, v1.CIDR(p.String()))
	}
	return out
}
