package apply

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func euid() uint32 { return 0 }

// hasOwners: Windows files have ACLs, not Unix owners and permission
// bits; the owner and mode checks are not made here (see docs/SECURITY.md).
func hasOwners() bool { return false }

func fileOwner(fs.FileInfo) (uint32, bool) { return 0, false }

// sameDevice compares the volumes of a and b (after resolving links), as a
// rename works only within one volume.
func sameDevice(a string, _ fs.FileInfo, b string, _ fs.FileInfo) bool {
	vol := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		return strings.ToLower(filepath.VolumeName(p))
	}
	return vol(a) == vol(b)
}

// openNoFollow opens path like os.OpenFile after refusing a symbolic link
// or other reparse point at it (ErrUnsafeBackupDir).
func openNoFollow(path string, flag int, perm fs.FileMode) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err == nil && (fi.Mode()&fs.ModeSymlink != 0 || fi.Mode()&fs.ModeIrregular != 0) {
		return nil, fmt.Errorf("%w: %s is a symbolic link: the updater does not follow links in its backup directory; remove it", ErrUnsafeBackupDir, path)
	}
	if err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file; remove it", ErrUnsafeBackupDir, path)
	}
	return os.OpenFile(path, flag, perm)
}
