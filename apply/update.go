package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// DefaultConfirmTimeout is how long a relaunched app has to confirm
// (Confirm) before the update is rolled back.
const DefaultConfirmTimeout = 30 * time.Second

// MaxRelaunches is how many times Install starts a new version that has
// not confirmed before it gives up on it: the next Install rolls back and
// marks the version bad without starting it again. It bounds the loop of a
// new version that takes the updater down with it at each start (a
// machine that crashes, an updater killed while waiting).
const MaxRelaunches = 3

// Errors of the update flow.
var (
	// ErrPending: an update is half-installed (a need_update journal exists);
	// run Resume (deltaup resume) first.
	ErrPending = errors.New("apply: an update is pending")
	// ErrDeclined: the consent callback said no.
	ErrDeclined = errors.New("apply: update declined")
	// ErrNotPortable: the release records permission bits (say an
	// executable bit) that this system cannot keep, so its files could not
	// be verified after installing them: on Windows, releases must be
	// published with PortableModes (mkdelta publish --portable-modes).
	ErrNotPortable = errors.New("apply: release not installable on this system")
	// ErrRolledBack: the new version did not confirm (ErrNotConfirmed, or
	// it could not be started) and the old one was restored; the version
	// is marked bad.
	ErrRolledBack = errors.New("apply: the update was rolled back")
)

// Updater runs the whole update: check, consent, download and stage in the
// backup directory, write the need_update journal (Prepare); then swap,
// relaunch, wait for the confirmation and roll back on failure (Install).
// The zero values of the optional fields are valid.
type Updater struct {
	Config Config
	// Downloader fetches documents and artifacts; nil means one built from
	// Config (Servers, LimitRate, HTTPClient) with Progress.
	Downloader *Downloader
	// Consent, when set, is asked before anything is downloaded; false
	// stops with ErrDeclined.
	Consent func(*CheckResult) bool
	// Progress receives download progress.
	Progress func(Progress)
	// FS is the file system the swap uses; nil means OSFS.
	FS FS
	// ConfirmTimeout is how long a relaunched app has to confirm; 0 means
	// DefaultConfirmTimeout.
	ConfirmTimeout time.Duration
}

func (u *Updater) setup() (*Config, *Downloader, FS, error) {
	cfg := u.Config
	if err := cfg.Validate(); err != nil {
		return nil, nil, nil, err
	}
	d := u.Downloader
	if d == nil {
		d = &Downloader{Client: cfg.HTTPClient, Mirrors: cfg.Servers, RateLimit: cfg.LimitRate, Progress: u.Progress}
	}
	fsys := u.FS
	if fsys == nil {
		fsys = OSFS{}
	}
	return &cfg, d, fsys, nil
}

// lockedSetup is setup plus the directories checked (secureDirs: the
// backup directory created if need be, ours and not a link), and the
// update lock taken; the caller calls unlock.
func (u *Updater) lockedSetup() (*Config, *Downloader, FS, func(), error) {
	cfg, d, fsys, err := u.setup()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := secureDirs(cfg, true); err != nil {
		return nil, nil, nil, nil, err
	}
	lock, err := AcquireLock(cfg.AppDir, cfg.BackupDir)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return cfg, d, fsys, func() { lock.Unlock() }, nil
}

// Prepared is what Prepare did.
type Prepared struct {
	Check   *CheckResult // the check (UpToDate: nothing else was done)
	Stage   *StageResult // how the new version was built
	Journal *Journal     // the saved need_update journal (state "staged")
}

