package netlab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// NetNSDir is where named network namespaces are bind-mounted (as `ip
// netns` does).
const NetNSDir = "/run/netns"

// NetNSPath is the bind mount of the named network namespace.
func NetNSPath(name string) string { return filepath.Join(NetNSDir, name) }

// AddNetNS creates the named network namespace with its loopback up (a
// pod reaches itself through lo, as the runtime's loopback plugin
// arranges) and opens it. The caller closes the handle; DelNetNS removes
// the namespace.
func AddNetNS(name string) (ns.NetNS, error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = DelNetNS(name)
		return nil, fmt.Errorf("ip -n %s link set lo up: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	netns, err := ns.GetNS(NetNSPath(name))
	if err != nil {
		_ = DelNetNS(name)
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	return netns, nil
}

// DelNetNS removes the named network namespace; its interfaces go with it
// (and a veth's peer with them). A missing namespace is fine.
func DelNetNS(name string) error {
	if _, err := os.Stat(NetNSPath(name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NetNSExists says whether the named network namespace exists.
func NetNSExists(name string) bool {
	_, err := os.Stat(NetNSPath(name))
	return err == nil
}

// NetNSWithPrefix lists the named network namespaces whose name starts
// with prefix.
func NetNSWithPrefix(prefix string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(NetNSDir, globEscape(prefix)+"*"))
	if err != nil {
		return nil, err
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names, nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// InNetNS runs fn on a thread locked in the named network namespace;
// processes fn starts start there too.
func InNetNS(name string, fn func() error) error {
	netns, err := ns.GetNS(NetNSPath(name))
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer func() { _ = netns.Close() }()
	return netns.Do(func(ns.NetNS) error { return fn() })
}
