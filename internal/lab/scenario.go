package lab

// The node scenario: what `sluicectl lab node up`, `lab pod add|del` and
// `lab matrix` do, on top of the node's netns layer (node.go). The lab has
// no kubelet, so adding a pod plays its part too: the Pod in the API, the
// sandbox through CNI, the status a kubelet would report, and the pod's
// process (an echo server).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-dev/sluice/internal/netlab"
)

// StartOptions bring the node up.
type StartOptions struct {
	// NodeName is the Node the pods are scheduled on (the agent's
	// --node-name).
	NodeName string
	// Kubeconfig is the lab's admin kubeconfig.
	Kubeconfig string
	// Forwarder is the command line of a process that runs Forward for
	// this node until it is stopped (`sluicectl lab node forward`). It is
	// started in a session of its own and outlives the caller.
	Forwarder []string
}

// Start brings the node up (Up), starts the API forwarder, waits until
// the API server answers inside the host namespace, and says what it did on out,
// ending with the command that runs the agent.
func (n *Node) Start(opts StartOptions, out io.Writer) error {
	if len(opts.Forwarder) == 0 {
		return errors.New("no forwarder command")
	}
	st, err := n.Up(opts.NodeName, opts.Kubeconfig)
	if err != nil {
		return err
	}
	logPath := filepath.Join(n.LogDir(), "forward.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(opts.Forwarder[0], opts.Forwarder[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the API forwarder: %w", err)
	}
	st.ForwarderPID = cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := n.SaveState(st); err != nil {
		return err
	}
	if err := WaitListening(n.HostNetNS(), st.APIAddr, 10*time.Second); err != nil {
		return fmt.Errorf("the API forwarder (log %s): %w", logPath, err)
	}
	fmt.Fprintf(out, "node %s up: host netns %s, state in %s\n", st.NodeName, n.HostNetNS(), n.Dir)
	fmt.Fprintf(out, "API server %s reachable inside the netns (forwarder pid %d)\n", st.APIAddr, st.ForwarderPID)
	fmt.Fprintf(out, "conflist: %s\n", n.ConflistPath())
	fmt.Fprintf(out, "run the agent: ip netns exec %s bin/agent %s\n", n.HostNetNS(), strings.Join(n.AgentArgs(st), " "))
	return nil
}

// PodOptions describe a pod to add.
type PodOptions struct {
	Namespace, Name string
	Labels          map[string]string
	// ContainerPorts are the Pod's (the named ports policies resolve).
	ContainerPorts []corev1.ContainerPort
	// PluginDir holds sluice-cni (the CNI_PATH).
	PluginDir string
	// ServePorts are the TCP ports of the pod's echo server, and Serve the
	// command line that serves them (`sluicectl lab serve --port ...`),
	// run inside the pod's netns; no server when ServePorts is empty.
	ServePorts []int
	Serve      []string
}

