//go:build windows

package apply

import (
	"errors"
	"fmt"
	"io/fs"
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
	path string
}

const (
	winQueryLimitedInformation = 0x1000
	winStillActive             = 259
)

// pidAlive reports whether a process with this PID is running.
func pidAlive(pid int) bool {
	h, err := syscall.OpenProcess(winQueryLimitedInformation, false, uint32(pid))
	if err != nil {
		return false
	}
	defer syscall.CloseHandle(h)
	var code uint32
	if err := syscall.GetExitCodeProcess(h, &code); err != nil {
		return true
	}
	return code == winStillActive
}

// AcquireLock takes the updater lock of appDir: backupDir/lock created
// with O_EXCL, holding the owner's PID. A lock file whose PID is no longer
// running is stale and taken over. If a live process holds it the error
// wraps ErrLocked: "another deltaup is updating APPDIR (pid N)".
func AcquireLock(appDir, backupDir string) (*UpdateLock, error) {
	if err := os.MkdirAll(backupDir, 0o700); err != nil {
		return nil, err
	}
	p := filepath.Join(backupDir, LockFileName)
	for attempt := 0; attempt < 2; attempt++ {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, werr := f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(p)
				return nil, werr
			}
			return &UpdateLock{path: p}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		b, rerr := os.ReadFile(p)
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, rerr
		}
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if rerr == nil && perr == nil && pidAlive(pid) {
			return nil, fmt.Errorf("%w: another deltaup is updating %s (pid %d)", ErrLocked, appDir, pid)
		}
		if rerr == nil && perr != nil && len(b) == 0 {
			// Being written by its owner right now: treat as held.
			return nil, fmt.Errorf("%w: another deltaup is updating %s (pid unknown)", ErrLocked, appDir)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: another deltaup is updating %s", ErrLocked, appDir)
}

// Unlock releases the lock (deletes the lock file).
func (l *UpdateLock) Unlock() error {
	if l == nil || l.path == "" {
		return nil
	}
	err := os.Remove(l.path)
	l.path = ""
	return err
}
