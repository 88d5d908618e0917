package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/policycase"
)

const policyVerdictsLong = `Prints, as a JSON array, one verdict per probe of the case file, in order:
  [{"from": "x/a", "to": "y/b", "port": 80, "protocol": "TCP", "verdict": "allow"}, ...]

  --engine bpf    (default) load the real BPF programs, fill their maps from the
                  compiler, and run each probe as a crafted packet through them
                  (BPF_PROG_TEST_RUN): egress at the source, ingress at the
                  destination. Needs root (CAP_BPF).
  --engine model  the Go evaluator over the same compiled entries.
  --check         print only the probes whose verdict differs from their
                  "expect", and exit 1 if there is any.
  -o yaml, table  the same verdicts as YAML, or as a table for people.

Exit status: 0 done, 1 --check found differences, 2 bad input or usage.`

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Compute NetworkPolicy verdicts offline",
		RunE:  wantSubcommand,
	}
	cmd.AddCommand(newPolicyVerdictsCmd())
	return cmd
}

func newPolicyVerdictsCmd() *cobra.Command {
	var casePath, engineName string
	var check bool
	cmd := &cobra.Command{
		Use:   "verdicts --case FILE [--engine bpf|model] [--check]",
		Short: "Compute the verdict of every probe of a NetworkPolicy case file",
		Long:  policyVerdictsLong,
		Args:  noArgs,
	}
	cmd.Flags().StringVar(&casePath, "case", "", "The case file (JSON).")
	cmd.Flags().StringVar(&engineName, "engine", "bpf", "bpf or model.")
	cmd.Flags().BoolVar(&check, "check", false, "Print only verdicts that differ from the probes' expect; exit 1 if any.")
	output := bindOutput(cmd, outputJSON, outputJSON, outputYAML, outputTable)
	_ = cmd.RegisterFlagCompletionFunc("engine", cobra.FixedCompletions([]string{"bpf", "model"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := output.validate(cmd); err != nil {
			return err
		}
		return exitWith(policyVerdicts(casePath, engineName, output.format, check, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
	return cmd
}

// policyVerdicts runs the case file's probes through the engine and prints
// the verdicts; every failure is bad input (exit 2), as the engines fail
// only on what the case file asks of them.
func policyVerdicts(casePath, engineName, format string, check bool, stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sluicectl policy verdicts: "+format+"\n", a...)
		return exitUsage
	}
	if casePath == "" {
		return fail("--case is required")
	}
	engine, err := newEngine(engineName)
	if err != nil {
		return fail("%v", err)
	}
	defer func() { _ = engine.Close() }()

	f, err := os.Open(casePath)
	if err != nil {
		return fail("%v", err)
	}
	defer func() { _ = f.Close() }()
	c, err := policycase.Read(f)
	if err != nil {
		return fail("%s: %v", casePath, err)
	}
	verdicts, err := policycase.Run(c, engine)
	if err != nil {
		return fail("%s: %v", casePath, err)
	}

	if check {
		verdicts = policycase.Mismatches(c, verdicts)
	}
	if verdicts == nil {
		verdicts = []policycase.Verdict{}
	}
	if format == outputTable {
		err = writeVerdictTable(stdout, verdicts, check)
	} else {
		err = writeDocument(stdout, format, verdicts)
	}
	if err != nil {
		return fail("write output: %v", err)
	}
	if check && len(verdicts) > 0 {
		return exitFailure
	}
	return 0
}

func writeVerdictTable(w io.Writer, verdicts []policycase.Verdict, check bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "FROM\tTO\tPORT\tPROTOCOL\tVERDICT"
	if check {
		header += "\tEXPECT"
	}
	fmt.Fprintln(tw, header)
	for _, v := range verdicts {
		line := fmt.Sprintf("%s\t%s\t%d\t%s\t%s", v.From, v.To, v.Port, v.Protocol, v.Verdict)
		if check {
			line += "\t" + v.Expect
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
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
