//go:build unix

package releasetools

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile takes an exclusive advisory lock (flock) on the file at p,
// creating it; the kernel releases the lock if the process dies, so a crash
// leaves no stale lock. The release function removes the file while still
// holding the lock, so a finished publish leaves nothing behind; a process
// that opened the file before the removal finds that the name no longer
// leads to its file and starts over.
func lockFile(p string) (func(), error) {
	for range 100 {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("releasetools: creating the publish lock beside the repository (the directory that holds it must be writable): %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: another publish holds %s: wait for it to finish", ErrRepo, p)
			}
			return nil, fmt.Errorf("releasetools: locking %s: %w", p, err)
		}
		fi, ferr := f.Stat()
		pi, perr := os.Stat(p)
		if ferr == nil && perr == nil && os.SameFile(fi, pi) {
			// LOCK_UN before the close: a child process forked meanwhile
			// (and not yet exec'd) shares the open file and would hold
			// the lock past the close.
			return func() { os.Remove(p); _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		f.Close()
		if ferr != nil {
			return nil, ferr
		}
		if perr != nil && !errors.Is(perr, fs.ErrNotExist) {
			return nil, perr
		}
	}
	return nil, fmt.Errorf("%w: %s keeps being replaced: is another publish starting and stopping?", ErrRepo, p)
}

// dropLegacyLock removes the lock file that older versions kept inside the
// repository, unless an older mkdelta still holds it (then it refuses: two
// publishes must not run at once).
func dropLegacyLock(repo string) error {
	p := filepath.Join(repo, LegacyLockName)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasetools: opening the old lock file: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("%w: an older mkdelta is publishing (it holds %s): wait for it to finish", ErrRepo, p)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("releasetools: removing the old lock file: %w", err)
	}
	return nil
}
