package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ErrUnsafeBackupDir: the backup directory is a symbolic link (or not a
// directory); the updater refuses to work through it.
var ErrUnsafeBackupDir = errors.New("apply: unsafe backup directory")

// checkBackupDir refuses a backup directory that is a symbolic link or not
// a directory: everything the updater stages, saves and deletes lives
// there, so a link planted at its path would make it write and delete
// elsewhere. A missing directory is fine (it is created).
func checkBackupDir(dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symbolic link; it must be a real directory beside the app directory (remove the link)", ErrUnsafeBackupDir, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafeBackupDir, dir)
	}
	return nil
}

// realDirFS makes sure dir is a real directory: a symbolic link or a
// non-directory planted at its path is removed (the link itself, never what
// it points to) and the directory created. Its parent must be real.
func realDirFS(fsys FS, dir string) error {
	fi, err := fsys.Lstat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		if err := fsys.Remove(dir); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return fsys.MkdirAll(dir, 0o755)
}

// noLink removes a symbolic link planted at path (the link only); a real
// entry or nothing at all is left as it is.
func noLink(fsys FS, path string) error {
	fi, err := fsys.Lstat(path)
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fsys.Remove(path)
	}
	return nil
}
