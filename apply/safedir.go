package apply

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/deltaup/deltaup/delta"
)

// Errors of the directory checks (secureDirs).
var (
	// ErrUnsafeBackupDir: the backup directory is not one the updater can
	// trust: a symbolic link, not a directory, owned by another user,
	// writable by group or others, or claimed by another application
	// directory. The updater refuses to work through it.
	ErrUnsafeBackupDir = errors.New("apply: unsafe backup directory")
	// ErrUnsafeAppDir: the application directory cannot be updated safely:
	// it is a symbolic link, it lies on another file system than the
	// backup directory (renames between them fail), or another user can
	// write it or one of the directories above it or above the backup
	// directory (Config.TrustSharedDirs overrides the last).
	ErrUnsafeAppDir = errors.New("apply: unsafe application directory")
)

// ClaimFileName is the file in the backup directory that names the one
// application directory it serves (its absolute path and a newline). It
// is written the first time the updater takes the backup directory; a
// backup directory claimed by another application directory is refused.
const ClaimFileName = "app_dir"

// maxClaimSize caps the claim file.
const maxClaimSize = 4 << 10

// errCrossDevice marks the cross-device refusal (it also wraps
// ErrUnsafeAppDir): Install then drops a pending update made for this
// layout instead of leaving it stuck.
var errCrossDevice = errors.New("cross-device layout")

// secureDirs checks the application and backup directories before the
// updater reads or writes anything of its own (Prepare, Install,
// RollbackNow, Check):
//   - the application directory exists, is a directory and not a
//     symbolic link;
//   - the backup directory, created with mode 0700 when missing and
//     create is true, is a real directory (not a link) owned by the
//     user running the updater, not writable by group or others;
//   - both are on the same file system (the swap renames between them);
//   - unless cfg.TrustSharedDirs, no other user can write the
//     application directory, or rename entries in a directory above it
//     or above the backup directory (see checkShared);
//   - the backup directory's claim file names this application
//     directory (written when missing and create is true).
//
// Nothing is created before the checks that do not need it have passed.
// Cost: a few stat calls per path component.
func secureDirs(cfg *Config, create bool) error {
	app, err := filepath.Abs(cfg.AppDir)
	if err != nil {
		return err
	}
	back, err := filepath.Abs(cfg.BackupDir)
	if err != nil {
		return err
	}
	afi, err := os.Lstat(app)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: the application directory %s does not exist: check --app-dir", ErrConfig, app)
	case err != nil:
		return localIO(err, app)
	case afi.Mode()&fs.ModeSymlink != 0:
		return checkRealAppDir(app)
	case !afi.IsDir():
		return fmt.Errorf("%w: the application directory %s is not a directory: check --app-dir", ErrConfig, app)
	}
	bfi, err := os.Lstat(back)
	if errors.Is(err, fs.ErrNotExist) {
		// Checks that need no backup directory come first: nothing is
		// created for a layout that is refused anyway.
		if err := checkLayout(cfg, app, afi, back, nil); err != nil {
			return err
		}
		if !create {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(back), 0o755); err != nil {
			return localIO(err, filepath.Dir(back))
		}
		if err := os.Mkdir(back, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return localIO(err, back)
		}
		bfi, err = os.Lstat(back)
	}
	if err != nil {
		return localIO(err, back)
	}
	if err := checkOwnDir(back, bfi); err != nil {
		return err
	}
	if err := checkLayout(cfg, app, afi, back, bfi); err != nil {
		return err
	}
	return claim(back, app, create)
}

// checkOwnDir refuses a backup directory that is a link, not a directory,
// owned by another user or writable by group or others.
func checkOwnDir(dir string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symbolic link; it must be a real directory the updater created (remove the link, or choose another --backup-dir)", ErrUnsafeBackupDir, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory (move it away, or choose another --backup-dir)", ErrUnsafeBackupDir, dir)
	}
	if uid, ok := fileOwner(fi); ok && uid != euid() {
		return fmt.Errorf("%w: %s is owned by uid %d, not by the user running the update (uid %d): another user could plant files in it; remove it (the updater recreates it) or choose another --backup-dir", ErrUnsafeBackupDir, dir, uid, euid())
	}
	if hasOwners() && fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (mode %04o): run `chmod go-w %s`, or remove it (the updater recreates it with mode 0700)", ErrUnsafeBackupDir, dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// checkLayout checks that the app and backup directories are on one file
// system (bfi nil: the backup directory's nearest existing parent) and,
// unless cfg.TrustSharedDirs, that no other user can write them.
func checkLayout(cfg *Config, app string, afi fs.FileInfo, back string, bfi fs.FileInfo) error {
	where := back
	if bfi == nil {
		var err error
		if where, bfi, err = nearestExisting(back); err != nil {
			return localIO(err, back)
		}
	}
	if !sameDevice(app, afi, where, bfi) {
		return fmt.Errorf("%w: %w: the application directory %s and the backup directory %s are on different file systems, so the swap cannot move files between them; choose a --backup-dir on the file system of %s (when %s is itself a mount point, install the app in a directory below it)", ErrUnsafeAppDir, errCrossDevice, app, back, app, app)
	}
	if cfg.TrustSharedDirs {
		return nil
	}
	return checkShared(app, back)
}

