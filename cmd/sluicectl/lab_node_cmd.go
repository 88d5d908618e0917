package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/internal/lab"
)

const labNodeLong = `A demo node made of network namespaces, wired by the real sluice-cni as a
container runtime calls it (libcni, CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME),
with the node agent enforcing NetworkPolicy on its pods. hack/demo.sh uses it.
Every command on the node needs root. The plugin is sluice-cni in --cni-bin
(default: the directory of sluicectl).`

const labNodeExample = `  sluicectl lab node up --dir .lab --node-name aks-system-0
  sluicectl lab pod add --namespace shop --name web --labels app=web --port http:8080/TCP
  sluicectl lab matrix --ports 8080/TCP --denied '*/*>shop/*'
  sluicectl lab node down --dir .lab`

// nodeFlags are the flags of every command on the demo node.
type nodeFlags struct {
	dir, cniBin string
	exe         string // this binary, which node up and pod add start again
}

func bindNodeFlags(cmd *cobra.Command) *nodeFlags {
	f := &nodeFlags{}
	f.exe, _ = os.Executable()
	cmd.Flags().StringVar(&f.dir, "dir", ".lab", "The lab directory (the node's state is in DIR/node).")
	cmd.Flags().StringVar(&f.cniBin, "cni-bin", filepath.Dir(f.exe), "Directory holding sluice-cni (the CNI_PATH).")
	_ = cmd.MarkFlagDirname("dir")
	_ = cmd.MarkFlagDirname("cni-bin")
	return f
}

// node opens the node's state, root only.
func (f *nodeFlags) node() (*lab.Node, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (network namespaces, veths, the CNI plugin)")
	}
	return lab.NewNode(f.dir)
}

// interruptible is ctx cancelled by SIGINT or SIGTERM, so that a command
// stopped half-way still runs its cleanup.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func newLabNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "node",
		Short:   "Create or remove the demo node (network namespaces wired by sluice-cni)",
		Long:    labNodeLong,
		Example: labNodeExample,
		RunE:    wantSubcommand,
	}
	cmd.AddCommand(newLabNodeUpCmd(), newLabNodeDownCmd(), newLabNodeForwardCmd())
	return cmd
}

func newLabNodeUpCmd() *cobra.Command {
	var nodeName, kubeconfig string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create the demo node and print how to run the agent on it",
		Long: `Creates the node's host netns sluice-demo-host (forwarding on; the machine's own
network is never touched), DIR/node with sluice-cni's conflist, and a forwarder
that makes the lab's API server reachable inside the netns at the kubeconfig's
address. It prints the flags to run bin/agent with, inside the netns:
  ip netns exec sluice-demo-host bin/agent <flags>`,
		Args: noArgs,
	}
	f := bindNodeFlags(cmd)
	cmd.Flags().StringVar(&nodeName, "node-name", "aks-system-0", "The Node the pods are scheduled on (the agent's --node-name).")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "The lab's kubeconfig (default DIR/kubeconfig).")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		node, err := f.node()
		if err != nil {
			return failure(cmd, err)
		}
		if kubeconfig == "" {
			kubeconfig = filepath.Join(f.dir, "kubeconfig")
		}
		return exitWith(nodeUp(node, nodeName, kubeconfig, f.exe, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
	return cmd
}

func newLabNodeDownCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove the demo node and everything on it (safe to run twice)",
		Long: `Removes every pod (echo server, CNI DEL, netns), the forwarder, every
sluice-demo-* netns and DIR/node. Safe to run twice.`,
		Args: noArgs,
	}
	f := bindNodeFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := interruptible(cmd.Context())
		defer cancel()
		node, err := f.node()
		if err != nil {
			return failure(cmd, err)
		}
		if err := node.Down(ctx, f.cniBin, cmd.OutOrStdout()); err != nil {
			return failure(cmd, err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), "demo node removed")
		return nil
	}
	return cmd
}

// newLabNodeForwardCmd is the API forwarder node up starts in the
// background; people don't run it, so it is hidden.
func newLabNodeForwardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "forward",
		Short:  "Forward the lab's API server into the node's netns (node up runs it)",
		Args:   noArgs,
		Hidden: true,
	}
	f := bindNodeFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := interruptible(cmd.Context())
		defer cancel()
		node, err := f.node()
		if err != nil {
			return failure(cmd, err)
		}
		st, err := node.State()
		if err != nil {
			return failure(cmd, err)
		}
		if err := node.Forward(ctx, st.APIAddr, cmd.OutOrStdout(), nil); err != nil {
			return failure(cmd, err)
		}
		return nil
	}
	return cmd
}

func newLabPodCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "pod",
		Short:   "Add a pod to the demo node or remove one",
		Long:    labNodeLong,
		Example: labNodeExample,
		RunE:    wantSubcommand,
	}
	cmd.AddCommand(newLabPodAddCmd(), newLabPodDelCmd())
	return cmd
}

// podName is the --namespace and --name of pod add and pod del.
type podName struct{ namespace, name string }

func bindPodName(cmd *cobra.Command) *podName {
	p := &podName{}
	cmd.Flags().StringVar(&p.namespace, "namespace", "", "The pod's namespace.")
	cmd.Flags().StringVar(&p.name, "name", "", "The pod's name.")
	return p
}

