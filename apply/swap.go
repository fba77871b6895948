package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

// Swap errors.
var (
	// ErrStagedMismatch: a staged file does not have the hash the journal
	// expects (the staged tree was damaged after verification).
	ErrStagedMismatch = errors.New("apply: staged file does not match the journal")
	// ErrSwapConflict: the app directory holds something no op expects
	// (e.g. a directory where a file goes, a non-empty directory to remove).
	ErrSwapConflict = errors.New("apply: unexpected entry in the app directory")
	// ErrAppChanged: before the swap began, the app directory was found
	// changed since Prepare planned it (a file added, edited or removed).
	// Nothing is changed; Install drops the plan, and the next update
	// prepares again from the current tree.
	ErrAppChanged = errors.New("apply: app directory changed since the update was prepared")
	// ErrRollbackMismatch: after a rollback the app directory is not the old tree.
	ErrRollbackMismatch = errors.New("apply: app directory after rollback differs from the old tree")
)

// tmpPrefix names the temporary file an op writes beside its target. The
// name is fixed per target so a crashed attempt's leftover is reused
// (Swap) or deleted (Rollback).
const tmpPrefix = ".deltaup-tmp-"

// journalSaveEvery bounds how often Swap rewrites the journal's Done index
// (the disk check makes a stale index safe, only slower to resume).
var journalSaveEvery = 250 * time.Millisecond

func (j *Journal) appPath(rel string) string { return filepath.Join(j.AppDir, filepath.FromSlash(rel)) }

// dpPath is where OpDisplace keeps the user's entry rel.
func (j *Journal) dpPath(rel string) string {
	return filepath.Join(j.Displaced, filepath.FromSlash(rel))
}

func (j *Journal) rbPath(rel string) string {
	return filepath.Join(j.Rollback, filepath.FromSlash(rel))
}

// isSwapTmp reports whether the relative path rel names one of the swap's
// temporary files (left by a crash; not part of any tree).
func isSwapTmp(rel string) bool { return strings.HasPrefix(path.Base(rel), tmpPrefix) }

func tmpPath(p string) string { return filepath.Join(filepath.Dir(p), tmpPrefix+filepath.Base(p)) }

// appScan is how every scan of the application directory reads it
// (detection, planning, the pre-swap check, recovery, rollback): the
// swap's own temporary files are not part of any tree, by one rule.
var appScan = tree.ScanOptions{Hash: true, Skip: isSwapTmp}

// removeOwnLeftovers deletes the swap's temporary files (files and links
// named with tmpPrefix) that an interrupted swap left anywhere in appDir.
// Called when no swap is pending, so none of them is in use; a directory
// with such a name is left alone (the swap never makes one).
func removeOwnLeftovers(appDir string) error {
	return filepath.WalkDir(appDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), tmpPrefix) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

// Swap carries out the journal's ops not yet done, then sets the state
// "swapped". From "staged" it first empties the rollback area and records
// "swapping". Every op checks the disk first, so Swap may be run again
// after a crash at any point (see Resume). Old entries are renamed into
// the rollback area, never overwritten: on Windows a running executable
// or loaded DLL can be renamed but not replaced. Transient errors
// (IsTransient) are retried with back-off. fsys nil means OSFS.
func Swap(ctx context.Context, j *Journal, fsys FS) error {
	if fsys == nil {
		fsys = OSFS{}
	}
	// Work areas must be real directories: a link planted at their path
	// would move the old files (or delete) elsewhere.
	if err := realDirFS(fsys, filepath.Dir(j.Rollback)); err != nil {
		return err
	}
	if err := noLink(fsys, j.discardDir()); err != nil {
		return err
	}
	switch j.State {
	case JournalStaged:
		// Check the whole staged tree before the first change to the app
		// directory, so that one damaged staged file stops the swap with
		// nothing changed rather than half-way (copyStaged checks each
		// file again as it copies it).
		if err := verifyStaged(ctx, j); err != nil {
			return err
		}
		// The plan is only right for the tree it was made from: a file
		// added or changed since Prepare (an app writing into its own
		// directory) would be left behind or stop the swap half-way.
		if err := checkOldTree(ctx, j); err != nil {
			return err
		}
		if err := fsys.RemoveAll(j.Rollback); err != nil {
			return err
		}
		j.State, j.Done, j.Started = JournalSwapping, 0, time.Now().UTC()
		if err := j.Save(); err != nil {
			return err
		}
	case JournalSwapping:
	case JournalSwapped:
		return nil
	default:
		return fmt.Errorf("%w: cannot swap in state %q", ErrJournalState, j.State)
	}
	// The rollback area's existence marks "swap started" on the disk.
	if err := mkdirAllSynced(fsys, j.Rollback, j.BackupDir); err != nil {
		return err
	}
	last := time.Now()
	for i := j.Done; i < len(j.Ops); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := doOp(ctx, j, fsys, &j.Ops[i]); err != nil {
			if i > j.Done {
				_ = j.Save() // keep the progress made
			}
			return fmt.Errorf("apply: swap %s %s: %w", j.Ops[i].Kind, j.Ops[i].Path, err)
		}
		j.Done = i + 1
		if time.Since(last) >= journalSaveEvery {
			if err := j.Save(); err != nil {
				return err
			}
			last = time.Now()
		}
	}
	j.State = JournalSwapped
	return j.Save()
}

