package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// outputFlag is -o/--output for a command that prints a document.
type outputFlag struct {
	format  string
	allowed []string
}

func bindOutput(cmd *cobra.Command, def string, allowed ...string) *outputFlag {
	o := &outputFlag{allowed: allowed}
	cmd.Flags().StringVarP(&o.format, "output", "o", def, "Output format: "+strings.Join(allowed, ", ")+".")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
	return o
}

// validate is a usage error for a format the command doesn't print.
func (o *outputFlag) validate(cmd *cobra.Command) error {
	if !slices.Contains(o.allowed, o.format) {
		last := len(o.allowed) - 1
		return usageError(cmd, "--output %q: want %s or %s", o.format, strings.Join(o.allowed[:last], ", "), o.allowed[last])
	}
	return nil
}

// writeDocument prints v as indented JSON or as YAML with the same field
// names.
func writeDocument(w io.Writer, format string, v any) error {
	switch format {
	case outputJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case outputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("no document format %q", format)
}
