package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ErrLocalIO: the local file system refused a write the updater needs (disk
// full, quota, read-only file system, permission denied) in the backup
// directory or the app directory. It is not the repository's fault, so the
// downloader does not try the other mirrors and a patch route that fails
// this way does not fall back to the full archive (which would need more
// space still). The error also wraps the OS error (errors.Is(err,
// syscall.ENOSPC) etc.). What was downloaded and verified is kept: free
// space or fix the permissions, then run again.
var ErrLocalIO = errors.New("apply: local file system error")

// isDiskFull reports whether err says the file system has no room (or is
// read-only): retrying elsewhere or falling back cannot help.
func isDiskFull(err error) bool {
	for _, e := range diskFullErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// isLocalIO reports whether err is a local file-system refusal: disk full,
// read-only, or permission denied.
func isLocalIO(err error) bool {
	return isDiskFull(err) || errors.Is(err, fs.ErrPermission)
}

// localIO wraps err, a failure of the local file system while working in
// dir, as ErrLocalIO with what to do; other errors and errors already
// classified are returned as they are.
func localIO(err error, dir string) error {
	if err == nil || errors.Is(err, ErrLocalIO) || !isLocalIO(err) {
		return err
	}
	hint := "fix the permissions of " + dir + " (or run as its owner), then run again"
	if isDiskFull(err) {
		hint = "free disk space on the file system of " + dir + " (or make it writable), then run again; verified downloads are kept"
	}
	return fmt.Errorf("%w: %w (%s)", ErrLocalIO, err, hint)
}

// deniedInside reports whether err is a permission error on a path inside
// dir (the backup directory): the full archive would be refused there too.
func deniedInside(err error, dir string) bool {
	if !errors.Is(err, fs.ErrPermission) {
		return false
	}
	var p string
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		p = pe.Path
	case errors.As(err, &le):
		p = le.New
	default:
		return false
	}
	return isWithin(dir, p)
}
