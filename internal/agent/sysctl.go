package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/go-logr/logr"
)

// DefaultProcSysNet is where the sysctls of the agent's own network
// namespace are.
const DefaultProcSysNet = "/proc/sys/net"

// forwardingSysctl is one of the sysctls that turn on IP forwarding,
// relative to /proc/sys/net.
type forwardingSysctl struct {
	name, path string
	// optional: a missing file (IPv6 disabled on the node) is fine.
	optional bool
}

const ipv6Forwarding = "ipv6/conf/all/forwarding"

var forwardingSysctls = []forwardingSysctl{
	{name: "net.ipv4.ip_forward", path: "ipv4/ip_forward"},
	{name: "net.ipv6.conf.all.forwarding", path: ipv6Forwarding, optional: true},
}

// setUpForwarding turns IP forwarding on in the node's network namespace:
// the node routes pod traffic between the host veths.
func (a *Agent) setUpForwarding(log logr.Logger) error {
	o := a.opts
	if o.Node.ProcSysNet == "" {
		log.V(1).Info("Leaving IP forwarding alone: no /proc/sys/net directory configured")
		return nil
	}
	changed, err := ensureForwarding(o.Node.NetNS, o.Node.ProcSysNet)
	if err != nil {
		return fmt.Errorf("turn on IP forwarding, which the node needs to route pod traffic "+
			"(check that %s is the node's /proc/sys/net, mounted read-write, and the agent runs as root): %w", o.Node.ProcSysNet, err)
	}
	if len(changed) > 0 {
		log.Info("Turned on IP forwarding", "sysctls", changed)
	}
	return nil
}

// ensureForwarding turns IP forwarding on in netns (nil: the caller's own)
// through procSysNet, a directory laid out as /proc/sys/net, and returns
// the sysctls it changed. /proc/sys/net shows the network namespace of
// the thread that opens a file there, so the files are opened inside
// netns.
func ensureForwarding(netns ns.NetNS, procSysNet string) ([]string, error) {
	if netns == nil {
		return ensureForwardingHere(procSysNet)
	}
	var changed []string
	err := netns.Do(func(ns.NetNS) error {
		var err error
		changed, err = ensureForwardingHere(procSysNet)
		return err
	})
	return changed, err
}

// ensureForwardingHere writes 1 to net.ipv4.ip_forward and, when the node
// has IPv6, to net.ipv6.conf.all.forwarding, each only when it isn't 1
// already: a node whose forwarding is on needs no write access, and the
// agent never writes a setting that is already right.
func ensureForwardingHere(procSysNet string) ([]string, error) {
	var changed []string
	for _, s := range forwardingSysctls {
		path := filepath.Join(procSysNet, s.path)
		cur, err := os.ReadFile(path)
		if s.optional && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return changed, fmt.Errorf("read %s: %w", s.name, err)
		}
		if strings.TrimSpace(string(cur)) == "1" {
			continue
		}
		if s.path == ipv6Forwarding {
			// IPv6 forwarding on makes every interface with accept_ra=1
			// ignore router advertisements, and a node that learned its
			// IPv6 default route from them would lose it when it
			// expires. accept_ra=2 keeps accepting them while forwarding.
			kept, err := keepAcceptingRAs(procSysNet)
			changed = append(changed, kept...)
			if err != nil {
				return changed, err
			}
		}
		// Not os.WriteFile: a sysctl file exists, and creating one in a
		// directory that only looks like /proc/sys/net would hide the
		// mistake.
		if err := writeExisting(path, "1\n"); err != nil {
			return changed, fmt.Errorf("set %s to 1: %w", s.name, err)
		}
		changed = append(changed, s.name)
	}
	return changed, nil
}

// keepAcceptingRAs sets accept_ra to 2 on every interface (and the
// default for new ones) where it is 1, and returns the sysctls it changed.
func keepAcceptingRAs(procSysNet string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(procSysNet, "ipv6", "conf", "*", "accept_ra"))
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, path := range files {
		iface := filepath.Base(filepath.Dir(path))
		if iface == "all" {
			continue // not a per-interface setting the kernel reads
		}
		name := "net.ipv6.conf." + iface + ".accept_ra"
		cur, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the interface went away
		}
		if err != nil {
			return changed, fmt.Errorf("read %s: %w", name, err)
		}
		if strings.TrimSpace(string(cur)) != "1" {
			continue
		}
		if err := writeExisting(path, "2\n"); err != nil {
			return changed, fmt.Errorf("set %s to 2: %w", name, err)
		}
		changed = append(changed, name)
	}
	return changed, nil
}

func writeExisting(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