// Prepare checks for an update and, when one is ready (and consented to),
// downloads it, builds the complete new version in the backup directory,
// verifies it and saves the need_update journal. The app directory is only
// read. It holds the update lock while it runs.
func (u *Updater) Prepare(ctx context.Context) (_ *Prepared, err error) {
	cfg, d, _, unlock, err := u.lockedSetup()
	if err != nil {
		return nil, err
	}
	defer func() {
		unlock()
		if errors.Is(err, ErrNotInstalled) {
			dropFreshBackup(cfg.BackupDir)
		}
	}()
	if j, err := LoadJournal(cfg.BackupDir); err == nil {
		return nil, fmt.Errorf("%w: %s to %s is in state %s: run `deltaup resume` (apply.Resume)", ErrPending, j.From, j.To, j.State)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v: run `deltaup resume`", ErrPending, err)
	}
	// No swap is pending: temporary files a killed swap left in the app
	// directory are ours and go, so that no scan counts them.
	if err := removeOwnLeftovers(cfg.AppDir); err != nil {
		return nil, localIO(err, cfg.AppDir)
	}
	st, err := LoadState(cfg.BackupDir)
	if err != nil {
		return nil, err
	}
	res, err := CheckUpdate(ctx, cfg, d, st)
	if err != nil {
		return nil, err
	}
	if err := st.Save(cfg.BackupDir); err != nil {
		return nil, localIO(err, cfg.BackupDir)
	}
	p := &Prepared{Check: res}
	if res.UpToDate {
		return p, nil
	}
	if u.Consent != nil && !u.Consent(res) {
		return p, ErrDeclined
	}
	rel, err := res.Manifest.Release(res.Target)
	if err != nil {
		return nil, err
	}
	target, err := releaseEntries(ctx, d, rel)
	if err != nil {
		return nil, err
	}
	// A Windows build (this system, or a windows-… platform followed
	// from another) must have been published with portable modes.
	if tree.DefaultModes == tree.ModesPortable || manifest.IsWindowsPlatform(cfg.indexDir) {
		if bad := tree.NotPortable(target); bad != "" {
			return nil, fmt.Errorf("%w: release %s records permission bits this system cannot keep, e.g. %s: it can be installed here only if published with `mkdelta publish --portable-modes`", ErrNotPortable, rel.Version, bad)
		}
	}
	owned, err := installedPaths(ctx, d, res)
	if err != nil {
		return nil, err
	}
	if p.Stage, err = Stage(ctx, cfg.AppDir, cfg.BackupDir, res.Manifest, res.Route, target, owned, d); err != nil {
		return nil, err
	}
	old, err := tree.Scan(ctx, cfg.AppDir, appScan)
	if err != nil {
		return nil, err
	}
	j, err := BuildJournal(cfg.AppDir, cfg.BackupDir, res.Current, res.Target, old, target, p.Stage.Dir, cfg.Relaunch, owned)
	if err != nil {
		return nil, err
	}
	if err := j.Save(); err != nil {
		// One copy may have been written: an error must not leave a
		// pending update behind it.
		removeJournal(OSFS{}, cfg.BackupDir)
		return nil, localIO(err, cfg.BackupDir)
	}
	p.Journal = j
	return p, nil
}

// installedPaths tells which paths of the app directory a release installed:
// those the installed release lists (res.Current, else the closest release
// the tree was compared with); everything else there is the user's. With
// neither known, nothing in the app directory counts as installed.
func installedPaths(ctx context.Context, f Fetcher, res *CheckResult) (func(string) bool, error) {
	v := res.Current
	if v == "" {
		v = res.Closest
	}
	if v == "" {
		return func(string) bool { return false }, nil
	}
	rel, err := res.Manifest.Release(v)
	if err != nil {
		return nil, err
	}
	es, err := releaseEntries(ctx, f, rel)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(es))
	for _, e := range es {
		set[e.Path] = true
	}
	return func(p string) bool { return set[p] }, nil
}

// releaseEntries returns the release's file list, fetching and checking its
// file-list document when it has one.
func releaseEntries(ctx context.Context, f Fetcher, r *manifest.Release) ([]tree.Entry, error) {
	if r.FileList == nil {
		return r.Files, nil
	}
	doc, err := f.Get(ctx, r.FileList.Path, manifest.MaxFileListSize)
	if err != nil {
		return nil, err
	}
	return r.Entries(doc)
}

// Installed is what Install did.
type Installed struct {
	Journal    *Journal // nil when nothing was pending
	Confirmed  bool     // the new version runs (or no relaunch was asked for)
	RolledBack bool
	// Relaunched: Install started the app (the new version, or the old
	// one after a rollback), which runs now. An app that called Install or
	// Resume itself should then exit and leave the field to that process.
	Relaunched bool
}

