// Package policycases holds NetworkPolicy test cases in the format of
// `sluicectl policy verdicts` and checks that both engines agree on every
// probe and match every probe's expect.
package policycases

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/policycase"
)

func TestCasesBothEnginesAgreeAndMatchExpect(t *testing.T) {
	files, err := filepath.Glob("*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files here (%v)", err)
	}
	netlabtest.RequirePrivileged(t) // the bpf engine loads programs
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			model := verdicts(t, file, &policycase.ModelEngine{})
			bpf := verdicts(t, file, &policycase.BPFEngine{})
			if len(model) != len(bpf) {
				t.Fatalf("model gave %d verdicts, bpf %d", len(model), len(bpf))
			}
			c := readCase(t, file)
			for i := range model {
				if model[i] != bpf[i] {
					t.Errorf("probe %d: model %+v, bpf %+v", i, model[i], bpf[i])
				}
			}
			for _, m := range policycase.Mismatches(c, model) {
				t.Errorf("%s -> %s %s/%d: verdict %s, expect %s", m.From, m.To, m.Protocol, m.Port, m.Verdict, m.Expect)
			}
		})
	}
}

func readCase(t *testing.T, file string) *policycase.Case {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	c, err := policycase.Read(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

func verdicts(t *testing.T, file string, engine policycase.Engine) []policycase.Verdict {
	t.Helper()
	defer func() { _ = engine.Close() }()
	out, err := policycase.Run(readCase(t, file), engine)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return out
}