// opDone reports whether op's effect is on the disk.
func opDone(j *Journal, fsys FS, op *Op) (bool, error) {
	p := j.appPath(op.Path)
	if op.Kind == OpDisplace {
		// Done once the entry is in the displaced area (a later op may
		// have put the release's entry at its path since).
		return exists(fsys, j.dpPath(op.Path))
	}
	fi, err := fsys.Lstat(p)
	if notExist(err) {
		return op.Kind == OpRemove, nil
	}
	if err != nil {
		return false, err
	}
	switch op.Kind {
	case OpRemove:
		// Done when absent, or when what is there is no longer of the old
		// type (the new entry of a file <-> dir change already in place).
		return fileType(fi) != op.Old.Type, nil
	case OpMkdir:
		return fi.IsDir() && modeOK(fi, op.Mode), nil
	case OpSymlink:
		if fi.Mode()&fs.ModeSymlink == 0 {
			return false, nil
		}
		t, err := fsys.Readlink(p)
		if err != nil {
			return false, err
		}
		return filepath.ToSlash(t) == op.Target, nil
	case OpFile:
		if !fi.Mode().IsRegular() || fi.Size() != op.Size || !modeOK(fi, op.Mode) {
			return false, nil
		}
		sum, err := hashFS(fsys, p)
		if err != nil {
			return false, err
		}
		return hex.EncodeToString(sum[:]) == op.SHA256, nil
	}
	return false, fmt.Errorf("%w: op %q", ErrJournalCorrupt, op.Kind)
}

func fileType(fi fs.FileInfo) tree.Type {
	switch {
	case fi.IsDir():
		return tree.Dir
	case fi.Mode()&fs.ModeSymlink != 0:
		return tree.Symlink
	case fi.Mode().IsRegular():
		return tree.File
	}
	return tree.Type(fi.Mode().Type().String())
}

// modeOK reports whether fi has the op's mode as this system reports modes
// (tree.DefaultModes: on Windows only the read-only attribute counts).
func modeOK(fi fs.FileInfo, mode string) bool {
	m, err := parseMode(mode)
	t := fileType(fi)
	return err == nil && tree.ModesDefault.Perm(t, fi.Mode()) == tree.ModesDefault.Perm(t, m)
}

