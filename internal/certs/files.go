package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/sluice-dev/sluice/internal/fsutil"
)

// writeFiles writes each file into dir unless it already holds that content.
// Unchanged files are left alone so that the webhook server's certwatcher
// only reloads on a real change.
func writeFiles(ctx context.Context, dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cert dir: %w", err)
	}
	// Between the certificate's rename and the key's the pair on disk does
	// not match; the certwatcher then fails that read, keeps serving the old
	// pair and loads the new one on the key's event or its next poll.
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(dir, name)
		changed, err := writeFileIfChanged(path, files[name], fileMode(name))
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if changed {
			ctrl.LoggerFrom(ctx).Info("wrote webhook certificate file", "path", path)
		}
	}
	return nil
}

// fileMode keeps the private key readable by its owner only.
func fileMode(name string) os.FileMode {
	if name == KeyFileName {
		return 0o600
	}
	return 0o644
}

func writeFileIfChanged(path string, content []byte, mode os.FileMode) (changed bool, err error) {
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, content):
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	return true, fsutil.WriteFileAtomic(path, content, mode)
}
