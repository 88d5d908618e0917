package endpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/fsutil"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

// stateFile is what the registry keeps across restarts (doc.go): the
// endpoints the plugin registered and the datapath's endpoint IDs. Its
// format is a contract with the agent of the previous release: a restart
// after an upgrade reads the old file.
type stateFile struct {
	Version   int            `json:"version"`
	Endpoints []registration `json:"endpoints"`
	IDs       idTable        `json:"ids"`
}

// registration is one endpoint the plugin handed over.
type registration struct {
	ContainerID string `json:"containerID"`
	cni.Endpoint
	// seq orders registrations of the same pod: the latest one's
	// addresses count.
	seq uint64
}

func (r *registration) podKey() string { return r.Namespace + "/" + r.Name }

// readState reads the state file; a missing one is an empty state.
func readState(path string) (stateFile, error) {
	var st stateFile
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{Version: stateVersion}, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state file: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("state file %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return st, fmt.Errorf("state file %s: version %d, want %d", path, st.Version, stateVersion)
	}
	return st, nil
}

// writeState replaces the state file atomically.
func writeState(path string, regs map[string]*registration, ids idTable) error {
	st := stateFile{Version: stateVersion, IDs: ids}
	for _, r := range regs {
		st.Endpoints = append(st.Endpoints, *r)
	}
	slices.SortFunc(st.Endpoints, func(a, b registration) int {
		switch {
		case a.ContainerID < b.ContainerID:
			return -1
		case a.ContainerID > b.ContainerID:
			return 1
		}
		return 0
	})
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := fsutil.WriteFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	return nil
}

// LockState takes an exclusive flock next to the state file, so that two
// agents never drive one node's datapath; the kernel drops it when the
// process dies.
func LockState(path string) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another agent holds %s.lock", path)
		}
		return nil, fmt.Errorf("lock %s.lock: %w", path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, nil
}