// nearestExisting returns p or its nearest existing parent, with its info.
func nearestExisting(p string) (string, fs.FileInfo, error) {
	for {
		fi, err := os.Stat(p)
		if err == nil {
			return p, fi, nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, fs.ErrNotExist) || parent == p {
			return p, nil, err
		}
		p = parent
	}
}

// checkShared refuses a layout another user could change under the
// updater: the application directory writable by another user (owned by
// one, or writable by others — by group too when running as root), or a
// directory above the application or backup directory in which another
// user can rename entries (owned by one, or writable without the sticky
// bit). Root and the user running the updater count as trusted owners.
// Links among the parents are resolved first: the real directories count.
// A no-op where files have no Unix owners (Windows).
func checkShared(app, back string) error {
	if !hasOwners() {
		return nil
	}
	mask := fs.FileMode(0o002)
	if euid() == 0 {
		mask |= 0o020 // root: a group member is a less privileged user too
	}
	hint := "fix its owner or permissions, or pass --trust-shared-dirs (Config.TrustSharedDirs) if every user who can write it is trusted"
	fi, err := os.Stat(app)
	if err != nil {
		return localIO(err, app)
	}
	if uid, _ := fileOwner(fi); uid != euid() && uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d, another user than the one running the update (uid %d), who could replace its files under the updater: %s", ErrUnsafeAppDir, app, uid, euid(), hint)
	}
	if fi.Mode().Perm()&mask != 0 {
		return fmt.Errorf("%w: %s is writable by other users (mode %04o), who could replace its files under the updater: %s", ErrUnsafeAppDir, app, fi.Mode().Perm(), hint)
	}
	seen := map[string]bool{}
	for _, start := range []string{filepath.Dir(app), filepath.Dir(back)} {
		dir, err := filepath.EvalSymlinks(start)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if dir, _, err = nearestExisting(start); err == nil {
					dir, err = filepath.EvalSymlinks(dir)
				}
			}
			if err != nil {
				return localIO(err, start)
			}
		}
		for !seen[dir] {
			seen[dir] = true
			fi, err := os.Stat(dir)
			if err != nil {
				return localIO(err, dir)
			}
			uid, _ := fileOwner(fi)
			sticky := fi.Mode()&fs.ModeSticky != 0
			switch {
			case uid != euid() && uid != 0:
				return fmt.Errorf("%w: %s, above %s, is owned by uid %d, another user than the one running the update (uid %d), who could rename the directories in it: %s", ErrUnsafeAppDir, dir, start, uid, euid(), hint)
			case fi.Mode().Perm()&mask != 0 && !sticky:
				return fmt.Errorf("%w: %s, above %s, is writable by other users without the sticky bit (mode %04o), so they could rename the directories in it: %s", ErrUnsafeAppDir, dir, start, fi.Mode().Perm(), hint)
			}
			dir = filepath.Dir(dir)
		}
	}
	return nil
}

// claim makes sure the backup directory serves app: its claim file must
// name app (the same directory, also through links); a missing claim file
// is written when create is true.
func claim(back, app string, create bool) error {
	owner, err := claimedApp(back)
	if err != nil {
		return err
	}
	p := filepath.Join(back, ClaimFileName)
	if owner == "" {
		if !create {
			return nil
		}
		return localIO(delta.WriteFileAtomic(p, 0o600, func(w io.Writer) error {
			_, err := io.WriteString(w, app+"\n")
			return err
		}), back)
	}
	if !sameDir(owner, app) {
		return fmt.Errorf("%w: %s serves the application directory %s (see %s), not %s: choose another --backup-dir for %s, or remove %s if that application is gone", ErrUnsafeBackupDir, back, owner, p, app, app, back)
	}
	return nil
}

// claimedApp returns the application directory named by the claim file of
// back ("" when there is none).
func claimedApp(back string) (string, error) {
	p := filepath.Join(back, ClaimFileName)
	raw, err := readFileNoFollow(p, maxClaimSize)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if errors.Is(err, ErrUnsafeBackupDir) {
		return "", err
	}
	if err != nil && len(raw) <= maxClaimSize {
		return "", localIO(err, back)
	}
	owner := strings.TrimSuffix(string(raw), "\n")
	if err != nil || !filepath.IsAbs(owner) || strings.ContainsAny(owner, "\n\x00") {
		return "", fmt.Errorf("%w: %s is not a claim file written by deltaup: remove it if %s belongs to this application", ErrUnsafeBackupDir, p, back)
	}
	return owner, nil
}

// dropFreshBackup removes the backup directory made for an app directory
// that turned out to be no installation (ErrNotInstalled, which needs a
// fresh state): when it holds nothing but the updater's bookkeeping (lock,
// claim, state file), those files and the directory go, so that a command
// pointed at the wrong folder leaves nothing behind. Best effort.
func dropFreshBackup(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		switch e.Name() {
		case LockFileName, ClaimFileName, StateFileName:
			if e.Type().IsRegular() {
				continue
			}
		}
		return
	}
	for _, e := range ents {
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
	_ = os.Remove(dir)
}

// readFileNoFollow reads the file at p, at most max bytes (more is an
// error), refusing a link (openNoFollow).
func readFileNoFollow(p string, max int64) ([]byte, error) {
	f, err := openNoFollow(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(raw)) > max {
		err = fmt.Errorf("%s is larger than %d bytes", p, max)
	}
	return raw, err
}

// sameDir reports whether a and b name the same directory: the same clean
// absolute path, or the same directory after resolving links.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
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
	return fsys.MkdirAll(dir, 0o700)
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
