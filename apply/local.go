package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// LocalDirs returns the application directory (absolute) and the backup
// directory the updater uses for it, found without a repository or a key:
// backupDir when set, else "backup_dir" of deltaup.json in appDir, else
// appDir + BackupSuffix; and the deltaup.json read (Found false when there
// is none). The commands that need no network use it (confirm, status,
// unmark).
func LocalDirs(appDir, backupDir string) (app, backup string, fc *FileConfig, err error) {
	if app, err = filepath.Abs(appDir); err != nil {
		return "", "", nil, err
	}
	if fc, err = LoadConfigFile(app); err != nil {
		return "", "", nil, err
	}
	cfg := &Config{AppDir: app, BackupDir: backupDir}
	fc.mergeBackupDir(cfg)
	if cfg.BackupDir == "" {
		cfg.BackupDir = app + BackupSuffix
	}
	if backup, err = filepath.Abs(cfg.BackupDir); err != nil {
		return "", "", nil, err
	}
	return app, backup, fc, nil
}

// LocalStatus is what the client knows of an installation without the
// network: its state file, its journal and the app directory's own record.
type LocalStatus struct {
	AppDir, BackupDir string
	// Installed is the version installed as last detected or applied
	// ("installed" in state.json; "" when unknown).
	Installed string
	// Recorded is the version the app directory records for itself
	// ("version" in its deltaup.json; "" when none).
	Recorded string
	// Bad lists the versions marked bad: check and update skip them
	// until UnmarkBad.
	Bad []string
	// Sequence is the sequence of the last manifest accepted (0: none).
	Sequence uint64
	// Pending is the journal of an update not finished (Resume carries it
	// forward); nil when none.
	Pending *Journal
}

// ReadLocalStatus reads what the client knows of the installation in
// appDir (backupDir "" for the default, see LocalDirs) without the
// network and without changing anything. A backup directory that is not
// the updater's own, or serves another application directory, is refused
// as by the update (ErrUnsafeBackupDir); a damaged state or journal fails
// as it would there.
func ReadLocalStatus(appDir, backupDir string) (*LocalStatus, error) {
	app, back, fc, err := LocalDirs(appDir, backupDir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(app); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: the application directory %s does not exist or is not a directory: check --app-dir", ErrConfig, app)
	}
	ls := &LocalStatus{AppDir: app, BackupDir: back, Recorded: fc.Version}
	if ok, err := ownBackupDir(app, back); err != nil || !ok {
		return ls, err
	}
	st, err := LoadState(back)
	if err != nil {
		return nil, err
	}
	ls.Installed, ls.Bad, ls.Sequence = st.Installed, st.Bad, st.Sequence
	j, err := LoadJournal(back)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := j.For(app, back); err != nil {
			return nil, err
		}
		ls.Pending = j
	}
	return ls, nil
}

// ownBackupDir reports whether back exists; if it does, it must be the
// updater's own directory (checkOwnDir) and serve app (its claim file, if
// any).
func ownBackupDir(app, back string) (bool, error) {
	fi, err := os.Lstat(back)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, localIO(err, back)
	}
	if err := checkOwnDir(back, fi); err != nil {
		return false, err
	}
	return true, claim(back, app, false)
}

// UnmarkBad removes versions from the versions marked bad in the state
// of the installation in appDir (backupDir "" for the default, see
// LocalDirs), so that check and update offer them again; no versions
// means every one. It holds the update lock while it changes the state.
// It returns the versions it removed, as they were recorded; a version
// that was not marked bad is not an error (see the result).
func UnmarkBad(appDir, backupDir string, versions ...string) ([]string, error) {
	app, back, _, err := LocalDirs(appDir, backupDir)
	if err != nil {
		return nil, err
	}
	if ok, err := ownBackupDir(app, back); err != nil || !ok {
		return nil, err
	}
	lock, err := AcquireLock(app, back)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	st, err := LoadState(back)
	if err != nil {
		return nil, err
	}
	var removed []string
	st.Bad = slices.DeleteFunc(st.Bad, func(b string) bool {
		drop := len(versions) == 0 || slices.ContainsFunc(versions, func(v string) bool { return sameVersion(b, v) })
		if drop {
			removed = append(removed, b)
		}
		return drop
	})
	if len(removed) == 0 {
		return nil, nil
	}
	if err := st.Save(back); err != nil {
		return nil, localIO(err, back)
	}
	return removed, nil
}
