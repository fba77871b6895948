//go:build windows

package apply

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// ReexecFromBackup copies the running executable to
// backupDir/bin/deltaup.exe and starts that copy with DELTAUP_RESUME=1 and
// DELTAUP_PARENT_PID=<this pid> in its environment, then returns: the
// caller must exit so its executable is no longer in use; the child calls
// WaitParent first. args are the arguments after argv[0]. Already in
// resume mode (DELTAUP_RESUME=1) it returns nil at once.
func ReexecFromBackup(backupDir string, args []string) error {
	if os.Getenv(EnvResume) == "1" {
		return nil
	}
	dst, err := copyExecutable(backupDir, "deltaup.exe")
	if err != nil {
		return err
	}
	cmd := exec.Command(dst, args...)
	cmd.Env = append(os.Environ(), EnvResume+"=1", EnvParentPID+"="+strconv.Itoa(os.Getpid()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

const (
	winSynchronize = 0x00100000
	winWaitTimeout = 0x00000102
)

// WaitParent waits until the process pid has exited (or cannot be opened,
// i.e. is gone).
func WaitParent(ctx context.Context, pid int) error {
	if pid <= 0 || pid == os.Getpid() {
		return nil
	}
	h, err := syscall.OpenProcess(winSynchronize, false, uint32(pid))
	if err != nil {
		return nil // gone (or not ours to wait for)
	}
	defer syscall.CloseHandle(h)
	for {
		ev, err := syscall.WaitForSingleObject(h, 200)
		if err != nil {
			return err
		}
		if ev != winWaitTimeout {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
