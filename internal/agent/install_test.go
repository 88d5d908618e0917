package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCNIInstall(t *testing.T) {
	src, node := t.TempDir(), t.TempDir()
	in := CNIInstall{
		BinarySource:   filepath.Join(src, "sluice-cni"),
		BinDir:         filepath.Join(node, "opt", "cni", "bin"),
		ConflistSource: filepath.Join(src, "10-sluice.conflist"),
		ConfDir:        filepath.Join(node, "etc", "cni", "net.d"),
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(in.BinarySource, "binary v1")
	write(in.ConflistSource, `{"cniVersion":"1.1.0"}`)

	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(in.BinDir, "sluice-cni")
	conf := filepath.Join(in.ConfDir, "10-sluice.conflist")
	for path, want := range map[string]string{bin: "binary v1", conf: `{"cniVersion":"1.1.0"}`} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Fatalf("%s = %q (%v), want %q", path, got, err, want)
		}
	}
	if info, _ := os.Stat(bin); info.Mode().Perm() != 0o755 {
		t.Errorf("plugin mode %v, want 0755", info.Mode().Perm())
	}

	// A second install on a settled node rewrites nothing.
	before, _ := os.Stat(bin)
	old := before.ModTime().Add(-time.Hour)
	if err := os.Chtimes(bin, old, old); err != nil {
		t.Fatal(err)
	}
	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(bin); !after.ModTime().Equal(old) {
		t.Error("an unchanged plugin was written again")
	}

	// A new plugin in the image replaces the old one.
	write(in.BinarySource, "binary v2")
	if err := in.Install(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(bin); string(got) != "binary v2" {
		t.Errorf("plugin = %q after an upgrade, want binary v2", got)
	}

	// A missing source is an error that names it, and installs nothing.
	missing := in
	missing.ConflistSource = filepath.Join(src, "absent.conflist")
	missing.ConfDir = filepath.Join(node, "other")
	err := missing.Install()
	if err == nil || !strings.Contains(err.Error(), "absent.conflist") {
		t.Fatalf("Install with a missing conflist: %v", err)
	}
	if _, err := os.Stat(filepath.Join(missing.ConfDir, "10-sluice.conflist")); !os.IsNotExist(err) {
		t.Error("a conflist was installed from nothing")
	}
}
