package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/internal/lab"
)

const labNodeUsage = `Usage (all need root):
  sluicectl lab node up [--dir .lab] [--node-name aks-system-0] [--kubeconfig DIR/kubeconfig]
  sluicectl lab node down [--dir .lab]
  sluicectl lab pod add --namespace NS --name NAME [--labels k=v,...] [--port NAME:PORT/PROTO]... [--serve 8080,...]
  sluicectl lab pod del --namespace NS --name NAME
  sluicectl lab matrix [--pods NS/NAME,...] [--ports 8080/TCP,...] [--denied FROM>TO[:PORT],...|none] [--timeout 10s]
  sluicectl lab serve --port PORT [--port PORT]...

A demo node made of network namespaces, wired by the real sluice-cni as a
container runtime calls it (libcni, CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME),
with the node agent enforcing NetworkPolicy on its pods. hack/demo.sh uses it.

node up    creates the node's host netns sluice-demo-host (forwarding on; the
           machine's own network is never touched), DIR/node with sluice-cni's
           conflist, and a forwarder that makes the lab's API server reachable
           inside the netns at the kubeconfig's address. It prints the flags to
           run bin/agent with, inside the netns:
             ip netns exec sluice-demo-host bin/agent <flags>
node down  removes every pod (echo server, CNI DEL, netns), the forwarder,
           every sluice-demo-* netns and DIR/node. Safe to run twice.
pod add    creates the Pod in the API (and its namespace if missing; spec.nodeName
           the node's, the labels and container ports given), a netns
           sluice-demo-NS-NAME, runs CNI ADD (the agent must be ready: ADD
           fails closed), prints the pod's address and starts a TCP echo server
           in the netns on the --serve ports (default 8080).
pod del    the reverse: echo server, CNI DEL, netns, the Pod object.
matrix     connects from every pod to every other pod on every port and prints
           ✓ (the echo came back) or ✗. With --denied it checks the matrix: the
           cells the patterns match must be denied, all others allowed; it
           probes until they are or --timeout passes, marks wrong cells with !
           and exits 1. Patterns are namespace/name globs: '*/*>shop/*'.
serve      the echo server pod add starts (runs until SIGTERM).

The plugin is sluice-cni in --cni-bin (default: the directory of sluicectl).
`

// labNodeCommands are the lab subcommands of this file.
var labNodeCommands = map[string]bool{"node": true, "pod": true, cmdMatrix: true, cmdServe: true}

// Subcommands of this file.
const (
	cmdNodeUp      = "node up"
	cmdNodeDown    = "node down"
	cmdNodeForward = "node forward"
	cmdPodAdd      = "pod add"
	cmdPodDel      = "pod del"
	cmdMatrix      = "matrix"
	cmdServe       = "serve"
)

// labCmd is one subcommand's command line.
type labCmd struct {
	name, sub      string
	fs             *flag.FlagSet
	dir, cniBin    string
	exe            string
	stdout, stderr io.Writer
}

func (c *labCmd) usageErr(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "%s: "+format+"\n", append([]any{c.name}, a...)...)
	return 2
}

func (c *labCmd) fail(err error) int {
	fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
	return 1
}

// parse parses the flags; ok false means return code.
func (c *labCmd) parse(args []string) (code int, ok bool) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if c.fs.NArg() > 0 {
		return c.usageErr("unexpected arguments %q", c.fs.Args()), false
	}
	return 0, true
}

// node opens the node's state, root only.
func (c *labCmd) node() (*lab.Node, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (network namespaces, veths, the CNI plugin)")
	}
	return lab.NewNode(c.dir)
}

func runLabNode(args []string, stdout, stderr io.Writer) int {
	sub := args[0]
	if sub == "node" || sub == "pod" {
		if len(args) < 2 || isHelp(args[1]) {
			if len(args) >= 2 {
				fmt.Fprint(stdout, labNodeUsage)
				return 0
			}
			fmt.Fprintf(stderr, "sluicectl lab %s: want a subcommand\n\n%s", sub, labNodeUsage)
			return 2
		}
		sub += " " + args[1]
		args = args[1:]
	}
	c := &labCmd{name: "sluicectl lab " + sub, sub: sub, stdout: stdout, stderr: stderr}
	c.fs = flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() { fmt.Fprint(stderr, labNodeUsage) }
	c.fs.StringVar(&c.dir, "dir", ".lab", "The lab directory (the node's state is in DIR/node).")
	c.exe, _ = os.Executable()
	c.fs.StringVar(&c.cniBin, "cni-bin", filepath.Dir(c.exe), "Directory holding sluice-cni (the CNI_PATH).")
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	switch sub {
	case cmdNodeUp:
		return c.nodeUp(args[1:])
	case cmdNodeDown:
		return c.nodeDown(ctx, args[1:])
	case cmdNodeForward:
		return c.nodeForward(ctx, args[1:])
	case cmdPodAdd:
		return c.podAdd(ctx, args[1:])
	case cmdPodDel:
		return c.podDel(ctx, args[1:])
	case cmdMatrix:
		return c.matrix(args[1:])
	case cmdServe:
		return c.serve(args[1:])
	}
	fmt.Fprintf(stderr, "sluicectl lab: unknown subcommand %q\n\n%s", sub, labNodeUsage)
	return 2
}

