package agent

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/go-logr/logr/testr"
	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
)

const (
	ipv4Forward = "ipv4/ip_forward"
	ipv6Forward = "ipv6/conf/all/forwarding"
)

// fakeProcSysNet lays out a directory as /proc/sys/net with the given
// files (relative path -> content).
func fakeProcSysNet(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, content := range files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// readOnly makes a file unwritable, even for root: root ignores file
// modes, so as root the file is bind-mounted read-only onto itself.
func readOnly(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(path, 0o444); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := unix.Mount(path, path, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s: %v", path, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(path, unix.MNT_DETACH) })
	if err := unix.Mount("", path, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", path, err)
	}
}

func TestEnsureForwardingHere(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    map[string]string
		readOnly []string
		changed  []string
		want     map[string]string // file -> content after; "" absent
		err      string            // a substring; the file's path is checked too
	}{{
		name:    "both off",
		files:   map[string]string{ipv4Forward: "0\n", ipv6Forward: "0\n"},
		changed: []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"},
		want:    map[string]string{ipv4Forward: "1\n", ipv6Forward: "1\n"},
	}, {
		// Interfaces that learn routes from router advertisements keep
		// doing so; others are left alone, and nothing happens while
		// IPv6 forwarding is on already.
		name: "router advertisements",
		files: map[string]string{
			ipv4Forward: "1\n", ipv6Forward: "0\n",
			"ipv6/conf/eth0/accept_ra": "1\n", "ipv6/conf/eth1/accept_ra": "0\n",
			"ipv6/conf/default/accept_ra": "1\n", "ipv6/conf/all/accept_ra": "1\n",
		},
		changed: []string{"net.ipv6.conf.default.accept_ra", "net.ipv6.conf.eth0.accept_ra", "net.ipv6.conf.all.forwarding"},
		want: map[string]string{
			ipv6Forward: "1\n", "ipv6/conf/eth0/accept_ra": "2\n", "ipv6/conf/eth1/accept_ra": "0\n",
			"ipv6/conf/default/accept_ra": "2\n", "ipv6/conf/all/accept_ra": "1\n",
		},
	}, {
		name:  "IPv6 on already, accept_ra untouched",
		files: map[string]string{ipv4Forward: "1\n", ipv6Forward: "1\n", "ipv6/conf/eth0/accept_ra": "1\n"},
		want:  map[string]string{ipv6Forward: "1\n", "ipv6/conf/eth0/accept_ra": "1\n"},
	}, {
		name:    "IPv6 on already",
		files:   map[string]string{ipv4Forward: "0\n", ipv6Forward: "1\n"},
		changed: []string{"net.ipv4.ip_forward"},
		want:    map[string]string{ipv4Forward: "1\n", ipv6Forward: "1\n"},
	}, {
		// Read-only: a write would fail, so none is attempted.
		name:     "both on already",
		files:    map[string]string{ipv4Forward: "1\n", ipv6Forward: "1\n"},
		readOnly: []string{ipv4Forward, ipv6Forward},
		want:     map[string]string{ipv4Forward: "1\n", ipv6Forward: "1\n"},
	}, {
		name:    "no IPv6 on the node",
		files:   map[string]string{ipv4Forward: "0\n"},
		changed: []string{"net.ipv4.ip_forward"},
		want:    map[string]string{ipv4Forward: "1\n", ipv6Forward: ""},
	}, {
		name:     "IPv4 unwritable",
		files:    map[string]string{ipv4Forward: "0\n", ipv6Forward: "0\n"},
		readOnly: []string{ipv4Forward},
		want:     map[string]string{ipv4Forward: "0\n", ipv6Forward: "0\n"},
		err:      "set net.ipv4.ip_forward to 1: open " + ipv4Forward,
	}, {
		name:     "IPv6 unwritable",
		files:    map[string]string{ipv4Forward: "0\n", ipv6Forward: "0\n"},
		readOnly: []string{ipv6Forward},
		changed:  []string{"net.ipv4.ip_forward"},
		want:     map[string]string{ipv4Forward: "1\n", ipv6Forward: "0\n"},
		err:      "set net.ipv6.conf.all.forwarding to 1: open " + ipv6Forward,
	}, {
		// A directory that isn't /proc/sys/net: nothing is created.
		name:  "not /proc/sys/net",
		files: map[string]string{"core/somaxconn": "4096\n"},
		want:  map[string]string{ipv4Forward: "", ipv6Forward: ""},
		err:   "read net.ipv4.ip_forward: open " + ipv4Forward,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fakeProcSysNet(t, tc.files)
			for _, f := range tc.readOnly {
				readOnly(t, filepath.Join(dir, f))
			}
			changed, err := ensureForwardingHere(dir)
			switch {
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), strings.Replace(tc.err, "open ", "open "+dir+"/", 1))):
				t.Fatalf("error %v, want one with %q (in %s)", err, tc.err, dir)
			}
			if !slices.Equal(changed, tc.changed) {
				t.Errorf("changed %q, want %q", changed, tc.changed)
			}
			for f, want := range tc.want {
				got, err := os.ReadFile(filepath.Join(dir, f))
				if want == "" {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s exists (%v), want it absent", f, err)
					}
					continue
				}
				if err != nil || string(got) != want {
					t.Errorf("%s = %q (%v), want %q", f, got, err, want)
				}
			}
		})
	}
}

