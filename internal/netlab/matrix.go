package netlab

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Cell is one probe of a reachability matrix: a new flow from the pod
// From to the pod To's address on Port.
type Cell struct {
	From, To *Pod
	Port     Port
}

func (c Cell) String() string { return fmt.Sprintf("%s -> %s %s", c.From.Key(), c.To.Key(), c.Port) }

// Cells is every pod to every pod on every port, in that order (source,
// destination, port); a pod to itself only when self is set.
func Cells(pods []*Pod, ports []Port, self bool) []Cell {
	var out []Cell
	for _, from := range pods {
		for _, to := range pods {
			if from == to && !self {
				continue
			}
			for _, port := range ports {
				out = append(out, Cell{from, to, port})
			}
		}
	}
	return out
}

// DefaultProbeTimeout bounds a probe when the caller doesn't: a flow
// across a local veth or bridge answers in well under a millisecond, so
// this much silence is a drop.
const DefaultProbeTimeout = 300 * time.Millisecond

// probeWorkers bounds the probes in flight: enough that a matrix full of
// drops (each a probe timeout) takes a few timeouts, not one per cell.
const probeWorkers = 64

// ProbeCells probes every cell once, in parallel; out[i] is cells[i]'s.
func ProbeCells(cells []Cell, timeout time.Duration) []Result {
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	out := make([]Result, len(cells))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(probeWorkers, len(cells)) {
		wg.Go(func() {
			for i := range jobs {
				c := cells[i]
				out[i] = Probe(c.From, c.To.IP, c.Port, timeout)
			}
		})
	}
	for i := range cells {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return out
}

// Agrees says whether a probe's result is what the expectation wanted:
// reached when allowed, timed out when not. A failed probe agrees with
// nothing: a refused connection means the packet arrived where no echo
// server listens, which is neither.
func Agrees(want bool, got Result) bool {
	if got.Verdict == Failed {
		return false
	}
	return (got.Verdict == Reached) == want
}

// Matrix is one probing of a set of cells.
type Matrix struct {
	Cells   []Cell
	Results []Result // Results[i] is Cells[i]'s
	// Want is the expectation the matrix was checked against (nil when
	// none) and Wrong the indexes of the cells that disagree with it.
	Want  func(Cell) bool
	Wrong []int
	// Passes is how many times WaitMatrix probed, Elapsed how long it took.
	Passes  int
	Elapsed time.Duration
}

// Reached says whether the cell at index i was reached.
func (m *Matrix) Reached(i int) bool { return m.Results[i].Verdict == Reached }

// WaitOptions tune WaitMatrix.
type WaitOptions struct {
	// ProbeTimeout bounds each probe (DefaultProbeTimeout when zero).
	ProbeTimeout time.Duration
	// Within is how long the cells may take to agree (10 s when zero).
	Within time.Duration
	// Pause is the time between two passes.
	Pause time.Duration
	// OnPass, when set, sees every pass that disagrees (for debug logs).
	OnPass func(m *Matrix)
}

// WaitMatrix probes the cells until every one agrees with want (Agrees)
// or opts.Within passes, and returns the last pass. It is how a caller
// waits for a change made through the API to reach the packets: the error
// says how many cells still disagree; the matrix says which.
func WaitMatrix(ctx context.Context, cells []Cell, want func(Cell) bool, opts WaitOptions) (*Matrix, error) {
	if opts.Within <= 0 {
		opts.Within = 10 * time.Second
	}
	start := time.Now()
	deadline := start.Add(opts.Within)
	for pass := 1; ; pass++ {
		m := &Matrix{Cells: cells, Results: ProbeCells(cells, opts.ProbeTimeout), Want: want, Passes: pass}
		for i, c := range cells {
			if !Agrees(want(c), m.Results[i]) {
				m.Wrong = append(m.Wrong, i)
			}
		}
		m.Elapsed = time.Since(start)
		if len(m.Wrong) == 0 {
			return m, nil
		}
		if opts.OnPass != nil {
			opts.OnPass(m)
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("%d of %d cells disagree with the expectation after %v (%d passes)",
				len(m.Wrong), len(cells), m.Elapsed.Round(100*time.Millisecond), pass)
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(opts.Pause):
		}
	}
}