// Install carries a pending update forward from any state (a crash at any
// point converges): finishes the swap, relaunches the app when a relaunch
// command is set and waits up to ConfirmTimeout for its confirmation; if the
// app exits or times out first, the old files come back, the version is
// marked bad and the old app is relaunched (ErrRolledBack). Without a
// relaunch command the swap is final at once. Call it from the copy of the
// updater in the backup directory (ReexecFromBackup), or at the start of a
// Go app (Resume).
func (u *Updater) Install(ctx context.Context) (*Installed, error) {
	cfg, _, fsys, unlock, err := u.lockedSetup()
	if errors.Is(err, errCrossDevice) {
		return u.dropCrossDevice(ctx, err)
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	j, err := Resume(ctx, cfg.AppDir, cfg.BackupDir, fsys)
	if (errors.Is(err, ErrStagedMismatch) || errors.Is(err, ErrAppChanged)) && j != nil {
		return &Installed{Journal: j}, dropStage(ctx, cfg, j, fsys, err)
	}
	if err != nil || j == nil {
		return &Installed{Journal: j}, localIO(err, cfg.AppDir)
	}
	out := &Installed{Journal: j}
	st, err := LoadState(cfg.BackupDir)
	if err != nil {
		return out, err
	}
	switch j.State {
	case JournalConfirmed:
		out.Confirmed = true
		st.Installed = j.To
		return out, st.Save(cfg.BackupDir)
	case JournalRolledBack:
		out.RolledBack = true
		return out, nil
	}
	if len(j.Relaunch) == 0 {
		if err := Confirm(cfg.BackupDir); err != nil {
			return out, err
		}
	} else {
		if j.Relaunches >= MaxRelaunches {
			return out, u.rollback(ctx, j, fsys, st, cfg, out, &NotConfirmedError{Version: j.To, Program: j.Relaunch[0], Starts: j.Relaunches})
		}
		timeout := u.ConfirmTimeout
		if timeout == 0 {
			timeout = DefaultConfirmTimeout
		}
		j.Relaunches++
		j.ConfirmBy = time.Now().Add(timeout).UTC()
		if err := j.Save(); err != nil {
			return out, localIO(err, cfg.BackupDir)
		}
		proc, err := Relaunch(cfg.AppDir, j.Relaunch)
		out.Relaunched = err == nil
		if err != nil {
			return out, u.rollback(ctx, j, fsys, st, cfg, out, err) // names the program
		}
		exited := ProcessExited(proc)
		err = WaitConfirm(ctx, j, timeout, exited)
		if nc, ok := errors.AsType[*NotConfirmedError](err); ok {
			if nc.Exit == nil && proc.Kill() == nil {
				// A new version still running without confirming is hung:
				// stop it before its files go back (Windows holds running files).
				nc.Stopped = true
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
				}
			}
			return out, u.rollback(ctx, j, fsys, st, cfg, out, nc)
		}
		if err != nil {
			return out, err
		}
	}
	j, err = Resume(ctx, cfg.AppDir, cfg.BackupDir, fsys) // confirmed: clean up
	if err != nil {
		return out, err
	}
	out.Journal, out.Confirmed = j, true
	st.Installed = j.To
	// The downloads served their purpose; empty work directories go too.
	os.RemoveAll(filepath.Join(cfg.BackupDir, downloadsDir))
	os.Remove(filepath.Join(cfg.BackupDir, stagingDir))
	os.Remove(filepath.Join(cfg.BackupDir, "rollback"))
	return out, st.Save(cfg.BackupDir)
}

// dropStage handles a staged tree found damaged (ErrStagedMismatch
// cause), or an app directory changed since the plan (ErrAppChanged), by the swap: before the swap began, the journal and the staged
// tree are dropped (nothing was changed); during the swap, the entries
// already swapped are rolled back first. Either way the app directory is
// exactly the old version, no update is pending, and the next update
// stages again. The version is not marked bad: its release is fine.
func dropStage(ctx context.Context, cfg *Config, j *Journal, fsys FS, cause error) error {
	what := "nothing was changed"
	if j.State != JournalStaged {
		if err := Rollback(ctx, j, fsys); err != nil {
			return fmt.Errorf("%w; rolling back: %w (run `deltaup rollback`)", cause, err)
		}
		what = "the files already swapped were rolled back"
	}
	if err := removeJournal(fsys, cfg.BackupDir); err != nil {
		return fmt.Errorf("%w; removing the journal: %w", cause, err)
	}
	_ = fsys.RemoveAll(j.Staged)
	_ = fsys.RemoveAll(j.Rollback)
	if errors.Is(cause, ErrAppChanged) {
		return fmt.Errorf("%w: the plan no longer fits it; nothing was changed; run the update again to prepare it afresh", cause)
	}
	if errors.Is(cause, errCrossDevice) {
		return fmt.Errorf("%w; the pending update to %s was dropped (%s) and the app directory is %s", cause, j.To, what, versionName(j.From))
	}
	return fmt.Errorf("%w: the staged update was damaged after it was verified; %s and the app directory is %s; run the update again to prepare it afresh",
		cause, what, versionName(j.From))
}

