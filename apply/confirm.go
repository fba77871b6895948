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
	"slices"
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

// ErrNotConfirmed: the relaunched new version did not confirm (Confirm):
// it exited first, or was still running when the time ran out, or was
// started MaxRelaunches times without confirming. The error is a
// *NotConfirmedError, which says which.
var ErrNotConfirmed = errors.New("apply: the new version did not confirm")

// NotConfirmedError says why a relaunched version did not confirm.
type NotConfirmedError struct {
	Version string // the new version
	Program string // the relaunched program (argv[0]); "" if unknown
	// Exit is how the program ended before confirming; nil when it still
	// ran at the timeout (Install then stops it) or was not watched.
	Exit    *ProcessExit
	Timeout time.Duration
	Stopped bool // Install stopped the program still running at the timeout
	// Starts, when not 0, is how many starts without a confirmation made
	// Install give up on the version without starting it again.
	Starts int
}

func (e *NotConfirmedError) Error() string {
	who := e.Version
	if e.Program != "" {
		who = e.Program + " (" + e.Version + ")"
	}
	switch {
	case e.Starts > 0:
		return fmt.Sprintf("%s was started %d times without confirming", who, e.Starts)
	case e.Exit != nil:
		return fmt.Sprintf("%s %s without confirming", who, e.Exit)
	}
	if e.Stopped {
		return fmt.Sprintf("%s did not confirm within %v and was stopped", who, e.Timeout)
	}
	return fmt.Sprintf("%s did not confirm within %v", who, e.Timeout)
}

func (e *NotConfirmedError) Is(target error) bool { return target == ErrNotConfirmed }

// WaitConfirm waits until the journal of j.BackupDir says "confirmed"
// (nil), the relaunched child exits (exited receives, see ProcessExited;
// nil means not watched) or timeout passes: then it returns a
// *NotConfirmedError (errors.Is ErrNotConfirmed) that says which, and the
// caller rolls back. The journal is read once more at the end, so a
// confirmation just before the exit counts. A timeout <= 0 means until
// j.ConfirmBy. An unreadable journal or ctx's end is returned as it is.
func WaitConfirm(ctx context.Context, j *Journal, timeout time.Duration, exited <-chan ProcessExit) error {
	if timeout <= 0 && !j.ConfirmBy.IsZero() {
		timeout = time.Until(j.ConfirmBy)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(confirmPoll)
	defer tick.Stop()
	nc := &NotConfirmedError{Version: j.To, Timeout: timeout}
	if len(j.Relaunch) > 0 {
		nc.Program = j.Relaunch[0]
	}
	check := func() error {
		cur, err := LoadJournal(j.BackupDir)
		if err != nil {
			return err
		}
		if cur.State == JournalConfirmed {
			return nil
		}
		return nc
	}
	exitedFirst := func(e ProcessExit, ok bool) error {
		if !ok {
			e = ProcessExit{Code: -1, Err: errors.New("exit status unknown")}
		}
		nc.Exit = &e
		return check()
	}
	for {
		if err := check(); err != nc {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-exited:
			return exitedFirst(e, ok)
		case <-deadline.C:
			select { // an exit at the deadline is the better reason
			case e, ok := <-exited:
				return exitedFirst(e, ok)
			default:
			}
			return check()
		case <-tick.C:
		}
	}
}

// ProcessExit is how a relaunched process ended.
type ProcessExit struct {
	// Code is the exit code; -1 when a signal ended the process or
	// waiting for it failed (Err).
	Code int
	// Signal names the signal that ended it ("killed"), "" if none.
	Signal string
	// After is how long it ran, from the call to ProcessExited.
	After time.Duration
	Err   error
}

// String says how the process ended: "exited with code 3 after 1.2s",
// "was ended by signal killed after 2s".
func (e ProcessExit) String() string {
	after := e.After.Round(time.Millisecond)
	if e.After >= time.Second {
		after = e.After.Round(100 * time.Millisecond)
	}
	switch {
	case e.Err != nil:
		return fmt.Sprintf("exited (%v)", e.Err)
	case e.Signal != "":
		return fmt.Sprintf("was ended by signal %s after %v", e.Signal, after)
	}
	return fmt.Sprintf("exited with code %d after %v", e.Code, after)
}

// ProcessExited returns a channel that receives how the child ended and
// is then closed; it waits for (reaps) the process.
func ProcessExited(p *os.Process) <-chan ProcessExit {
	start := time.Now()
	ch := make(chan ProcessExit, 1)
	go func() {
		st, err := p.Wait()
		e := ProcessExit{Code: -1, After: time.Since(start), Err: err}
		if err == nil {
			e.Code = st.ExitCode()
			if e.Code < 0 {
				e.Signal = strings.TrimPrefix(st.String(), "signal: ")
			}
		}
		ch <- e
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
// it) with appDir as its working directory and the current environment
// without EnvResume and EnvParentPID, directly (never through a shell).
// The app inherits standard input, output and error. The two variables
// belong to the updater's copy in the backup directory: an app that
// inherited them and ran `deltaup update` later would skip the re-exec
// (and swap from the executable it replaces), and `deltaup resume` would
// wait for the updater that waits for its confirmation.
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
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, EnvResume+"=") || strings.HasPrefix(kv, EnvParentPID+"=")
	})
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