func hashFS(fsys FS, p string) ([32]byte, error) {
	var sum [32]byte
	f, err := fsys.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// movable reports whether the old entry travels with a file/symlink op
// (a dir is handled by its own OpRemove).
func movable(o *OldEntry) bool { return o != nil && (o.Type == tree.File || o.Type == tree.Symlink) }

// saveOld moves the app-dir entry at p to the rollback area unless the old
// entry is already there; then anything left at p is deleted.
func saveOld(ctx context.Context, j *Journal, fsys FS, op *Op, p string, fi fs.FileInfo) error {
	if fi.IsDir() {
		return fmt.Errorf("%w: %s is a directory", ErrSwapConflict, p)
	}
	rb := j.rbPath(op.Path)
	if movable(op.Old) {
		there, err := exists(fsys, rb)
		if err != nil {
			return err
		}
		if !there {
			if err := mkdirAllSynced(fsys, filepath.Dir(rb), j.BackupDir); err != nil {
				return err
			}
			if err := retryTransient(ctx, func() error { return fsys.Rename(p, rb) }); err != nil {
				return err
			}
			return fsys.SyncDir(filepath.Dir(rb))
		}
	}
	// Not the old entry (or it is saved already): discard it.
	return discard(ctx, j, fsys, op.Path)
}

// discardDir is where entries that cannot be deleted (a running Windows
// executable) are renamed to; Cleanup empties it when it can.
func (j *Journal) discardDir() string { return filepath.Join(j.BackupDir, "discard") }

// discard deletes the app-dir entry rel, or, when it cannot be deleted
// (in use), renames it into the discard area.
func discard(ctx context.Context, j *Journal, fsys FS, rel string) error {
	p := j.appPath(rel)
	err := retryTransient(ctx, func() error { return fsys.Remove(p) })
	if err == nil || notExist(err) {
		return nil
	}
	d := filepath.Join(j.discardDir(), strconv.FormatUint(j.Seq, 10), filepath.FromSlash(rel))
	if merr := fsys.MkdirAll(filepath.Dir(d), 0o755); merr != nil {
		return err
	}
	_ = fsys.RemoveAll(d)
	if rerr := retryTransient(ctx, func() error { return fsys.Rename(p, d) }); rerr != nil {
		return fmt.Errorf("%w (and renaming it away: %v)", err, rerr)
	}
	return nil
}

func doOp(ctx context.Context, j *Journal, fsys FS, op *Op) error {
	done, err := opDone(j, fsys, op)
	if err != nil || done {
		return err
	}
	p := j.appPath(op.Path)
	parent := filepath.Dir(p)
	switch op.Kind {
	case OpDisplace:
		if _, err := fsys.Lstat(p); notExist(err) {
			return nil // gone meanwhile (the user's own doing): nothing to keep
		}
		dst := j.dpPath(op.Path)
		if err := mkdirAllSynced(fsys, filepath.Dir(dst), j.BackupDir); err != nil {
			return err
		}
		if err := retryTransient(ctx, func() error { return fsys.Rename(p, dst) }); err != nil {
			return err
		}
		if err := fsys.SyncDir(filepath.Dir(dst)); err != nil {
			return err
		}
		return fsys.SyncDir(parent)
	case OpRemove:
		if op.Old.Type == tree.Dir {
			if err := retryTransient(ctx, func() error { return fsys.Remove(p) }); err != nil {
				return fmt.Errorf("%w: removing directory %s: %w", ErrSwapConflict, p, err)
			}
			return fsys.SyncDir(parent)
		}
		fi, err := fsys.Lstat(p)
		if err != nil {
			return err
		}
		if err := saveOld(ctx, j, fsys, op, p, fi); err != nil {
			return err
		}
		return fsys.SyncDir(parent)
	case OpMkdir:
		mode, _ := parseMode(op.Mode)
		fi, err := fsys.Lstat(p)
		switch {
		case notExist(err):
			if err := fsys.Mkdir(p, mode); err != nil {
				return err
			}
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%w: %s is not a directory", ErrSwapConflict, p)
		}
		if err := fsys.Chmod(p, mode); err != nil {
			return err
		}
		if err := fsys.SyncDir(p); err != nil { // the mode lives in p's own inode
			return err
		}
		return fsys.SyncDir(parent)
	case OpFile, OpSymlink:
		if fi, err := fsys.Lstat(p); err == nil {
			if err := saveOld(ctx, j, fsys, op, p, fi); err != nil {
				return err
			}
		} else if !notExist(err) {
			return err
		}
		tmp := tmpPath(p)
		if op.Kind == OpFile {
			if err := copyStaged(ctx, j, fsys, op, tmp); err != nil {
				return err
			}
		} else {
			if err := fsys.Remove(tmp); err != nil && !notExist(err) {
				return err
			}
			if err := fsys.Symlink(filepath.FromSlash(op.Target), tmp); err != nil {
				return err
			}
		}
		if err := retryTransient(ctx, func() error { return fsys.Rename(tmp, p) }); err != nil {
			return err
		}
		return fsys.SyncDir(parent)
	}
	return fmt.Errorf("%w: op %q", ErrJournalCorrupt, op.Kind)
}

// checkOldTree checks that the app directory is still the tree the journal
// was planned from (its digest; leftover temporary files of the swap do
// not count). Cost: one read of the app directory.
func checkOldTree(ctx context.Context, j *Journal) error {
	if j.OldDigest == "" {
		return nil
	}
	es, err := tree.Scan(ctx, j.AppDir, appScan)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAppChanged, err)
	}
	if d := tree.Digest(es); hex.EncodeToString(d[:]) != j.OldDigest {
		return fmt.Errorf("%w: %s is not the tree the update was prepared for", ErrAppChanged, j.AppDir)
	}
	return nil
}

