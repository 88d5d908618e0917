package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sluice-dev/sluice/internal/policycase"
)

const policyUsage = `Usage:
  sluicectl policy verdicts --case FILE [--engine bpf|model] [--output json] [--check]

Prints, as a JSON array, one verdict per probe of the case file, in order:
  [{"from": "x/a", "to": "y/b", "port": 80, "protocol": "TCP", "verdict": "allow"}, ...]

  --engine bpf    (default) load the real BPF programs, fill their maps from the
                  compiler, and run each probe as a crafted packet through them
                  (BPF_PROG_TEST_RUN): egress at the source, ingress at the
                  destination. Needs root (CAP_BPF).
  --engine model  the Go evaluator over the same compiled entries.
  --check         print only the probes whose verdict differs from their
                  "expect", and exit 1 if there is any.

Exit status: 0 done, 1 --check found differences, 2 bad input or usage.
`

func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verdicts" {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stdout, policyUsage)
			return 0
		}
		fmt.Fprintf(stderr, "sluicectl policy: want the subcommand verdicts\n\n%s", policyUsage)
		return 2
	}
	fs := flag.NewFlagSet("sluicectl policy verdicts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	casePath := fs.String("case", "", "The case file (JSON).")
	engineName := fs.String("engine", "bpf", "bpf or model.")
	output := fs.String("output", "json", "Output format: json.")
	check := fs.Bool("check", false, "Print only verdicts that differ from the probes' expect; exit 1 if any.")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sluicectl policy verdicts: "+format+"\n", a...)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return fail("unexpected arguments %q", fs.Args())
	case *casePath == "":
		return fail("--case is required")
	case *output != "json":
		return fail("--output %q: want json", *output)
	}
	engine, err := newEngine(*engineName)
	if err != nil {
		return fail("%v", err)
	}
	defer func() { _ = engine.Close() }()

	f, err := os.Open(*casePath)
	if err != nil {
		return fail("%v", err)
	}
	defer func() { _ = f.Close() }()
	c, err := policycase.Read(f)
	if err != nil {
		return fail("%s: %v", *casePath, err)
	}
	verdicts, err := policycase.Run(c, engine)
	if err != nil {
		return fail("%s: %v", *casePath, err)
	}

	if *check {
		verdicts = policycase.Mismatches(c, verdicts)
	}
	if verdicts == nil {
		verdicts = []policycase.Verdict{}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(verdicts); err != nil {
		return fail("write output: %v", err)
	}
	if *check && len(verdicts) > 0 {
		return 1
	}
	return 0
}

func newEngine(name string) (policycase.Engine, error) {
	switch name {
	case "model":
		return &policycase.ModelEngine{}, nil
	case "bpf":
		return &policycase.BPFEngine{}, nil
	}
	return nil, fmt.Errorf("--engine %q: want bpf or model", name)
}
