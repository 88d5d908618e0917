package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

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

// labCommandLine is the command line that runs `sluicectl lab <sub>` with
// args, sub being one of the cmd* constants.
func labCommandLine(exe, sub string, args ...string) []string {
	line := append([]string{exe, "lab"}, strings.Fields(sub)...)
	return append(line, args...)
}

// The subcommands the lab starts again as child processes.
const (
	cmdNodeForward = "node forward"
	cmdServe       = "serve"
)
