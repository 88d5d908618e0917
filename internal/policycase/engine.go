package policycase

import (
	"fmt"

	"github.com/sluice-dev/sluice/internal/policy"
)

// Engine answers whether a flow is allowed under a compiled snapshot.
type Engine interface {
	Load(snap *policy.Snapshot) error
	Allowed(f Flow) (bool, error)
	Close() error
}

// ModelEngine is the Go evaluator over the compiled entries.
type ModelEngine struct{ snap *policy.Snapshot }

// Load keeps the snapshot.
func (m *ModelEngine) Load(snap *policy.Snapshot) error { m.snap = snap; return nil }

// Allowed evaluates f the way the datapath does.
func (m *ModelEngine) Allowed(f Flow) (bool, error) {
	return m.snap.Allowed(f.Src, f.Dst, f.Proto, f.Port), nil
}

// Close does nothing.
func (m *ModelEngine) Close() error { return nil }

// Run compiles the case, loads it into engine and returns one verdict per
// probe, in order.
func Run(c *Case, engine Engine) ([]Verdict, error) {
	cluster, flows, err := c.Resolve()
	if err != nil {
		return nil, err
	}
	snap, err := policy.Compile(cluster)
	if err != nil {
		return nil, fmt.Errorf("compile the case's policies: %w", err)
	}
	if err := engine.Load(snap); err != nil {
		return nil, err
	}
	out := make([]Verdict, 0, len(flows))
	for i, f := range flows {
		allowed, err := engine.Allowed(f)
		if err != nil {
			return nil, fmt.Errorf("probes[%d]: %w", i, err)
		}
		p := c.Probes[i]
		v := Verdict{From: p.From, To: p.To, Port: p.Port, Protocol: p.Protocol, Verdict: Deny}
		if allowed {
			v.Verdict = Allow
		}
		out = append(out, v)
	}
	return out, nil
}

// Mismatches are the verdicts that differ from their probe's expect, with
// expect filled in. Probes without expect never mismatch.
func Mismatches(c *Case, verdicts []Verdict) []Verdict {
	var out []Verdict
	for i, v := range verdicts {
		if want := c.Probes[i].Expect; want != "" && want != v.Verdict {
			v.Expect = want
			out = append(out, v)
		}
	}
	return out
}
