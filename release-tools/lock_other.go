//go:build !unix

package releasetools

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockRepo creates the lock file exclusively. Unlike the Unix flock it
// survives a crash: remove the file by hand if no publish is running.
func lockRepo(repo string) (func(), error) {
	p := filepath.Join(repo, lockName)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: %s exists: another publish is running, or one crashed (then remove the file)", ErrRepo, p)
	}
	return func() { f.Close(); os.Remove(p) }, nil
}
