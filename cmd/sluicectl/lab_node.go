package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

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
	case cmdNodeDown, cmdNodeForward:
		return c.nodeDownOrForward(ctx, args[1:])
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

func (c *labCmd) nodeDownOrForward(ctx context.Context, args []string) int {
	if code, ok := c.parse(args); !ok {
		return code
	}
	node, err := c.node()
	if err != nil {
		return c.fail(err)
	}
	if c.sub == cmdNodeForward {
		st, err := node.State()
		if err != nil {
			return c.fail(err)
		}
		if err := lab.Forward(ctx, st.APIAddr, c.stdout, nil); err != nil {
			return c.fail(err)
		}
		return 0
	}
	if err := node.Down(ctx, c.cniBin, c.stdout); err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, "demo node removed")
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

func nodeUp(node *lab.Node, nodeName, kubeconfig, exe string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sluicectl lab node up: %v\n", err)
		return 1
	}
	st, err := node.Up(nodeName, kubeconfig)
	if err != nil {
		return fail(err)
	}
	logPath := filepath.Join(node.LogDir(), "forward.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fail(err)
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(exe, "lab", "node", "forward", "--dir", filepath.Dir(node.Dir))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start the API forwarder: %w", err))
	}
	st.ForwarderPID = cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := node.SaveState(st); err != nil {
		return fail(err)
	}
	if err := lab.WaitListening(lab.HostNetNS, st.APIAddr, 10*time.Second); err != nil {
		return fail(fmt.Errorf("the API forwarder (log %s): %w", logPath, err))
	}
	fmt.Fprintf(stdout, "node %s up: host netns %s, state in %s\n", st.NodeName, lab.HostNetNS, node.Dir)
	fmt.Fprintf(stdout, "API server %s reachable inside the netns (forwarder pid %d)\n", st.APIAddr, st.ForwarderPID)
	fmt.Fprintf(stdout, "conflist: %s\n", node.ConflistPath())
	fmt.Fprintf(stdout, "run the agent: ip netns exec %s bin/agent %s\n", lab.HostNetNS, strings.Join(node.AgentArgs(st), " "))
	return 0
}

func kubeClient(kubeconfig string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 15 * time.Second
	return kubernetes.NewForConfig(cfg)
}

func podAdd(ctx context.Context, node *lab.Node, cniBin, exe, namespace, name string, labels map[string]string,
	cports []corev1.ContainerPort, serve []int, stdout, stderr io.Writer,
) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sluicectl lab pod add %s/%s: %v\n", namespace, name, err)
		return 1
	}
	st, err := node.State()
	if err != nil {
		return fail(err)
	}
	if _, err := os.Stat(filepath.Join(cniBin, "sluice-cni")); err != nil {
		return fail(fmt.Errorf("no sluice-cni in %s (go build -o bin/sluice-cni ./cmd/cni, or --cni-bin)", cniBin))
	}
	kc, err := kubeClient(st.Kubeconfig)
	if err != nil {
		return fail(err)
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fail(fmt.Errorf("create namespace: %w", err))
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   st.NodeName,
			Containers: []corev1.Container{{Name: "echo", Image: "sluice-demo/echo:1", Ports: cports}},
		},
	}
	if pod, err = kc.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fail(fmt.Errorf("create the Pod: %w", err))
	}
	deletePod := func() {
		_ = kc.CoreV1().Pods(namespace).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	}
	rec := lab.NewPodRecord(namespace, name)
	if err := node.AddPod(ctx, cniBin, rec); err != nil {
		deletePod()
		return fail(err)
	}
	// What a kubelet would report.
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = rec.IP
	pod.Status.PodIPs = []corev1.PodIP{{IP: rec.IP}}
	if _, err := kc.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		fmt.Fprintf(stderr, "warning: set the Pod's status: %v\n", err)
	}
	if len(serve) > 0 {
		logPath := filepath.Join(node.LogDir(), namespace+"_"+name+".serve.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			return fail(err)
		}
		defer func() { _ = logFile.Close() }()
		args := []string{"lab", "serve"}
		for _, p := range serve {
			args = append(args, "--port", strconv.Itoa(p))
		}
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := lab.StartInNetNS(rec.NetNS, cmd); err != nil {
			return fail(fmt.Errorf("start the echo server: %w", err))
		}
		rec.ServePID, rec.ServePorts = cmd.Process.Pid, serve
		_ = cmd.Process.Release()
		if err := node.SavePod(rec); err != nil {
			return fail(err)
		}
		for _, p := range serve {
			if err := lab.WaitListening(rec.NetNS, fmt.Sprintf("127.0.0.1:%d", p), 5*time.Second); err != nil {
				return fail(fmt.Errorf("the echo server (log %s): %w", logPath, err))
			}
		}
	}
	fmt.Fprintf(stdout, "pod %s/%s: IP %s, netns %s, host veth %s", namespace, name, rec.IP, rec.NetNS, rec.HostIf)
	if len(serve) > 0 {
		fmt.Fprintf(stdout, ", echo server on %v (pid %d)", serve, rec.ServePID)
	}
	fmt.Fprintln(stdout)
	return 0
}

