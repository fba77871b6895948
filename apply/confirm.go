package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
)

// Confirm is called by the relaunched application once it has started
// properly (apply.Confirm in Go programs, `deltaup confirm` otherwise): if
// the journal of backupDir is "swapped" it becomes "confirmed" (saved
// atomically), and the updater keeps the new version. Without a journal,
// or in any other state, it does nothing.
func Confirm(backupDir string) error {
	if fi, err := os.Lstat(backupDir); err == nil {
		if err := checkOwnDir(backupDir, fi); err != nil {
			return err
		}
	}
	j, err := LoadJournal(backupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if j.State != JournalSwapped {
		return nil
	}
	j.State = JournalConfirmed
	return j.Save()
}

// confirmPoll is how often WaitConfirm reads the journal.
var confirmPoll = 50 * time.Millisecond

// WaitConfirm waits until the journal of j.BackupDir says "confirmed"
// (true), the relaunched child exits (exited receives or is closed, see
// ProcessExited; nil means not watched) or timeout passes (false; the journal is read once
// more at the end, so a confirmation just before the exit counts). The
// caller rolls back on false. A timeout <= 0 means until j.ConfirmBy. An unreadable journal or ctx's end is an
// error.
func WaitConfirm(ctx context.Context, j *Journal, timeout time.Duration, exited <-chan error) (bool, error) {
	if timeout <= 0 && !j.ConfirmBy.IsZero() {
		timeout = time.Until(j.ConfirmBy)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(confirmPoll)
	defer tick.Stop()
	check := func() (bool, error) {
		cur, err := LoadJournal(j.BackupDir)
		if err != nil {
			return false, err
		}
		return cur.State == JournalConfirmed, nil
	}
	for {
		if ok, err := check(); ok || err != nil {
			return ok, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-exited:
			return check()
		case <-deadline.C:
			return check()
		case <-tick.C:
		}
	}
}

// ProcessExited returns a channel that receives the child's exit error (nil
// on success) and is then closed; it waits for (reaps) the process.
func ProcessExited(p *os.Process) <-chan error {
	ch := make(chan error, 1)
	go func() {
		st, err := p.Wait()
		if err == nil && !st.Success() {
			err = fmt.Errorf("apply: relaunched process: %s", st)
		}
		ch <- err
		close(ch)
	}()
	return ch
}

// relaunchPath resolves argv0 against appDir: it must be a relative,
// slash- or OS-separated path that stays inside appDir.
func relaunchPath(appDir, argv0 string) (string, error) {
	rel := filepath.ToSlash(argv0)
	if filepath.IsAbs(argv0) || strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("apply: relaunch command %q must be relative to the app directory", argv0)
	}
	rel = strings.TrimPrefix(rel, "./")
	if err := tree.CheckPath(rel); err != nil {
		return "", fmt.Errorf("apply: relaunch command %q: %w", argv0, err)
	}
	return filepath.Join(appDir, filepath.FromSlash(rel)), nil
}

// Relaunch starts argv (argv[0] relative to appDir, which must not leave
// it) with appDir as its working directory and the current environment,
// directly (never through a shell).
func Relaunch(appDir string, argv []string) (*os.Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("apply: empty relaunch command")
	}
	abs, err := filepath.Abs(appDir)
	if err != nil {
		return nil, err
	}
	exe, err := relaunchPath(abs, argv[0])
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, argv[1:]...)
	cmd.Dir = abs
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("apply: relaunching %s: %w", exe, err)
	}
	return cmd.Process, nil
}

// Environment of a re-executed updater (ReexecFromBackup).
const (
	EnvResume    = "DELTAUP_RESUME"     // "1": resume the swap from the backup directory
	EnvParentPID = "DELTAUP_PARENT_PID" // the process to wait for (WaitParent)
)

// copyExecutable copies the running executable to backupDir/bin/name
// (atomically, mode 0755) and returns the copy's path. backupDir/bin must
// be a real directory of the user running the updater (created with mode
// 0700), never a link: what is executed from it runs with that user's
// rights.
func copyExecutable(backupDir, name string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(backupDir, "bin")
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	if err := checkOwnDir(dir, fi); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, name)
	if same, _ := sameFile(exe, dst); same {
		return dst, nil
	}
	src, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer src.Close()
	err = delta.WriteFileAtomic(dst, 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	})
	return dst, err
}

// sameFile reports whether a and b are one file; b is not followed if it
// is a link (a link is never the same file).
func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Lstat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}