// dropCrossDevice handles Install on a layout whose app and backup
// directories are on different file systems (cause, from secureDirs): no
// swap can complete there, so a pending update made before the layout
// changed (or by an older updater) is not left stuck. If the backup
// directory is ours and serves this app, the swap is undone (before the
// swap began nothing was changed) and the journal and staged tree are
// dropped; the app directory is the old version and cause is returned.
func (u *Updater) dropCrossDevice(ctx context.Context, cause error) (*Installed, error) {
	cfg, _, fsys, err := u.setup()
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(cfg.BackupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cause
	}
	if err != nil {
		return nil, localIO(err, cfg.BackupDir)
	}
	if err := checkOwnDir(cfg.BackupDir, fi); err != nil {
		return nil, err
	}
	if err := claim(cfg.BackupDir, cfg.AppDir, false); err != nil {
		return nil, err
	}
	lock, err := AcquireLock(cfg.AppDir, cfg.BackupDir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	j, err := LoadJournal(cfg.BackupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cause
	}
	if err != nil {
		return nil, err
	}
	if err := j.For(cfg.AppDir, cfg.BackupDir); err != nil {
		return nil, err
	}
	out := &Installed{Journal: j}
	switch j.State {
	case JournalConfirmed, JournalRolledBack:
		return out, Cleanup(j, fsys)
	}
	return out, dropStage(ctx, cfg, j, fsys, cause)
}

func versionName(v string) string {
	if v == "" {
		return "the version it was before"
	}
	return "version " + v + " as before"
}

func (u *Updater) rollback(ctx context.Context, j *Journal, fsys FS, st *State, cfg *Config, out *Installed, why error) error {
	if err := Rollback(ctx, j, fsys); err != nil {
		return localIO(fmt.Errorf("rollback (%v): %w", why, err), cfg.AppDir)
	}
	out.RolledBack = true
	st.MarkBad(j.To)
	st.Installed = j.From
	if err := st.Save(cfg.BackupDir); err != nil {
		return err
	}
	if len(j.Relaunch) > 0 {
		if _, err := Relaunch(cfg.AppDir, j.Relaunch); err == nil { // the old version; best effort
			out.Relaunched = true
		}
	}
	Resume(ctx, cfg.AppDir, cfg.BackupDir, fsys) // clean up the rolled-back journal
	what := ""
	if errors.Is(why, ErrNotConfirmed) {
		what = "; the new version must confirm (`deltaup confirm`, apply.Confirm) once it has started, within the confirm timeout"
	}
	return fmt.Errorf("%w: %w; the app directory is %s and %s is marked bad: it is not offered again until a newer version (`deltaup unmark %s` or apply.UnmarkBad clears the mark)%s",
		ErrRolledBack, why, versionName(j.From), j.To, j.To, what)
}

// RollbackNow restores the old version of a swapped (or half-swapped)
// update by hand (deltaup rollback) and marks the new one bad.
func (u *Updater) RollbackNow(ctx context.Context) (*Installed, error) {
	cfg, _, fsys, unlock, err := u.lockedSetup()
	if err != nil {
		return nil, err
	}
	defer unlock()
	j, err := LoadJournal(cfg.BackupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("apply: nothing to roll back (no pending or unconfirmed update)")
	}
	if err != nil {
		return nil, err
	}
	if err := j.For(cfg.AppDir, cfg.BackupDir); err != nil {
		return nil, err
	}
	st, err := LoadState(cfg.BackupDir)
	if err != nil {
		return nil, err
	}
	out := &Installed{Journal: j}
	err = u.rollback(ctx, j, fsys, st, cfg, out, errors.New("requested"))
	if errors.Is(err, ErrRolledBack) {
		err = nil
	}
	return out, err
}