// AddPod does what the API server, kubelet and the container runtime do
// for a new pod, with the lab's means: it creates the Namespace (when
// missing) and the Pod (spec.nodeName this node's), wires the pod through
// the real plugin (which fails closed until the agent is ready), reports
// the status a kubelet would (Running, the pod's IP), starts the echo
// server in the pod's netns and waits until it listens. A pod that can't
// be wired is deleted from the API again; a status that can't be written
// is a warning on warn, not a failure.
func (n *Node) AddPod(ctx context.Context, opts PodOptions, warn io.Writer) (*PodRecord, error) {
	st, err := n.State()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(opts.PluginDir, "sluice-cni")); err != nil {
		return nil, fmt.Errorf("no sluice-cni in %s (go build -o bin/sluice-cni ./cmd/cni, or --cni-bin)", opts.PluginDir)
	}
	kc, err := kubeClient(st.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace: %w", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name, Labels: opts.Labels},
		Spec: corev1.PodSpec{
			NodeName:   st.NodeName,
			Containers: []corev1.Container{{Name: "echo", Image: "sluice-demo/echo:1", Ports: opts.ContainerPorts}},
		},
	}
	if pod, err = kc.CoreV1().Pods(opts.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create the Pod: %w", err)
	}
	rec := n.NewPodRecord(opts.Namespace, opts.Name)
	if err := n.wirePod(ctx, opts.PluginDir, rec); err != nil {
		_ = kc.CoreV1().Pods(opts.Namespace).Delete(context.Background(), opts.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		return nil, err
	}
	ip := rec.IP.String()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if _, err := kc.CoreV1().Pods(opts.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		fmt.Fprintf(warn, "warning: set the Pod's status: %v\n", err)
	}
	if len(opts.ServePorts) > 0 {
		if err := n.serve(rec, opts); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// serve starts the pod's echo server, records it and waits until it
// listens on every port.
func (n *Node) serve(rec *PodRecord, opts PodOptions) error {
	if len(opts.Serve) == 0 {
		return errors.New("no command to serve the echo ports")
	}
	logPath := filepath.Join(n.LogDir(), opts.Namespace+"_"+opts.Name+".serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(opts.Serve[0], opts.Serve[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := StartInNetNS(rec.NetNSName, cmd); err != nil {
		return fmt.Errorf("start the echo server: %w", err)
	}
	rec.ServePID, rec.ServePorts = cmd.Process.Pid, opts.ServePorts
	_ = cmd.Process.Release()
	if err := n.SavePod(rec); err != nil {
		return err
	}
	for _, p := range opts.ServePorts {
		if err := WaitListening(rec.NetNSName, fmt.Sprintf("127.0.0.1:%d", p), 5*time.Second); err != nil {
			return fmt.Errorf("the echo server (log %s): %w", logPath, err)
		}
	}
	return nil
}

// DeletePod is AddPod's reverse: the echo server, CNI DEL, the netns and
// the Pod object. It goes on past errors and returns them all.
func (n *Node) DeletePod(ctx context.Context, pluginDir, namespace, name string) error {
	rec, err := n.Pod(namespace, name)
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, n.unwirePod(ctx, pluginDir, rec))
	if st, err := n.State(); err == nil {
		if kc, err := kubeClient(st.Kubeconfig); err == nil {
			err := kc.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete the Pod: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

func kubeClient(kubeconfig string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 15 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// MatrixOptions say what to probe and what to expect.
type MatrixOptions struct {
	// Pods are namespace/name keys in table order; empty: every pod of
	// the node.
	Pods []string
	// Ports are probed on every pair of pods.
	Ports []netlab.Port
	// Check compares the matrix with Want, probing again until they agree
	// or Within passes.
	Check  bool
	Want   Denied
	Within time.Duration
}

// matrixProbeTimeout bounds one probe of `lab matrix`: generous, since the
// machine may be busy and a miss only costs another pass.
const matrixProbeTimeout = 500 * time.Millisecond

// Matrix probes every pod to every other pod on every port and prints the
// table on out. With Check it waits for the expectation, marks wrong
// cells, lists them on errOut and returns an error when they don't agree
// in time.
func (n *Node) Matrix(opts MatrixOptions, out, errOut io.Writer) error {
	pods, err := n.matrixPods(opts.Pods)
	if err != nil {
		return err
	}
	if len(pods) < 2 {
		return fmt.Errorf("want at least two pods, have %d", len(pods))
	}
	cells := netlab.Cells(pods, opts.Ports, false)
	if !opts.Check {
		m := &netlab.Matrix{Cells: cells, Results: netlab.ProbeCells(cells, matrixProbeTimeout)}
		newMatrix(pods, opts.Ports, m).Print(out, nil)
		return nil
	}
	hm, err := netlab.WaitMatrix(context.Background(), cells, opts.Want.Allowed, netlab.WaitOptions{
		ProbeTimeout: matrixProbeTimeout, Within: opts.Within, Pause: 200 * time.Millisecond,
	})
	newMatrix(pods, opts.Ports, hm).Print(out, opts.Want)
	if err != nil {
		for _, i := range hm.Wrong {
			c, r := hm.Cells[i], hm.Results[i]
			fmt.Fprintf(errOut, "wrong: %s reachable=%v, want %v\n", cellString(c), r.Verdict == netlab.Reached, opts.Want.Allowed(c))
		}
		return fmt.Errorf("%d cells differ from the expectation after %v", len(hm.Wrong), opts.Within)
	}
	fmt.Fprintf(out, "as expected (%v)\n", hm.Elapsed.Round(100*time.Millisecond))
	return nil
}

// matrixPods opens the pods named by keys (every pod when none) for
// probing.
func (n *Node) matrixPods(keys []string) ([]*netlab.Pod, error) {
	var recs []*PodRecord
	if len(keys) == 0 {
		var err error
		if recs, err = n.Pods(); err != nil {
			return nil, err
		}
	}
	for _, key := range keys {
		ns, name, _ := strings.Cut(key, "/")
		rec, err := n.Pod(ns, name)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	pods := make([]*netlab.Pod, len(recs))
	for i, rec := range recs {
		pods[i] = &rec.Pod
	}
	return pods, nil
}
