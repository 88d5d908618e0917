package applier

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// target is a datapath that records what it is given and can be made to
// fail or to block.
type target struct {
	mu      sync.Mutex
	applied []int
	err     error
	gate    chan struct{} // non-nil: each apply waits for a receive
}

func (d *target) apply(n int) error {
	d.mu.Lock()
	gate := d.gate
	d.mu.Unlock()
	if gate != nil {
		<-gate
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.applied = append(d.applied, n)
	return nil
}

func (d *target) got() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.applied)
}

func run(t *testing.T, a *Applier) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestLatestWins: snapshots submitted while an Apply runs are coalesced
// into the latest, which carries the oldest change's receipt time.
func TestLatestWins(t *testing.T) {
	g := NewWithT(t)
	d := &target{gate: make(chan struct{})}
	seconds := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "s"})
	a := New(testr.New(t), time.Hour)
	slot := NewSlot(a, "numbers", d.apply, Metrics{Seconds: seconds})
	run(t, a)

	first := time.Now().Add(-time.Minute)
	slot.Submit(1, first)
	d.gate <- struct{}{} // 1 is being applied; 2, 3 and 4 wait
	slot.Submit(2, time.Now().Add(-30*time.Second))
	slot.Submit(3, time.Time{})
	slot.Submit(4, time.Now())
	g.Eventually(func(g Gomega) {
		res, _ := slot.Result()
		g.Expect(res.InForce).To(Equal(1))
	}).Should(Succeed())
	d.gate <- struct{}{}
	g.Eventually(func(g Gomega) {
		res, _ := slot.Result()
		g.Expect(res.InForce).To(Equal(4))
		g.Expect(res.Applies).To(BeEquivalentTo(2))
		// 4 carries 2's changes, received 30 s ago.
		g.Expect(res.Took).To(BeNumerically(">=", 30*time.Second))
		g.Expect(res.Took).To(BeNumerically("<", time.Minute))
	}).Should(Succeed())
	g.Expect(d.got()).To(Equal([]int{1, 4}))
	var m dto.Metric
	g.Expect(seconds.Write(&m)).To(Succeed())
	g.Expect(m.GetHistogram().GetSampleCount()).To(BeEquivalentTo(2))
}

// TestFailureIsRetried: a failed Apply is published with its error, the
// last snapshot in force stays, and the slot retries until it succeeds.
func TestFailureIsRetried(t *testing.T) {
	g := NewWithT(t)
	d := &target{}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "e"})
	a := New(testr.New(t), 10*time.Millisecond)
	slot := NewSlot(a, "numbers", d.apply, Metrics{Errors: errs})
	run(t, a)

	slot.Submit(1, time.Time{})
	g.Eventually(func() int { res, _ := slot.Result(); return res.InForce }).Should(Equal(1))
	d.mu.Lock()
	d.err = errors.New("map full")
	d.mu.Unlock()
	_, changed := slot.Result()
	slot.Submit(2, time.Time{})
	g.Eventually(changed).Should(BeClosed())
	res, _ := slot.Result()
	g.Expect(res.Latest).To(Equal(2))
	g.Expect(res.Err).To(MatchError("map full"))
	g.Expect(res.InForce).To(Equal(1))

	d.mu.Lock()
	d.err = nil
	d.mu.Unlock()
	g.Eventually(func(g Gomega) {
		res, _ := slot.Result()
		g.Expect(res.Err).NotTo(HaveOccurred())
		g.Expect(res.InForce).To(Equal(2))
	}).Should(Succeed())
	var m dto.Metric
	g.Expect(errs.Write(&m)).To(Succeed())
	g.Expect(m.GetCounter().GetValue()).To(BeNumerically(">=", 1))
	g.Expect(d.got()).To(Equal([]int{1, 2}))
}

// TestSlotsAreIndependent: each kind has its own latest snapshot and
// result; one kind failing doesn't hold the other back.
func TestSlotsAreIndependent(t *testing.T) {
	g := NewWithT(t)
	good, bad := &target{}, &target{err: errors.New("no")}
	a := New(testr.New(t), 10*time.Millisecond)
	s1 := NewSlot(a, "good", good.apply, Metrics{})
	s2 := NewSlot(a, "bad", bad.apply, Metrics{})
	run(t, a)
	s2.Submit(7, time.Time{})
	s1.Submit(1, time.Time{})
	s1.Submit(2, time.Time{})
	g.Eventually(func() int { res, _ := s1.Result(); return res.InForce }).Should(Equal(2))
	res, _ := s2.Result()
	g.Expect(res.Applies).To(BeZero())
	g.Eventually(func() error { res, _ := s2.Result(); return res.Err }).Should(HaveOccurred())
}

// TestExclusiveNeverOverlapsAnApply: a write made through Exclusive waits
// for an Apply in progress, and an Apply waits for it.
func TestExclusiveNeverOverlapsAnApply(t *testing.T) {
	a := New(logr.Discard(), time.Millisecond)
	var inside atomic.Int32
	var overlaps atomic.Int32
	// write takes a millisecond, long enough for an unguarded write to
	// start meanwhile.
	write := func() {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		time.Sleep(time.Millisecond)
		inside.Add(-1)
	}
	slot := NewSlot(a, "test", func(int) error { write(); return nil }, Metrics{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { slot.Submit(i, time.Time{}) })
		wg.Go(func() { _ = a.Exclusive(func() error { write(); return nil }) })
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d writes overlapped another", n)
	}
}