// verifyStaged checks that every file the journal will copy is in the
// staged tree with its size and SHA-256 (links are followed: the bytes
// are what counts). Cost: one read of the new files.
func verifyStaged(ctx context.Context, j *Journal) error {
	for i := range j.Ops {
		op := &j.Ops[i]
		if op.Kind != OpFile {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(j.Staged, filepath.FromSlash(op.Path))
		fi, err := os.Stat(p)
		var sum [32]byte
		if err == nil && fi.Size() == op.Size {
			sum, err = tree.HashFile(p)
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrStagedMismatch, op.Path, err)
		}
		if fi.Size() != op.Size || hex.EncodeToString(sum[:]) != op.SHA256 {
			return fmt.Errorf("%w: %s", ErrStagedMismatch, op.Path)
		}
	}
	return nil
}

// copyStaged writes the staged file of op to tmp (fsynced, with its mode),
// checking its hash.
func copyStaged(ctx context.Context, j *Journal, fsys FS, op *Op, tmp string) error {
	mode, _ := parseMode(op.Mode)
	src, err := os.Open(filepath.Join(j.Staged, filepath.FromSlash(op.Path)))
	if err != nil {
		return err
	}
	defer src.Close()
	var dst File
	err = retryTransient(ctx, func() error {
		var err error
		dst, err = fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
		return err
	})
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, h), src)
	if err == nil && (n != op.Size || hex.EncodeToString(h.Sum(nil)) != op.SHA256) {
		err = fmt.Errorf("%w: %s", ErrStagedMismatch, op.Path)
	}
	// The mode is set before the fsync, so that the fsync makes it durable
	// with the content.
	if err == nil {
		err = retryTransient(ctx, func() error { return fsys.Chmod(tmp, mode) })
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = fsys.Remove(tmp)
	}
	return err
}

// Resume carries the journal of backupDir forward from whatever state a
// crash left it in, reloading everything from the disk:
//   - no journal: (nil, nil);
//   - staged, swapping: finish the swap (state swapped) — the caller then
//     relaunches the app and waits for its confirmation;
//   - swapped: nothing (the caller relaunches and waits, or rolls back);
//   - rolling-back: finish the rollback (state rolled-back; cleanup on
//     the next Resume);
//   - confirmed, rolled-back: clean up (rollback area, staged tree,
//     journal) and return the journal as it was.
//
// The journal must be for appDir and backupDir, the directories in use
// (Journal.For): one naming other directories is refused with
// ErrJournalMismatch and nothing is touched. When both copies of the
// journal are corrupt, Resume looks at the disk: no rollback area means
// the swap never started and nothing is changed (the ErrJournalCorrupt
// error is returned); otherwise the swap is finished from the staged tree
// (see RecoverJournal), into appDir only when the backup directory's claim
// file names it.
func Resume(ctx context.Context, appDir, backupDir string, fsys FS) (*Journal, error) {
	if fsys == nil {
		fsys = OSFS{}
	}
	j, err := LoadJournal(backupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, ErrJournalCorrupt) {
		return RecoverJournal(ctx, appDir, backupDir, fsys)
	}
	if err != nil {
		return nil, err
	}
	if err := j.For(appDir, backupDir); err != nil {
		return nil, err
	}
	switch j.State {
	case JournalStaged, JournalSwapping:
		return j, Swap(ctx, j, fsys)
	case JournalSwapped:
		return j, nil
	case JournalRollingBack:
		return j, Rollback(ctx, j, fsys)
	default:
		return j, Cleanup(j, fsys)
	}
}