func (c *labCmd) serve(args []string) int {
	var ports multiFlag
	c.fs.Var(&ports, "port", "A port to serve (repeatable).")
	if code, ok := c.parse(args); !ok {
		return code
	}
	var nums []int
	for _, p := range ports {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return c.usageErr("--port %q: want a port number", p)
		}
		nums = append(nums, n)
	}
	if len(nums) == 0 {
		return c.usageErr("--port is required")
	}
	if err := lab.Serve(nums, c.stdout); err != nil {
		return c.fail(err)
	}
	return 0
}

func (c *labCmd) nodeDown(ctx context.Context, args []string) int {
	if code, ok := c.parse(args); !ok {
		return code
	}
	node, err := c.node()
	if err != nil {
		return c.fail(err)
	}
	if err := node.Down(ctx, c.cniBin, c.stdout); err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, "demo node removed")
	return 0
}

// nodeForward is the API forwarder `lab node up` starts: it runs until
// SIGTERM.
func (c *labCmd) nodeForward(ctx context.Context, args []string) int {
	if code, ok := c.parse(args); !ok {
		return code
	}
	node, err := c.node()
	if err != nil {
		return c.fail(err)
	}
	st, err := node.State()
	if err != nil {
		return c.fail(err)
	}
	if err := node.Forward(ctx, st.APIAddr, c.stdout, nil); err != nil {
		return c.fail(err)
	}
	return 0
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want key=value", f)
		}
		out[k] = v
	}
	return out, nil
}

// parseContainerPorts parses NAME:PORT[/PROTO] (or PORT[/PROTO]).
func parseContainerPorts(flags []string) ([]corev1.ContainerPort, error) {
	var out []corev1.ContainerPort
	for _, f := range flags {
		name, rest, ok := strings.Cut(f, ":")
		if !ok {
			name, rest = "", f
		}
		num, proto, _ := strings.Cut(rest, "/")
		if proto == "" {
			proto = "TCP"
		}
		proto = strings.ToUpper(proto)
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > 65535 || (proto != "TCP" && proto != "UDP" && proto != "SCTP") {
			return nil, fmt.Errorf("%q: want NAME:PORT[/TCP|UDP|SCTP]", f)
		}
		out = append(out, corev1.ContainerPort{Name: name, ContainerPort: int32(n), Protocol: corev1.Protocol(proto)})
	}
	return out, nil
}

// labCommandLine is the command line that runs `sluicectl lab <sub>` with
// args, sub being one of the cmd* constants.
func labCommandLine(exe, sub string, args ...string) []string {
	line := append([]string{exe, "lab"}, strings.Fields(sub)...)
	return append(line, args...)
}

func nodeUp(node *lab.Node, nodeName, kubeconfig, exe string, stdout, stderr io.Writer) int {
	err := node.Start(lab.StartOptions{
		NodeName: nodeName, Kubeconfig: kubeconfig,
		Forwarder: labCommandLine(exe, cmdNodeForward, "--dir", filepath.Dir(node.Dir)),
	}, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "sluicectl lab node up: %v\n", err)
		return 1
	}
	return 0
}

func podAdd(ctx context.Context, node *lab.Node, cniBin, exe, namespace, name string, labels map[string]string,
	cports []corev1.ContainerPort, serve []int, stdout, stderr io.Writer,
) int {
	opts := lab.PodOptions{
		Namespace: namespace, Name: name, Labels: labels, ContainerPorts: cports,
		PluginDir: cniBin, ServePorts: serve, Serve: labCommandLine(exe, cmdServe),
	}
	for _, p := range serve {
		opts.Serve = append(opts.Serve, "--port", strconv.Itoa(p))
	}
	rec, err := node.AddPod(ctx, opts, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sluicectl lab pod add %s/%s: %v\n", namespace, name, err)
		return 1
	}
	fmt.Fprintf(stdout, "pod %s/%s: IP %s, netns %s, host veth %s", namespace, name, rec.IP, rec.NetNSName, rec.HostIfName)
	if len(serve) > 0 {
		fmt.Fprintf(stdout, ", echo server on %v (pid %d)", serve, rec.ServePID)
	}
	fmt.Fprintln(stdout)
	return 0
}

