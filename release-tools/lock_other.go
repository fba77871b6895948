//go:build !unix

package releasetools

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// lockFile creates the lock file at p exclusively; the release function
// removes it. Unlike the Unix flock it survives a crash: remove the file by
// hand if no publish is running.
func lockFile(p string) (func(), error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: %s exists: another publish is running, or one crashed (then remove the file)", ErrRepo, p)
	}
	if err != nil {
		return nil, fmt.Errorf("releasetools: creating the publish lock beside the repository (the directory that holds it must be writable): %w", err)
	}
	return func() { f.Close(); os.Remove(p) }, nil
}

// dropLegacyLock removes the lock file that older versions kept inside the
// repository. An older mkdelta that is still publishing holds it open,
// which normally makes the removal fail (Go opens files without
// FILE_SHARE_DELETE): then it refuses.
func dropLegacyLock(repo string) error {
	p := filepath.Join(repo, LegacyLockName)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: cannot remove %s (%v): an older mkdelta is publishing, or the file is protected", ErrRepo, p, err)
	}
	return nil
}