// RecoverJournal handles a journal of which no copy is valid. If no
// rollback area exists under backupDir/rollback the swap never started:
// nothing is touched and an ErrJournalCorrupt error is returned (the
// caller should stage the update again). Otherwise the swap is finished
// from the facts on disk: the single staged tree backupDir/staged/TO is
// the new tree, whatever of the app directory is not in it goes to the
// single rollback area backupDir/rollback/FROM (never overwriting what is
// there already); the rebuilt journal (Recovered, without Relaunch) is
// saved in state swapped. A later Rollback restores the saved old files
// but cannot know which new files had no old counterpart. Recovery works
// only from facts inside the backup directory: its claim file must name
// appDir (see ClaimFileName), and appDir must be a real directory;
// otherwise nothing is touched.
func RecoverJournal(ctx context.Context, appDir, backupDir string, fsys FS) (*Journal, error) {
	if fsys == nil {
		fsys = OSFS{}
	}
	var err error
	if appDir, err = filepath.Abs(appDir); err != nil {
		return nil, err
	}
	if backupDir, err = filepath.Abs(backupDir); err != nil {
		return nil, err
	}
	corrupt := fmt.Errorf("%w: in %s", ErrJournalCorrupt, backupDir)
	owner, err := claimedApp(backupDir)
	if err != nil {
		return nil, fmt.Errorf("%w; %w", corrupt, err)
	}
	if owner == "" || !sameDir(owner, appDir) {
		return nil, fmt.Errorf("%w; its claim file (%s) does not name %s, so nothing tells which directory the swap was for: nothing was changed; check %s by hand (old files are in %s), then remove the journal",
			corrupt, filepath.Join(backupDir, ClaimFileName), appDir, appDir, filepath.Join(backupDir, "rollback"))
	}
	if err := checkRealAppDir(appDir); err != nil {
		return nil, err
	}
	rbs, _ := os.ReadDir(filepath.Join(backupDir, "rollback"))
	if len(rbs) == 0 {
		return nil, fmt.Errorf("%w; the swap had not started, %s is unchanged", corrupt, appDir)
	}
	sts, _ := os.ReadDir(filepath.Join(backupDir, "staged"))
	if len(rbs) != 1 || len(sts) != 1 || !rbs[0].IsDir() || !sts[0].IsDir() {
		return nil, fmt.Errorf("%w; cannot tell the rollback area or staged tree apart", corrupt)
	}
	from, to := rbs[0].Name(), sts[0].Name()
	staged := filepath.Join(backupDir, "staged", to)
	newEntries, err := tree.Scan(ctx, staged, tree.ScanOptions{Hash: true})
	if err != nil {
		return nil, err
	}
	cur, err := tree.Scan(ctx, appDir, appScan)
	if err != nil {
		return nil, err
	}
	// What the old release installed is unknown here: everything not in
	// the new tree goes to the rollback area, which Cleanup then keeps
	// (moved to the displaced area) instead of deleting it.
	j, err := BuildJournal(appDir, backupDir, from, to, cur, newEntries, staged, nil, nil)
	if err != nil {
		return nil, err
	}
	j.OldDigest, j.State, j.Recovered, j.Started = "", JournalSwapping, true, time.Now().UTC()
	if err := j.Save(); err != nil {
		return nil, err
	}
	if err := Swap(ctx, j, fsys); err != nil {
		return j, err
	}
	removeTmpLeftovers(j, fsys)
	return j, nil
}

// removeTmpLeftovers deletes temporary files an interrupted op may have
// left beside the targets of the journal's ops.
func removeTmpLeftovers(j *Journal, fsys FS) {
	for _, op := range j.Ops {
		if op.Kind == OpFile || op.Kind == OpSymlink {
			_ = fsys.Remove(tmpPath(j.appPath(op.Path)))
		}
	}
}

