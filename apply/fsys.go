package apply

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"runtime"
	"syscall"
	"time"
)

// FS is the file-system surface the swap uses: every change to the app and
// backup directories goes through it, so tests can inject crashes and
// Windows-like behaviour (sharing violations). OSFS is the real one.
type FS interface {
	Rename(oldpath, newpath string) error
	Remove(name string) error
	RemoveAll(name string) error
	Mkdir(name string, perm fs.FileMode) error
	MkdirAll(name string, perm fs.FileMode) error
	// OpenFile opens like os.OpenFile; the File is written, synced, closed.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Chmod(name string, mode fs.FileMode) error
	Symlink(oldname, newname string) error
	Readlink(name string) (string, error)
	Lstat(name string) (fs.FileInfo, error)
	// SyncDir fsyncs a directory so renames in it are durable (a no-op
	// where directories cannot be synced, e.g. Windows).
	SyncDir(dir string) error
}

// File is an open file of an FS.
type File interface {
	io.Reader
	io.Writer
	Sync() error
	Close() error
}

// OSFS is FS on the real operating system.
type OSFS struct{}

func (OSFS) Rename(o, n string) error                     { return os.Rename(o, n) }
func (OSFS) Remove(name string) error                     { return os.Remove(name) }
func (OSFS) RemoveAll(name string) error                  { return os.RemoveAll(name) }
func (OSFS) Mkdir(name string, perm fs.FileMode) error    { return os.Mkdir(name, perm) }
func (OSFS) MkdirAll(name string, perm fs.FileMode) error { return os.MkdirAll(name, perm) }
func (OSFS) Chmod(name string, mode fs.FileMode) error    { return os.Chmod(name, mode) }
func (OSFS) Symlink(o, n string) error                    { return os.Symlink(o, n) }
func (OSFS) Readlink(name string) (string, error)         { return os.Readlink(name) }
func (OSFS) Lstat(name string) (fs.FileInfo, error)       { return os.Lstat(name) }

func (OSFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (OSFS) SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// IsTransient reports whether err is worth retrying after a pause: a
// Windows sharing or lock violation (antivirus, indexer, backup agents
// briefly hold freshly written files), or any error with a method
// Transient() bool that returns true.
func IsTransient(err error) bool {
	var t interface{ Transient() bool }
	if errors.As(err, &t) {
		return t.Transient()
	}
	if runtime.GOOS == "windows" {
		var en syscall.Errno
		if errors.As(err, &en) {
			switch en {
			case 5, 32, 33: // ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION
				return true
			}
		}
	}
	return false
}

// transientRetry is the back-off for transient errors: Attempts tries,
// the pause doubling from Base up to Max (about 10 s in all by default).
var transientRetry = struct {
	Attempts  int
	Base, Max time.Duration
}{Attempts: 14, Base: 10 * time.Millisecond, Max: time.Second}

// retryTransient runs f until it succeeds, fails with a non-transient
// error, the attempts run out or ctx ends.
func retryTransient(ctx context.Context, f func() error) error {
	d := transientRetry.Base
	var err error
	for i := 0; i < transientRetry.Attempts; i++ {
		if err = f(); err == nil || !IsTransient(err) {
			return err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		if d *= 2; d > transientRetry.Max {
			d = transientRetry.Max
		}
	}
	return err
}

func exists(fsys FS, p string) (bool, error) {
	_, err := fsys.Lstat(p)
	if err == nil {
		return true, nil
	}
	if notExist(err) {
		return false, nil
	}
	return false, err
}

// notExist: err says the path is absent (also through a non-directory).
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