func podDel(ctx context.Context, node *lab.Node, cniBin, namespace, name string, stdout, stderr io.Writer) int {
	if err := node.DeletePod(ctx, cniBin, namespace, name); err != nil {
		fmt.Fprintf(stderr, "sluicectl lab pod del: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "pod %s/%s removed\n", namespace, name)
	return 0
}

func matrix(node *lab.Node, podList, portList, denied string, timeout time.Duration, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "sluicectl lab matrix: "+format+"\n", a...)
		return code
	}
	opts := lab.MatrixOptions{Check: denied != "", Within: timeout}
	var err error
	if opts.Ports, err = lab.ParsePorts(portList); err != nil {
		return fail(2, "--ports: %v", err)
	}
	if opts.Want, err = lab.ParseDenied(denied); err != nil {
		return fail(2, "--denied: %v", err)
	}
	if podList != "" {
		for key := range strings.SplitSeq(podList, ",") {
			key = strings.TrimSpace(key)
			if _, _, ok := strings.Cut(key, "/"); !ok {
				return fail(2, "--pods: %q is not NS/NAME", key)
			}
			opts.Pods = append(opts.Pods, key)
		}
	}
	if err := node.Matrix(opts, stdout, stderr); err != nil {
		return fail(1, "%v", err)
	}
	return 0
}

func (c *labCmd) nodeUp(args []string) int {
	nodeName := c.fs.String("node-name", "aks-system-0", "The Node the pods are scheduled on (the agent's --node-name).")
	kubeconfig := c.fs.String("kubeconfig", "", "The lab's kubeconfig (default DIR/kubeconfig).")
	if code, ok := c.parse(args); !ok {
		return code
	}
	node, err := c.node()
	if err != nil {
		return c.fail(err)
	}
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(c.dir, "kubeconfig")
	}
	return nodeUp(node, *nodeName, *kubeconfig, c.exe, c.stdout, c.stderr)
}

// podFlags binds --namespace and --name, parses, and validates them.
func (c *labCmd) podFlags(args []string) (namespace, name string, code int, ok bool) {
	c.fs.StringVar(&namespace, "namespace", "", "The pod's namespace.")
	c.fs.StringVar(&name, "name", "", "The pod's name.")
	if code, ok := c.parse(args); !ok {
		return "", "", code, false
	}
	if err := lab.ValidatePodName(namespace, name); err != nil {
		return "", "", c.usageErr("--namespace/--name: %v", err), false
	}
	return namespace, name, 0, true
}

func (c *labCmd) podAdd(ctx context.Context, args []string) int {
	labels := c.fs.String("labels", "", "The pod's labels, k=v,...")
	var portFlags multiFlag
	c.fs.Var(&portFlags, "port", "A container port NAME:PORT[/PROTO] (repeatable).")
	serve := c.fs.String("serve", "8080", "Ports of the echo server in the pod, comma-separated; \"\" for none.")
	namespace, name, code, ok := c.podFlags(args)
	if !ok {
		return code
	}
	lbls, err := parseLabels(*labels)
	if err != nil {
		return c.usageErr("--labels: %v", err)
	}
	cports, err := parseContainerPorts(portFlags)
	if err != nil {
		return c.usageErr("--port: %v", err)
	}
	var sports []int
	if *serve != "" {
		ps, err := lab.ParsePorts(*serve)
		if err != nil {
			return c.usageErr("--serve: %v", err)
		}
		for _, p := range ps {
			sports = append(sports, p.Number)
		}
	}
	node, err := c.node()
	if err != nil {
		return c.fail(err)
	}
	return podAdd(ctx, node, c.cniBin, c.exe, namespace, name, lbls, cports, sports, c.stdout, c.stderr)
}

func (c *labCmd) podDel(ctx context.Context, args []string) int {
	namespace, name, code, ok := c.podFlags(args)
	if !ok {
		return code
	}
	node, err := c.node()
	if err != nil {
		return c.fail(err)
	}
	return podDel(ctx, node, c.cniBin, namespace, name, c.stdout, c.stderr)
}

func (c *labCmd) matrix(args []string) int {
	pods := c.fs.String("pods", "", "The pods, NS/NAME,... in table order (default every pod of the node).")
	ports := c.fs.String("ports", "8080/TCP", "The ports to probe, PORT/TCP,...")
	denied := c.fs.String("denied", "", "Check: FROM>TO[:PORT],... must be denied, every other cell allowed (\"none\": all allowed).")
	timeout := c.fs.Duration("timeout", 10*time.Second, "With --denied, how long to probe until the matrix is as expected.")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if _, err := lab.ParsePorts(*ports); err != nil {
		return c.usageErr("--ports: %v", err)
	}
	if _, err := lab.ParseDenied(*denied); err != nil {
		return c.usageErr("--denied: %v", err)
	}
	node, err := c.node()
	if err != nil {
		return c.fail(err)
	}
	return matrix(node, *pods, *ports, *denied, *timeout, c.stdout, c.stderr)
}