// Cleanup ends a confirmed or rolled-back update: it removes the rollback
// area, the staged tree and the journal (last, so a crash here is resumed).
func Cleanup(j *Journal, fsys FS) error {
	if fsys == nil {
		fsys = OSFS{}
	}
	if j.State != JournalConfirmed && j.State != JournalRolledBack {
		return fmt.Errorf("%w: cannot clean up in state %q", ErrJournalState, j.State)
	}
	if j.Recovered && j.State == JournalConfirmed {
		// A recovered plan could not tell the user's files from the old
		// release's: what it moved away is kept, never deleted.
		if err := keepRecovered(j, fsys); err != nil {
			return err
		}
	}
	for _, d := range []string{j.Rollback, j.Staged} {
		if err := fsys.RemoveAll(d); err != nil {
			return err
		}
	}
	_ = fsys.RemoveAll(j.discardDir()) // best effort: may still be in use
	if j.State == JournalRolledBack {
		removeIfNoFiles(fsys, j.Displaced) // emptied by the rollback
	}
	return removeJournal(fsys, j.BackupDir)
}

// Rollback undoes the swap, whatever part of it was done (ops in reverse
// order, each checked on the disk): moved old entries come back from the
// rollback area, new entries without an old counterpart are deleted,
// removed directories are recreated, changed directory modes restored.
// Then, when the journal knows the old tree's digest, the app directory
// is scanned and must match it exactly (ErrRollbackMismatch otherwise),
// the rollback area is deleted and the state becomes "rolled-back". The
// state "rolling-back" is saved first, so Resume finishes an interrupted
// rollback instead of swapping forward. A confirmed update cannot be
// rolled back (ErrJournalState).
func Rollback(ctx context.Context, j *Journal, fsys FS) error {
	if fsys == nil {
		fsys = OSFS{}
	}
	switch j.State {
	case JournalRolledBack:
		return nil
	case JournalConfirmed:
		return fmt.Errorf("%w: the update to %s was confirmed", ErrJournalState, j.To)
	case JournalRollingBack:
	default:
		j.State = JournalRollingBack
		if err := j.Save(); err != nil {
			return err
		}
	}
	for i := len(j.Ops) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return err
		}
		op := &j.Ops[i]
		if err := undoOp(ctx, j, fsys, op); err != nil {
			return fmt.Errorf("apply: rollback %s %s: %w", op.Kind, op.Path, err)
		}
	}
	if j.OldDigest != "" {
		es, err := tree.Scan(ctx, j.AppDir, appScan)
		if err != nil {
			return err
		}
		d := tree.Digest(es)
		if hex.EncodeToString(d[:]) != j.OldDigest {
			return fmt.Errorf("%w: %s", ErrRollbackMismatch, j.AppDir)
		}
	}
	// Emptied by the undo; deleted now so that a journal corrupted later
	// does not read as a started swap (see RecoverJournal).
	if err := fsys.RemoveAll(j.Rollback); err != nil {
		return err
	}
	j.State, j.Done = JournalRolledBack, 0
	return j.Save()
}