func (p *podName) validate(cmd *cobra.Command) error {
	if err := lab.ValidatePodName(p.namespace, p.name); err != nil {
		return usageError(cmd, "--namespace/--name: %v", err)
	}
	return nil
}

func newLabPodAddCmd() *cobra.Command {
	var labels, serve string
	var portFlags []string
	cmd := &cobra.Command{
		Use:   "add --namespace NS --name NAME",
		Short: "Create a pod on the demo node through sluice-cni and start its echo server",
		Long: `Creates the Pod in the API (and its namespace if missing; spec.nodeName the
node's, the labels and container ports given), a netns sluice-demo-NS-NAME,
runs CNI ADD (the agent must be ready: ADD fails closed), prints the pod's
address and starts a TCP echo server in the netns on the --serve ports.`,
		Args: noArgs,
	}
	f := bindNodeFlags(cmd)
	pod := bindPodName(cmd)
	cmd.Flags().StringVar(&labels, "labels", "", "The pod's labels, k=v,...")
	cmd.Flags().StringArrayVar(&portFlags, "port", nil, "A container port NAME:PORT[/PROTO] (repeatable).")
	cmd.Flags().StringVar(&serve, "serve", "8080", "Ports of the echo server in the pod, comma-separated; \"\" for none.")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := pod.validate(cmd); err != nil {
			return err
		}
		lbls, err := parseLabels(labels)
		if err != nil {
			return usageError(cmd, "--labels: %v", err)
		}
		cports, err := parseContainerPorts(portFlags)
		if err != nil {
			return usageError(cmd, "--port: %v", err)
		}
		var sports []int
		if serve != "" {
			ps, err := lab.ParsePorts(serve)
			if err != nil {
				return usageError(cmd, "--serve: %v", err)
			}
			for _, p := range ps {
				sports = append(sports, p.Number)
			}
		}
		ctx, cancel := interruptible(cmd.Context())
		defer cancel()
		node, err := f.node()
		if err != nil {
			return failure(cmd, err)
		}
		return exitWith(podAdd(ctx, node, f.cniBin, f.exe, pod.namespace, pod.name, lbls, cports, sports, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
	return cmd
}

func newLabPodDelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "del --namespace NS --name NAME",
		Short: "Remove a pod of the demo node: echo server, CNI DEL, netns, the Pod object",
		Args:  noArgs,
	}
	f := bindNodeFlags(cmd)
	pod := bindPodName(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := pod.validate(cmd); err != nil {
			return err
		}
		ctx, cancel := interruptible(cmd.Context())
		defer cancel()
		node, err := f.node()
		if err != nil {
			return failure(cmd, err)
		}
		return exitWith(podDel(ctx, node, f.cniBin, pod.namespace, pod.name, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
	return cmd
}

func newLabMatrixCmd() *cobra.Command {
	var pods, ports, denied string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "matrix",
		Short: "Connect from every pod of the demo node to every other and print what got through",
		Long: `Connects from every pod to every other pod on every port and prints ✓ (the
echo came back) or ✗. With --denied it checks the matrix: the cells the
patterns match must be denied, all others allowed; it probes until they are or
--timeout passes, marks wrong cells with ! and exits 1. Patterns are
namespace/name globs: '*/*>shop/*'.`,
		Example: `  sluicectl lab matrix --pods shop/web,shop/api,other/client --ports 8080/TCP --denied 'other/client>shop/*'`,
		Args:    noArgs,
	}
	f := bindNodeFlags(cmd)
	cmd.Flags().StringVar(&pods, "pods", "", "The pods, NS/NAME,... in table order (default every pod of the node).")
	cmd.Flags().StringVar(&ports, "ports", "8080/TCP", "The ports to probe, PORT/TCP,...")
	cmd.Flags().StringVar(&denied, "denied", "", "Check: FROM>TO[:PORT],... must be denied, every other cell allowed (\"none\": all allowed).")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "With --denied, how long to probe until the matrix is as expected.")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		node, err := f.node()
		if err != nil {
			return failure(cmd, err)
		}
		// matrix parses --ports and --denied, and says which was wrong.
		return exitWith(matrix(node, pods, ports, denied, timeout, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
	return cmd
}

func newLabServeCmd() *cobra.Command {
	var ports []string
	cmd := &cobra.Command{
		Use:   "serve --port PORT [--port PORT]...",
		Short: "Run the TCP echo server pod add starts (until SIGTERM)",
		Args:  noArgs,
	}
	// Accepted, as on every command on the node, and unused.
	bindNodeFlags(cmd)
	_ = cmd.Flags().MarkHidden("dir")
	_ = cmd.Flags().MarkHidden("cni-bin")
	cmd.Flags().StringArrayVar(&ports, "port", nil, "A port to serve (repeatable).")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var nums []int
		for _, p := range ports {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return usageError(cmd, "--port %q: want a port number", p)
			}
			nums = append(nums, n)
		}
		if len(nums) == 0 {
			return usageError(cmd, "--port is required")
		}
		if err := lab.Serve(nums, cmd.OutOrStdout()); err != nil {
			return failure(cmd, err)
		}
		return nil
	}
	return cmd
}
