// Command sluicectl is the Sluice developer tool.
//
// Usage:
//
//	sluicectl lab up [--dir .lab] [--webhook-host 127.0.0.1] [--webhook-port 9443] [--repo-root .]
//
// `lab up` starts a local Kubernetes control plane on loopback (etcd and
// kube-apiserver from $KUBEBUILDER_ASSETS, see `make setup-envtest`),
// installs the Sluice CRDs and validating webhook configuration from config/
// pointed at a webhook server on https://<webhook-host>:<webhook-port>,
// writes an admin kubeconfig to <dir>/kubeconfig and runs until interrupted
// (SIGINT or SIGTERM), then stops the control plane. Run the operator
// (bin/manager) against that kubeconfig with --webhook-host, --webhook-port
// and --webhook-cert-ip matching; it creates the webhook certificate and
// injects its CA bundle. hack/demo.sh does all of this.
//
// The control plane has no kubelet, scheduler or controller-manager, so
// DaemonSets (the node agent) are stored but never rolled out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluice-dev/sluice/internal/lab"
)

const usage = `sluicectl is the Sluice developer tool.

Usage:
  sluicectl lab up [flags]   start a local control plane on loopback and
                             run until interrupted (Ctrl-C)
  sluicectl lab node|pod|matrix ...
                             a demo node of network namespaces wired by
                             sluice-cni ('sluicectl lab node --help')
  sluicectl policy verdicts --case FILE [--engine bpf|model] [--check]
                             compute NetworkPolicy verdicts for a case file
  sluicectl help             show this help

Run 'sluicectl lab up --help' for the flags of lab up.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	switch args[0] {
	case "lab":
		return runLab(args[1:], stdout, stderr)
	case "policy":
		return runPolicy(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "sluicectl: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func runLab(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && labNodeCommands[args[0]] {
		return runLabNode(args, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "up" {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "sluicectl lab: want the subcommand up\n\n%s", usage)
		return 2
	}

	fs := flag.NewFlagSet("sluicectl lab up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := lab.Options{Log: stdout}
	fs.StringVar(&opts.Dir, "dir", ".lab", "Directory for the kubeconfig and the control plane logs.")
	fs.StringVar(&opts.WebhookHost, "webhook-host", "127.0.0.1", "Address of the operator's webhook server, as the API server calls it.")
	fs.IntVar(&opts.WebhookPort, "webhook-port", 9443, "Port of the operator's webhook server.")
	fs.StringVar(&opts.RepoRoot, "repo-root", ".", "Repository root holding config/crd/bases and config/webhook.")
	fs.StringVar(&opts.BinaryAssetsDirectory, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "Directory with kube-apiserver, etcd and kubectl (default $KUBEBUILDER_ASSETS).")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sluicectl lab up [flags]\n\n"+
			"Starts etcd and kube-apiserver on loopback, installs the Sluice CRDs and webhook\n"+
			"configuration (calling the operator at https://<webhook-host>:<webhook-port>),\n"+
			"writes <dir>/kubeconfig and runs until interrupted.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluicectl lab up: unexpected arguments %q\n", fs.Args())
		return 2
	}

	// Signals stay caught until the end: a signal that killed this process
	// while it stops the lab would leave kube-apiserver and etcd running.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		sig := <-signals
		fmt.Fprintf(stdout, "lab: got %v\n", sig)
		cancel()
		for sig := range signals {
			fmt.Fprintf(stdout, "lab: got %v; still stopping kube-apiserver and etcd\n", sig)
		}
	}()

	startCtx, cancelStart := context.WithTimeout(ctx, 3*time.Minute)
	l, err := lab.Start(startCtx, opts)
	cancelStart()
	if err != nil {
		fmt.Fprintf(stderr, "sluicectl: start the lab: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "lab: ready; kubeconfig: %s\n", l.Kubeconfig)
	fmt.Fprintf(stdout, "lab: export KUBECONFIG=%s\n", l.Kubeconfig)
	fmt.Fprintf(stdout, "lab: waiting for the operator's webhooks at %s; press Ctrl-C to stop\n", l.WebhookURL)

	<-ctx.Done()
	fmt.Fprintln(stdout, "lab: stopping kube-apiserver and etcd")
	if err := l.Stop(); err != nil {
		fmt.Fprintf(stderr, "sluicectl: stop the lab: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "lab: stopped")
	return 0
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}