func undoOp(ctx context.Context, j *Journal, fsys FS, op *Op) error {
	p := j.appPath(op.Path)
	parent := filepath.Dir(p)
	if op.Kind == OpDisplace {
		dst := j.dpPath(op.Path)
		if saved, err := exists(fsys, dst); err != nil || !saved {
			return err // never moved, or put back already
		}
		if there, err := exists(fsys, p); err != nil {
			return err
		} else if there {
			return fmt.Errorf("%w: %s holds an entry where the displaced %s goes back", ErrSwapConflict, p, dst)
		}
		if err := retryTransient(ctx, func() error { return fsys.Rename(dst, p) }); err != nil {
			return err
		}
		return fsys.SyncDir(parent)
	}
	rb := j.rbPath(op.Path)
	var here bool // p holds the op's new kind of entry
	fi, err := fsys.Lstat(p)
	switch {
	case notExist(err):
	case err != nil:
		return err
	case op.Kind == OpFile:
		here = fileType(fi) == tree.File
	case op.Kind == OpSymlink:
		here = fileType(fi) == tree.Symlink
	case op.Kind == OpMkdir:
		here = fi.IsDir()
	case op.Kind == OpRemove:
		here = fileType(fi) == op.Old.Type
	}
	switch op.Kind {
	case OpFile, OpSymlink:
		if err := retryTransient(ctx, func() error { return fsys.Remove(tmpPath(p)) }); err != nil && !notExist(err) {
			return err
		}
		if movable(op.Old) {
			saved, err := exists(fsys, rb)
			if err != nil || !saved {
				return err // never moved, or restored already
			}
			if here {
				if err := discard(ctx, j, fsys, op.Path); err != nil {
					return err
				}
			}
			if err := retryTransient(ctx, func() error { return fsys.Rename(rb, p) }); err != nil {
				return err
			}
			return fsys.SyncDir(parent)
		}
		if here {
			// Only the op's own new entry goes: what else is there (a
			// user's entry whose displacement was not reached) stays.
			if mine, err := opDone(j, fsys, op); err != nil || !mine {
				return err
			}
			if err := discard(ctx, j, fsys, op.Path); err != nil {
				return err
			}
			return fsys.SyncDir(parent)
		}
		return nil
	case OpMkdir:
		if op.Old != nil && op.Old.Type == tree.Dir {
			m, err := parseMode(op.Old.Mode)
			if err != nil {
				return err
			}
			return fsys.Chmod(p, m)
		}
		if here {
			if err := fsys.RemoveAll(p); err != nil {
				return err
			}
			return fsys.SyncDir(parent)
		}
		return nil
	case OpRemove:
		if here {
			return nil // never removed, or restored already
		}
		if err == nil {
			return fmt.Errorf("%w: %s holds a %s, expected nothing", ErrSwapConflict, p, fileType(fi))
		}
		if op.Old.Type == tree.Dir {
			m, err := parseMode(op.Old.Mode)
			if err != nil {
				return err
			}
			if err := fsys.Mkdir(p, m); err != nil {
				return err
			}
			if err := fsys.Chmod(p, m); err != nil {
				return err
			}
			return fsys.SyncDir(parent)
		}
		if saved, err := exists(fsys, rb); err != nil {
			return err
		} else if !saved {
			return fmt.Errorf("%w: the old %s is neither in place nor in %s", ErrRollbackMismatch, op.Path, j.Rollback)
		}
		if err := retryTransient(ctx, func() error { return fsys.Rename(rb, p) }); err != nil {
			return err
		}
		return fsys.SyncDir(parent)
	}
	return fmt.Errorf("%w: op %q", ErrJournalCorrupt, op.Kind)
}

// keepRecovered moves the rollback area of a recovered journal into the
// displaced area (BACKUP/displaced/FROM-recovered-TIME), where it stays.
func keepRecovered(j *Journal, fsys FS) error {
	if ok, err := exists(fsys, j.Rollback); err != nil || !ok {
		return err
	}
	dst := filepath.Join(displacedDir(j.BackupDir), filepath.Base(j.Rollback)+"-recovered-"+time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := mkdirAllSynced(fsys, filepath.Dir(dst), j.BackupDir); err != nil {
		return err
	}
	if err := fsys.Rename(j.Rollback, dst); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(dst))
}

// removeIfNoFiles deletes the directory dir (and its parent displaced/
// when that is then empty) if no file or link lies below it: a displaced
// area emptied by a rollback. Best effort.
func removeIfNoFiles(fsys FS, dir string) {
	if dir == "" {
		return
	}
	files := false
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = true
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil || files {
		return
	}
	if fsys.RemoveAll(dir) == nil {
		_ = fsys.Remove(filepath.Dir(dir)) // only if empty
	}
}

// mkdirAllSynced creates dir and its missing parents below stop (which must
// exist), fsyncing each new directory's parent so that the new entries
// survive a power loss before anything is moved into them.
func mkdirAllSynced(fsys FS, dir, stop string) error {
	var missing []string
	for d := dir; d != stop && d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := fsys.Lstat(d); err == nil {
			break
		} else if !notExist(err) {
			return err
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := fsys.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}