// A failure stops the agent with an error that says what to check; an
// empty ProcSysNet touches nothing.
func TestSetUpForwarding(t *testing.T) {
	dir := fakeProcSysNet(t, map[string]string{ipv4Forward: "0\n"})
	readOnly(t, filepath.Join(dir, ipv4Forward))
	a := &Agent{opts: Options{Node: NodeOptions{ProcSysNet: dir}}}
	err := a.setUpForwarding(testr.New(t))
	if err == nil {
		t.Fatal("no error for an unwritable ip_forward")
	}
	for _, want := range []string{"IP forwarding", "check that " + dir + " is the node's /proc/sys/net", filepath.Join(dir, ipv4Forward)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	a = &Agent{opts: Options{}}
	if err := a.setUpForwarding(testr.New(t)); err != nil {
		t.Fatalf("with no ProcSysNet: %v", err)
	}
}

// readSysctl reads a file under /proc/sys/net of the calling thread's
// network namespace ("" when absent).
func readSysctl(rel string) (string, error) {
	b, err := os.ReadFile(filepath.Join(DefaultProcSysNet, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// The real /proc/sys/net, in a network namespace of the test's: the files
// are the namespace's, not the host's.
func TestEnsureForwardingInNetNS(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	// forwarding reads both sysctls in the calling thread's netns.
	forwarding := func() ([]string, error) {
		var vals []string
		for _, f := range []string{ipv4Forward, ipv6Forward} {
			v, err := readSysctl(f)
			if err != nil {
				return nil, err
			}
			vals = append(vals, v)
		}
		return vals, nil
	}
	hostBefore, err := forwarding()
	if err != nil {
		t.Fatal(err)
	}
	netns := netlabtest.NewNetNS(t)
	inNS := func() []string {
		t.Helper()
		var vals []string
		if err := netns.Do(func(ns.NetNS) error {
			var err error
			vals, err = forwarding()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return vals
	}

	// A new netns starts with forwarding off, unless
	// net.core.devconf_inherit_init_net copies the host's: turn it off to
	// be sure.
	hasIPv6 := inNS()[1] != ""
	files := []string{ipv4Forward}
	if hasIPv6 {
		files = append(files, ipv6Forward)
	}
	if err := netns.Do(func(ns.NetNS) error {
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(DefaultProcSysNet, f), []byte("0"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	off, on := []string{"0", ""}, []string{"1", ""}
	want := []string{"net.ipv4.ip_forward"}
	if hasIPv6 {
		off, on = []string{"0", "0"}, []string{"1", "1"}
		want = append(want, "net.ipv6.conf.all.forwarding")
	}
	if got := inNS(); !slices.Equal(got, off) {
		t.Fatalf("forwarding (IPv4, IPv6) in the new netns is %q, want %q", got, off)
	}

	changed, err := ensureForwarding(netns, DefaultProcSysNet)
	if err != nil {
		t.Fatal(err)
	}
	// A new netns's lo and default accept router advertisements
	// (accept_ra 1): they become 2, and so are reported too.
	changed = slices.DeleteFunc(changed, func(s string) bool { return strings.HasSuffix(s, ".accept_ra") })
	if !slices.Equal(changed, want) {
		t.Errorf("changed %q, want %q", changed, want)
	}
	if got := inNS(); !slices.Equal(got, on) {
		t.Errorf("forwarding (IPv4, IPv6) in the netns is %q, want %q", got, on)
	}
	if changed, err := ensureForwarding(netns, DefaultProcSysNet); err != nil || len(changed) != 0 {
		t.Errorf("second run changed %q (%v), want nothing", changed, err)
	}

	hostAfter, err := forwarding()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hostAfter, hostBefore) {
		t.Errorf("the host's forwarding (IPv4, IPv6) went from %q to %q", hostBefore, hostAfter)
	}
}
