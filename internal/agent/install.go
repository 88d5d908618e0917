package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sluice-dev/sluice/internal/fsutil"
)

// CNIInstall is where the agent puts the CNI plugin and its network
// configuration on the node. The binary comes first: a container runtime
// takes the conflist's appearance as the signal that pod networking is
// ready, and it must then find the plugin. The agent installs both only
// once its endpoint API is serving, so the first ADD finds an agent to hand
// the pod to (and fails closed, to be retried, if it doesn't).
type CNIInstall struct {
	// BinarySource is the plugin binary shipped in the agent image.
	BinarySource string
	// BinDir is the node's CNI binary directory (/opt/cni/bin).
	BinDir string
	// ConflistSource is the conflist the operator renders into the agent
	// ConfigMap, mounted into the agent's container.
	ConflistSource string
	// ConfDir is the node's CNI configuration directory (/etc/cni/net.d).
	ConfDir string
}

// Names the plugin and its configuration get on the node.
const (
	installedBinary   = "sluice-cni"
	installedConflist = "10-sluice.conflist"
)

// Install copies the binary and then the conflist into place, each with an
// atomic rename and only when its content differs, so an agent restart on
// a settled node writes nothing and a runtime never reads half a file.
func (c CNIInstall) Install() error {
	if err := installFile(c.BinarySource, filepath.Join(c.BinDir, installedBinary), 0o755); err != nil {
		return fmt.Errorf("install the CNI plugin: %w", err)
	}
	if err := installFile(c.ConflistSource, filepath.Join(c.ConfDir, installedConflist), 0o644); err != nil {
		return fmt.Errorf("install the CNI configuration: %w", err)
	}
	return nil
}

func installFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	if len(data) == 0 {
		return fmt.Errorf("%s is empty", src)
	}
	current, err := os.ReadFile(dst)
	switch {
	case err == nil && bytes.Equal(current, data):
		if info, err := os.Stat(dst); err == nil && info.Mode().Perm() == mode {
			return nil
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read %s: %w", dst, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	if err := fsutil.WriteFileAtomic(dst, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}
