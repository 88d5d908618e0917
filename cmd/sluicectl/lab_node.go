package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
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
