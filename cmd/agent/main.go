// Command agent is Sluice's node agent, run by the DaemonSet the operator
// renders on every node: it enforces NetworkPolicy with the eBPF datapath
// (pinned under /sys/fs/bpf/sluice, so enforcement survives its restarts),
// takes pod endpoints from sluice-cni on /var/run/sluice/agent.sock,
// keeps the node's pod addresses in sync with its NodeNetwork, and turns
// IP forwarding on (through --proc-sys-net), without which the node can't
// route pod traffic. See package internal/agent.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sluice-dev/sluice/internal/agent"
)

func main() {
	fs := flag.CommandLine // holds controller-runtime's --kubeconfig
	f := bindFlags(fs, os.Getenv)
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if err := run(ctrl.SetupSignalHandler(), f); err != nil {
		ctrl.Log.Error(err, "Agent stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, f *flags) error {
	opts, level, err := f.options()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return err
	}
	zo := zap.Options{}
	zfs := flag.NewFlagSet("zap", flag.ContinueOnError)
	zo.BindFlags(zfs)
	if err := zfs.Parse([]string{"--zap-log-level=" + level}); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zo)))
	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	opts.RESTConfig = restConfig
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
