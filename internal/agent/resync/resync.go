// Package resync is the loop the agent's level-triggered parts share
// (native routes, masquerade rules, and the sync loops to come): wait for
// the informer caches, then bring the node to the desired state once, and
// again on every poke from an informer and every resync interval, until
// the context ends.
//
// Each pass recomputes the whole desired state from the caches rather
// than applying the event that poked it, so pokes coalesce (one pending at
// most) and a missed or failed pass is made good by the next. The price:
// a pass costs as much for one changed object as for all of them, which
// is fine for state that is small per node (a route or a rule per node).
package resync

import (
	"context"
	"errors"
	"time"
)

// Loop runs a pass on every poke and every interval.
type Loop struct {
	interval time.Duration
	pokes    chan struct{}
}

// New returns a Loop that also runs a pass every interval without a poke
// (someone may have changed the node behind the agent's back).
func New(interval time.Duration) *Loop {
	return &Loop{interval: interval, pokes: make(chan struct{}, 1)}
}

// Poke asks for a pass; pokes that come while one is pending coalesce. It
// never blocks, so informer handlers may call it.
func (l *Loop) Poke() {
	select {
	case l.pokes <- struct{}{}:
	default:
	}
}

// Run waits for the caches, then runs pass until ctx ends. A failed pass
// goes to failed (to log and count) and is retried by the next one; it
// doesn't stop Run. Run returns an error only when the caches never sync.
func (l *Loop) Run(ctx context.Context, waitForCacheSync func(context.Context) bool, pass func(context.Context) error, failed func(error)) error {
	if !waitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("informer caches did not sync")
	}
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	for {
		if err := pass(ctx); err != nil {
			failed(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.pokes:
		case <-tick.C:
		}
	}
}
