//go:build unix

package apply

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked: another updater holds the lock of the app directory.
var ErrLocked = errors.New("apply: locked")

// LockFileName is the updater lock in the backup directory.
const LockFileName = "lock"

// UpdateLock is the held lock of one app directory (see AcquireLock).
type UpdateLock struct {
	f *os.File
}

// AcquireLock takes the updater lock of appDir: an advisory lock
// (flock, released by the kernel when the process dies) on
// backupDir/lock, which also records the holder's PID. If another
// process (or another AcquireLock in this one) holds it the error wraps
// ErrLocked: "another deltaup is updating APPDIR (pid N)".
func AcquireLock(appDir, backupDir string) (*UpdateLock, error) {
	if err := os.MkdirAll(backupDir, 0o700); err != nil {
		return nil, err
	}
	f, err := openNoFollow(filepath.Join(backupDir, LockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 64))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b))
			if _, perr := strconv.Atoi(pid); perr != nil {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w: another deltaup is updating %s (pid %s)", ErrLocked, appDir, pid)
		}
		return nil, err
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &UpdateLock{f: f}, nil
}

// Unlock releases the lock (the lock file stays; it is only advisory).
func (l *UpdateLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
