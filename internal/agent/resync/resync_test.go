package resync

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestLoopRunsOnPokesAndRetriesFailures(t *testing.T) {
	g := NewWithT(t)
	l := New(time.Hour)
	var passes, failures atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(context.Context) bool { return true },
			func(context.Context) error {
				if passes.Add(1) == 2 {
					return errors.New("second pass fails")
				}
				return nil
			},
			func(error) { failures.Add(1) })
	}()
	g.Eventually(passes.Load).Should(BeEquivalentTo(1), "a first pass without a poke")
	l.Poke()
	g.Eventually(passes.Load).Should(BeEquivalentTo(2))
	g.Eventually(failures.Load).Should(BeEquivalentTo(1), "the failed pass is reported")
	l.Poke()
	g.Eventually(passes.Load).Should(BeEquivalentTo(3), "a failure doesn't stop the loop")
	cancel()
	g.Eventually(done).Should(Receive(BeNil()))
}

func TestLoopPokesCoalesce(t *testing.T) {
	l := New(time.Hour)
	for range 5 {
		l.Poke() // never blocks
	}
	if got := len(l.pokes); got != 1 {
		t.Fatalf("%d pokes pending, want 1", got)
	}
}

func TestLoopRunsEveryInterval(t *testing.T) {
	g := NewWithT(t)
	l := New(10 * time.Millisecond)
	var passes atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = l.Run(ctx, func(context.Context) bool { return true },
			func(context.Context) error { passes.Add(1); return nil }, func(error) {})
	}()
	g.Eventually(passes.Load).Should(BeNumerically(">=", 3), "passes without any poke")
}

func TestLoopWithoutSyncedCaches(t *testing.T) {
	l := New(time.Hour)
	pass := func(context.Context) error { t.Fatal("a pass ran before the caches synced"); return nil }
	if err := l.Run(context.Background(), func(context.Context) bool { return false }, pass, func(error) {}); err == nil {
		t.Error("no error when the caches never sync")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx, func(context.Context) bool { return false }, pass, func(error) {}); err != nil {
		t.Errorf("stopping before the caches synced is no error: %v", err)
	}
}