func podDel(ctx context.Context, node *lab.Node, cniBin, namespace, name string, stdout, stderr io.Writer) int {
	rec, err := node.Pod(namespace, name)
	if err != nil {
		fmt.Fprintf(stderr, "sluicectl lab pod del: %v\n", err)
		return 1
	}
	rc := 0
	if err := node.DelPod(ctx, cniBin, rec); err != nil {
		fmt.Fprintf(stderr, "sluicectl lab pod del: %v\n", err)
		rc = 1
	}
	if st, err := node.State(); err == nil {
		if kc, err := kubeClient(st.Kubeconfig); err == nil {
			err := kc.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			if err != nil && !apierrors.IsNotFound(err) {
				fmt.Fprintf(stderr, "sluicectl lab pod del: delete the Pod: %v\n", err)
				rc = 1
			}
		}
	}
	if rc == 0 {
		fmt.Fprintf(stdout, "pod %s/%s removed\n", namespace, name)
	}
	return rc
}

func matrix(node *lab.Node, podList, portList, denied string, timeout time.Duration, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "sluicectl lab matrix: "+format+"\n", a...)
		return code
	}
	ports, err := lab.ParsePorts(portList)
	if err != nil {
		return fail(2, "--ports: %v", err)
	}
	var want lab.Denied
	check := denied != ""
	if check {
		if want, err = lab.ParseDenied(denied); err != nil {
			return fail(2, "--denied: %v", err)
		}
	}
	var pods []*lab.PodRecord
	if podList == "" {
		if pods, err = node.Pods(); err != nil {
			return fail(1, "%v", err)
		}
	} else {
		for key := range strings.SplitSeq(podList, ",") {
			ns, name, ok := strings.Cut(strings.TrimSpace(key), "/")
			if !ok {
				return fail(2, "--pods: %q is not NS/NAME", key)
			}
			p, err := node.Pod(ns, name)
			if err != nil {
				return fail(1, "%v", err)
			}
			pods = append(pods, p)
		}
	}
	if len(pods) < 2 {
		return fail(1, "want at least two pods, have %d", len(pods))
	}
	start := time.Now()
	for {
		m := lab.Probe(pods, ports, 500*time.Millisecond)
		if !check {
			m.Print(stdout, nil)
			return 0
		}
		bad := m.Wrong(want)
		if len(bad) == 0 {
			m.Print(stdout, want)
			fmt.Fprintf(stdout, "as expected (%v)\n", time.Since(start).Round(100*time.Millisecond))
			return 0
		}
		if time.Since(start) > timeout {
			m.Print(stdout, want)
			for _, c := range bad {
				fmt.Fprintf(stderr, "wrong: %s reachable=%v, want %v\n", c, m.Reached[c], want.Allowed(c))
			}
			return fail(1, "%d cells differ from the expectation after %v", len(bad), timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
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
