//go:build unix

package releasetools

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockRepo takes an exclusive advisory lock on the repository's lock file;
// the kernel releases it if the process dies, so a crash leaves no stale
// lock.
func lockRepo(repo string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(repo, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: another publish holds %s", ErrRepo, filepath.Join(repo, lockName))
	}
	return func() { f.Close() }, nil
}
