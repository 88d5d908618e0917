package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/lab"
)

const labUpLong = `Starts etcd and kube-apiserver on loopback (from $KUBEBUILDER_ASSETS, see
'make setup-envtest'), installs the Sluice CRDs and the webhook configuration
from config/ pointed at the operator at https://<webhook-host>:<webhook-port>,
writes an admin kubeconfig to <dir>/kubeconfig and runs until interrupted
(SIGINT or SIGTERM), then stops the control plane.

Run the operator (bin/manager) against that kubeconfig with --webhook-host,
--webhook-port and --webhook-cert-ip matching; it creates the webhook
certificate and injects its CA bundle. hack/demo.sh does all of this.

The control plane has no kubelet, scheduler or controller-manager, so
DaemonSets (the node agent) are stored but never rolled out.`

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a cluster on this machine: a control plane on loopback and a node of network namespaces",
		RunE:  wantSubcommand,
	}
	cmd.AddCommand(newLabUpCmd(), newLabNodeCmd(), newLabPodCmd(), newLabMatrixCmd(), newLabServeCmd())
	return cmd
}

func newLabUpCmd() *cobra.Command {
	var opts lab.Options
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a local control plane on loopback and run until interrupted (Ctrl-C)",
		Long:  labUpLong,
		Args:  noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Dir, "dir", ".lab", "Directory for the kubeconfig and the control plane logs.")
	fs.StringVar(&opts.WebhookHost, "webhook-host", "127.0.0.1", "Address of the operator's webhook server, as the API server calls it.")
	fs.IntVar(&opts.WebhookPort, "webhook-port", 9443, "Port of the operator's webhook server.")
	fs.StringVar(&opts.RepoRoot, "repo-root", ".", "Repository root holding config/crd/bases and config/webhook.")
	fs.StringVar(&opts.BinaryAssetsDirectory, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "Directory with kube-apiserver, etcd and kubectl (default $KUBEBUILDER_ASSETS).")
	_ = cmd.MarkFlagDirname("dir")
	_ = cmd.MarkFlagDirname("repo-root")
	_ = cmd.MarkFlagDirname("assets")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		opts.Log = cmd.OutOrStdout()
		return labUp(cmd, opts)
	}
	return cmd
}

func labUp(cmd *cobra.Command, opts lab.Options) error {
	stdout := cmd.OutOrStdout()
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
		return failure(cmd, fmt.Errorf("start the lab: %w", err))
	}
	fmt.Fprintf(stdout, "lab: ready; kubeconfig: %s\n", l.Kubeconfig)
	fmt.Fprintf(stdout, "lab: export KUBECONFIG=%s\n", l.Kubeconfig)
	fmt.Fprintf(stdout, "lab: waiting for the operator's webhooks at %s; press Ctrl-C to stop\n", l.WebhookURL)

	<-ctx.Done()
	fmt.Fprintln(stdout, "lab: stopping kube-apiserver and etcd")
	if err := l.Stop(); err != nil {
		return failure(cmd, fmt.Errorf("stop the lab: %w", err))
	}
	fmt.Fprintln(stdout, "lab: stopped")
	return nil
}
