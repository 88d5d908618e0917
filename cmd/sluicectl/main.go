// Command sluicectl is the Sluice operator-facing tool: the state of the
// cluster's dataplane (status), NetworkPolicy verdicts computed offline
// (policy verdicts), and the local lab (lab up, lab node|pod|matrix).
// `sluicectl --help` lists the commands and `sluicectl CMD --help` says
// what each does; `sluicectl completion bash|zsh|fish|powershell` prints a
// shell completion script.
//
// Exit status: 0 done, 1 a runtime failure (or, for status, an unhealthy
// dataplane; for policy verdicts --check, differences), 2 a usage error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitFailure = 1
	exitUsage   = 2
)

// exitError ends sluicectl with code; the command has already said why.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitWith returns the error that ends sluicectl with code, or nil for 0.
func exitWith(code int) error {
	if code == 0 {
		return nil
	}
	return exitError{code}
}

// usageError prints a usage error of cmd and ends with exit status 2.
func usageError(cmd *cobra.Command, format string, a ...any) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", cmd.CommandPath(), fmt.Sprintf(format, a...))
	return exitError{exitUsage}
}

// failure prints a runtime failure of cmd and ends with exit status 1.
func failure(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", cmd.CommandPath(), err)
	return exitError{exitFailure}
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	}
	// Every error a command returns itself is an exitError: the rest are
	// cobra's, an unknown command or flag or a wrong number of arguments.
	fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", cmd.CommandPath(), err, cmd.CommandPath())
	return exitUsage
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "sluicectl",
		Short: "The Sluice operator-facing tool",
		Long: `sluicectl inspects the Sluice dataplane of a cluster, computes NetworkPolicy
verdicts offline and runs the local lab.

Exit status: 0 done, 1 a runtime failure (status: the dataplane is not
healthy; policy verdicts --check: differences), 2 a usage error.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE:          wantSubcommand,
	}
	// Errors are printed by run, which knows the exit code; flag errors
	// would otherwise be printed twice.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.AddCommand(newStatusCmd(), newPolicyCmd(), newLabCmd())
	return root
}

// wantSubcommand is the RunE of a command that only groups others:
// without a subcommand it shows its help on stderr and fails as a usage
// error, as an unknown subcommand does.
func wantSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(cmd, "unknown subcommand %q (see '%s --help')", args[0], cmd.CommandPath())
	}
	cmd.SetOut(cmd.ErrOrStderr())
	_ = cmd.Help()
	return usageError(cmd, "want a subcommand")
}

// noArgs accepts no positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(cmd, "unexpected arguments %q", args)
	}
	return nil
}
