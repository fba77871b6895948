//go:build unix

package apply

import (
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ReexecFromBackup copies the running executable to
// backupDir/bin/deltaup and replaces the current process with that copy
// (syscall.Exec), with DELTAUP_RESUME=1 in its environment, so the swap
// never runs from a file it replaces. args are the arguments after
// argv[0]. On success it does not return. Already in resume mode
// (DELTAUP_RESUME=1) it returns nil at once.
func ReexecFromBackup(backupDir string, args []string) error {
	if os.Getenv(EnvResume) == "1" {
		return nil
	}
	dst, err := copyExecutable(backupDir, "deltaup")
	if err != nil {
		return err
	}
	env := append(os.Environ(), EnvResume+"=1", EnvParentPID+"="+strconv.Itoa(os.Getpid()))
	return syscall.Exec(dst, append([]string{dst}, args...), env)
}

// WaitParent waits until the process pid is gone (kill(pid, 0) fails with
// ESRCH), polling; after an exec on Unix there is nothing to wait for and
// pid is usually the caller itself, so pid == os.Getpid() returns at once.
func WaitParent(ctx context.Context, pid int) error {
	if pid <= 0 || pid == os.Getpid() {
		return nil
	}
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
