//go:build unix

package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

func euid() uint32 { return uint32(os.Geteuid()) }

// hasOwners: files have Unix owners and permission bits here.
func hasOwners() bool { return true }

// fileOwner returns the owner of fi.
func fileOwner(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}

// sameDevice reports whether a and b (with their infos) are on one file
// system.
func sameDevice(_ string, a fs.FileInfo, _ string, b fs.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return !ok1 || !ok2 || uint64(sa.Dev) == uint64(sb.Dev)
}

// openNoFollow opens path like os.OpenFile but refuses a symbolic link as
// its last element (O_NOFOLLOW): a link planted in the backup directory is
// never followed (ErrUnsafeBackupDir). Its parent must have been checked.
func openNoFollow(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, perm)
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK) {
		return nil, fmt.Errorf("%w: %s is a symbolic link: the updater does not follow links in its backup directory; remove it", ErrUnsafeBackupDir, path)
	}
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file; remove it", ErrUnsafeBackupDir, path)
	}
	return f, nil
}
