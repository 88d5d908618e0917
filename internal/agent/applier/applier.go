package applier

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Applier applies the latest snapshot of each of its slots, one at a
// time, and retries those that failed.
type Applier struct {
	log        logr.Logger
	retryDelay time.Duration
	wake       chan struct{}

	// writing is held for every write to the datapath: each Apply, and
	// each write made through Exclusive.
	writing sync.Mutex

	mu    sync.Mutex
	slots []pending
}

// pending is a Slot as the Applier drives it.
type pending interface {
	// applyLatest applies the slot's latest snapshot unless it is in
	// force, and says whether that failed.
	applyLatest(log logr.Logger) (failed bool)
}

// New returns an Applier that retries a failed Apply after retryDelay.
func New(log logr.Logger, retryDelay time.Duration) *Applier {
	return &Applier{log: log, retryDelay: retryDelay, wake: make(chan struct{}, 1)}
}

// Run applies what the slots are handed until ctx ends.
func (a *Applier) Run(ctx context.Context) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-retry:
		}
		a.mu.Lock()
		slots := a.slots
		a.mu.Unlock()
		failed := false
		for _, s := range slots {
			a.writing.Lock()
			if s.applyLatest(a.log) {
				failed = true
			}
			a.writing.Unlock()
		}
		retry = nil
		if failed {
			retry = time.After(a.retryDelay)
		}
	}
}

// Exclusive runs a write to the datapath that isn't a snapshot (attaching
// the programs to a pod's veth, detaching them, sweeping what gone
// interfaces left) as one of the Applier's writes: never while an Apply
// runs, one at a time. With it the Applier is the datapath's only
// writer, and an attach never lands halfway through a snapshot.
func (a *Applier) Exclusive(write func() error) error {
	a.writing.Lock()
	defer a.writing.Unlock()
	return write()
}

func (a *Applier) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Metrics are what a Slot records of its applies; nil fields record
// nothing.
type Metrics struct {
	// Seconds observes, per snapshot in force, the time from the receipt
	// of the oldest change it carries to its Apply returning.
	Seconds prometheus.Observer
	// Errors counts failed applies.
	Errors prometheus.Counter
}

// Result is what a Slot's applies have made of its snapshots.
type Result[T any] struct {
	// Latest is the latest snapshot tried and Err its error: nil when it
	// is in force. A failed one is retried unless a newer one replaces it.
	Latest T
	Err    error
	// InForce is the last snapshot applied (the zero T before any).
	InForce T
	// Applies counts the snapshots applied; AppliedAt is when the last
	// was, and Took how long it took from the receipt of the oldest change
	// it carries.
	Applies   int64
	AppliedAt time.Time
	Took      time.Duration
}

// Slot is one kind of snapshot the Applier writes.
type Slot[T any] struct {
	name    string
	apply   func(T) error
	metrics Metrics
	kick    func()

	mu      sync.Mutex
	next    *submission[T] // the latest not yet tried, or failed; nil: nothing to do
	result  Result[T]
	changed chan struct{} // closed and replaced at every result
}

type submission[T any] struct {
	snap  T
	since time.Time // receipt of the oldest change it carries
}

// NewSlot adds a kind of snapshot to a, written by apply (which only a's
// Run calls). Add slots before Run.
func NewSlot[T any](a *Applier, name string, apply func(T) error, m Metrics) *Slot[T] {
	s := &Slot[T]{name: name, apply: apply, metrics: m, kick: a.kick, changed: make(chan struct{})}
	a.mu.Lock()
	a.slots = append(a.slots, s)
	a.mu.Unlock()
	return s
}

// Submit hands the slot its latest snapshot, which carries the changes
// received since then (zero: unknown). A snapshot still waiting is
// replaced; the oldest receipt time is kept.
func (s *Slot[T]) Submit(snap T, since time.Time) {
	s.mu.Lock()
	if s.next != nil {
		since = older(s.next.since, since)
	}
	s.next = &submission[T]{snap: snap, since: since}
	s.mu.Unlock()
	s.kick()
}

// Result is the slot's current result, and a channel closed when the
// next one is published.
func (s *Slot[T]) Result() (Result[T], <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.result, s.changed
}

func (s *Slot[T]) applyLatest(log logr.Logger) bool {
	s.mu.Lock()
	sub := s.next
	s.next = nil
	s.mu.Unlock()
	if sub == nil {
		return false
	}
	err := s.apply(sub.snap)
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.result.Latest, s.result.Err = sub.snap, err
	switch {
	case err != nil:
		if s.next == nil {
			s.next = sub // retried
		} else {
			// A newer snapshot came meanwhile: it carries these changes.
			s.next.since = older(s.next.since, sub.since)
		}
		if s.metrics.Errors != nil {
			s.metrics.Errors.Inc()
		}
		log.Error(err, "Applying a snapshot to the datapath failed; retrying", "kind", s.name)
	default:
		s.result.InForce = sub.snap
		s.result.Applies++
		s.result.AppliedAt = now
		s.result.Took = 0
		if !sub.since.IsZero() {
			s.result.Took = now.Sub(sub.since)
			if s.metrics.Seconds != nil {
				s.metrics.Seconds.Observe(s.result.Took.Seconds())
			}
		}
		log.V(1).Info("Applied", "kind", s.name, "took", s.result.Took)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return err != nil
}

// older is the earlier of two receipt times, zero being unknown.
func older(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
