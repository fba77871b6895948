package apply

// Hazard tests: hostile or broken local conditions around staging and the
// swap, driven through the Updater (Prepare/Install) on a published
// repository served over HTTP (ckNewSetup). They complement swap_test.go
// (crash at every step of Swap) and the hostile-input tests of the other
// packages; docs/SECURITY.md maps each hazard to its tests.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// hzSnapshot lists everything under dir (without following links): path,
// type, and content hash or link target. Used to prove a directory an
// updater must not touch was not touched.
func hzSnapshot(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			lines = append(lines, rel+" -> "+target)
		case d.IsDir():
			lines = append(lines, rel+"/")
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			lines = append(lines, rel+" "+hex.EncodeToString(sum[:8]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// hzDiff lists the lines of snapshot a missing from b ("-") and added ("+").
func hzDiff(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range as {
		if !slices.Contains(bs, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bs {
		if !slices.Contains(as, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// hzVictim makes a directory outside the app and backup directories that a
// planted symlink points to, with sentinel files, among them directories
// named like the versions Stage builds (a RemoveAll through the link would
// delete them).
func hzVictim(t testing.TB) string {
	v := filepath.Join(t.TempDir(), "victim")
	ckWriteFiles(t, v, map[string]string{
		"sentinel.txt":        "must stay\n",
		"1.0.0/keep.txt":      "must stay\n",
		"1.1.0/keep.txt":      "must stay\n",
		"1.2.0/keep.txt":      "must stay\n",
		"1.2.0/bin/app":       "not the app\n",
		"downloads/keep.txt":  "must stay\n",
		"rollback/keep.txt":   "must stay\n",
		"staged/1.2.0/a.txt":  "must stay\n",
		"staged/1.1.0/b.txt":  "must stay\n",
		"discard/1/keep.txt":  "must stay\n",
		"need_update.json.go": "must stay\n",
	})
	return v
}

// TestHazardSymlinkPlanted (item 11): a symlink planted, before the updater
// runs, at the backup directory itself or at one of its work directories,
// pointing to a directory elsewhere. The updater must not write through it:
// the target directory stays byte for byte the same, and the update either
// fails cleanly (app directory untouched, no journal) or replaces the link
// and ends in exactly the new tree.
func TestHazardSymlinkPlanted(t *testing.T) {
	// Where the updater followed each link before safedir.go refused and
	// replaced planted links (kept for the failure message).
	where := map[string]string{
		"staged": "stage.go:100 os.RemoveAll(<backup>/staged/<to>) deletes <target>/<to>, stage.go:103 MkdirAll and :106 delta.ApplyBundleFile " +
			"(archive route: :136, :139, :147 fallback.Extract) build the new tree in the link target, the journal's Staged points there " +
			"and Cleanup (swap.go:451) deletes it from there",
		"downloads": "stage.go:78-83 download() MkdirAll + Fetch write <target>/<artifact>; Install's os.RemoveAll(<backup>/downloads) " +
			"(update.go:226) removes only the link, so the artifact stays in the target",
		"rollback": "swap.go:62 fsys.RemoveAll(j.Rollback), j.Rollback = <backup>/rollback/<from> (journal.go:206), deletes <target>/<from>; " +
			"swap.go:76 MkdirAll and saveOld (swap.go:196) move the old files into the link target",
		"(backup dir)": "Config.Validate (config.go:82-85) takes <appdir>.backup as it is; AcquireLock (lock_unix.go:33-36), State.Save, Stage " +
			"and Cleanup all work inside the link target (lock and state.json written, staged/<to>, downloads/ and discard/ deleted)",
	}
	for _, at := range []string{"staged", "downloads", "rollback", "discard", "(backup dir)"} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			s := ckNewSetup(t, ckVersions[0])
			backup := s.cfg.AppDir + BackupSuffix
			victim := hzVictim(t)
			before := hzSnapshot(t, victim)
			link := backup
			if at != "(backup dir)" {
				link = filepath.Join(backup, at)
				if err := os.MkdirAll(backup, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(victim, link); err != nil {
				t.Fatal(err)
			}
			oldD := ckDigest(t, s.repo.trees[ckVersions[0]])
			newD := ckDigest(t, s.repo.trees[ckVersionsLast()])
			u := &Updater{Config: *s.cfg}
			ctx := context.Background()
			p, perr := u.Prepare(ctx)
			var ierr error
			if perr == nil {
				_, ierr = u.Install(ctx)
			}
			if after := hzSnapshot(t, victim); after != before {
				t.Fatalf("the updater wrote through a symlink planted at %s (%s; Prepare: %v, Install: %v); in the directory it points to:\n%s",
					link, where[at], perr, ierr, hzDiff(before, after))
			}
			switch {
			case perr != nil:
				t.Logf("Prepare refused: %v", perr)
				if ckDigest(t, s.cfg.AppDir) != oldD {
					t.Fatal("app directory changed after a refused Prepare")
				}
				if _, err := LoadJournal(backup); err == nil {
					t.Error("a journal was saved by a refused Prepare")
				}
			case ierr != nil:
				t.Fatalf("Install: %v (prepared %+v)", ierr, p.Stage)
			default:
				if ckDigest(t, s.cfg.AppDir) != newD {
					t.Fatal("app directory is not the new tree")
				}
				if fi, err := os.Lstat(link); err != nil {
					t.Logf("Prepare and Install succeeded; %s afterwards: %v", link, err)
				} else {
					t.Logf("Prepare and Install succeeded; %s afterwards: %v", link, fi.Mode())
				}
			}
		})
	}
}

// TestHazardStagingUnwritable (item 12): the backup directory's work areas
// cannot be written (a file where a directory goes; read-only directories
// when not running as root). Prepare fails with a clean error, the app
// directory is untouched, no journal is written; once the obstacle is gone
// a second Prepare and Install end in exactly the new tree.
func TestHazardStagingUnwritable(t *testing.T) {
	if rerunUnprivileged(t) {
		return
	}
	type tcase struct {
		name     string
		rootOK   bool // meaningful when running as root
		block    func(t *testing.T, backup string)
		unblock  func(t *testing.T, backup string)
		wantErrs []error // any of them
	}
	fileAt := func(rel string) (func(*testing.T, string), func(*testing.T, string)) {
		return func(t *testing.T, backup string) {
				if err := os.WriteFile(filepath.Join(backup, rel), []byte("in the way"), 0o644); err != nil {
					t.Fatal(err)
				}
			}, func(t *testing.T, backup string) {
				if err := os.Remove(filepath.Join(backup, rel)); err != nil {
					t.Fatal(err)
				}
			}
	}
	readOnly := func(rel string) (func(*testing.T, string), func(*testing.T, string)) {
		return func(t *testing.T, backup string) {
				p := filepath.Join(backup, rel)
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, 0o555); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Chmod(p, 0o755) })
			}, func(t *testing.T, backup string) {
				if err := os.Chmod(filepath.Join(backup, rel), 0o755); err != nil {
					t.Fatal(err)
				}
			}
	}
	var cases []tcase
	for _, rel := range []string{stagingDir, downloadsDir} {
		// A file planted where a work directory belongs is replaced by the
		// directory (as a planted symlink is: see TestHazardSymlinkPlanted).
		b, _ := fileAt(rel)
		cases = append(cases, tcase{name: rel + " is a file", rootOK: true, block: b, wantErrs: nil})
		b, u := readOnly(rel)
		cases = append(cases, tcase{name: rel + " read-only", block: b, unblock: u, wantErrs: []error{ErrLocalIO}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !c.rootOK && os.Geteuid() == 0 {
				t.Skip("running as root without an unprivileged rerun: permission bits do not stop writes")
			}
			t.Parallel()
			s := ckNewSetup(t, ckVersions[0])
			backup := s.cfg.AppDir + BackupSuffix
			if err := os.MkdirAll(backup, 0o755); err != nil {
				t.Fatal(err)
			}
			c.block(t, backup)
			oldD := ckDigest(t, s.cfg.AppDir)
			u := &Updater{Config: *s.cfg}
			ctx := context.Background()
			_, err := u.Prepare(ctx)
			if c.wantErrs == nil {
				// Self-healing case: the update must go through exactly.
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				if _, err := u.Install(ctx); err != nil {
					t.Fatalf("Install: %v", err)
				}
				if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
					t.Fatal("app directory is not the new tree")
				}
				return
			}
			if err == nil {
				t.Fatal("Prepare succeeded with an unwritable work area")
			}
			if !slices.ContainsFunc(c.wantErrs, func(e error) bool { return errors.Is(err, e) }) {
				t.Errorf("Prepare: %v, want one of %v", err, c.wantErrs)
			}
			t.Logf("Prepare: %v", err)
			for _, r := range s.srv.requests() {
				if strings.HasSuffix(r, ".tar.zst") {
					t.Errorf("a local permission problem made the patch route fall back to the archive (%s)", r)
				}
			}
			if ckDigest(t, s.cfg.AppDir) != oldD {
				t.Fatal("app directory changed")
			}
			if _, err := LoadJournal(backup); err == nil {
				t.Fatal("a journal was saved by a failed Prepare")
			}
			c.unblock(t, backup)
			if _, err := u.Prepare(ctx); err != nil {
				t.Fatalf("Prepare after the obstacle is gone: %v", err)
			}
			if in, err := u.Install(ctx); err != nil || !in.Confirmed {
				t.Fatalf("Install: %+v %v", in, err)
			}
			if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
				t.Fatal("app directory is not the new tree")
			}
		})
	}
}

// failFS fails every mutating step from limit on with err (a disk that
// fills up, a permission that goes away), counting steps like crashFS.
type failFS struct {
	crashFS
	err error
}

func (f *failFS) wrap(e error) error {
	if errors.Is(e, errCrash) {
		return &fs.PathError{Op: "write", Path: "(injected)", Err: f.err}
	}
	return e
}
func (f *failFS) Rename(o, n string) error { return f.wrap(f.crashFS.Rename(o, n)) }
func (f *failFS) Remove(p string) error    { return f.wrap(f.crashFS.Remove(p)) }
func (f *failFS) RemoveAll(p string) error { return f.wrap(f.crashFS.RemoveAll(p)) }
func (f *failFS) Mkdir(p string, m fs.FileMode) error {
	return f.wrap(f.crashFS.Mkdir(p, m))
}
func (f *failFS) MkdirAll(p string, m fs.FileMode) error {
	return f.wrap(f.crashFS.MkdirAll(p, m))
}
func (f *failFS) OpenFile(p string, flag int, m fs.FileMode) (File, error) {
	h, err := f.crashFS.OpenFile(p, flag, m)
	return h, f.wrap(err)
}
func (f *failFS) Chmod(p string, m fs.FileMode) error { return f.wrap(f.crashFS.Chmod(p, m)) }
func (f *failFS) Symlink(o, n string) error           { return f.wrap(f.crashFS.Symlink(o, n)) }
func (f *failFS) SyncDir(p string) error              { return f.wrap(f.crashFS.SyncDir(p)) }

// TestHazardSwapDiskFullOrDenied (item 12): Install through a file system
// that fails with ENOSPC or EACCES from step k on, for every k of a whole
// Install. Install reports the error (never a success); then, with the
// disk working again, either Install again (it resumes) ends in exactly the
// new tree, or RollbackNow ends in exactly the old one.
func TestHazardSwapDiskFullOrDenied(t *testing.T) {
	ctx := context.Background()
	// Count the mutating steps of a whole Install.
	s0 := hzPreparedSetup(t)
	count := &crashFS{FS: OSFS{}, limit: -1, appDir: s0.cfg.AppDir}
	if in, err := (&Updater{Config: *s0.cfg, FS: count}).Install(ctx); err != nil || !in.Confirmed {
		t.Fatalf("counting Install: %+v %v", in, err)
	}
	n := count.n
	t.Logf("%d mutating steps in Install; failing at each of %d points", n, n+1)
	for k := 0; k <= n; k++ {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			t.Parallel()
			s := hzPreparedSetup(t)
			oldD := ckDigest(t, s.repo.trees[ckVersions[0]])
			newD := ckDigest(t, s.repo.trees[ckVersionsLast()])
			errno := []error{syscall.ENOSPC, syscall.EACCES}[k%2]
			ff := &failFS{crashFS: crashFS{FS: OSFS{}, limit: k, appDir: s.cfg.AppDir}, err: errno}
			in, err := (&Updater{Config: *s.cfg, FS: ff}).Install(ctx)
			if k < n {
				if err == nil {
					t.Fatalf("k=%d: Install succeeded with a failing disk: %+v", k, in)
				}
				if !errors.Is(err, errno) {
					t.Errorf("k=%d: Install error %v does not wrap %v", k, err, errno)
				}
			} else if err != nil {
				t.Fatalf("k=%d (no failure): %v", k, err)
			}
			if !ff.touchedApp && ckDigest(t, s.cfg.AppDir) != oldD {
				t.Fatalf("k=%d: app directory changed without an app-directory step", k)
			}
			u := &Updater{Config: *s.cfg}
			j, jerr := LoadJournal(s.cfg.AppDir + BackupSuffix)
			canRollBack := jerr == nil && (j.State == JournalStaged || j.State == JournalSwapping || j.State == JournalSwapped)
			if canRollBack && k%4 >= 2 {
				if _, err := u.RollbackNow(ctx); err != nil {
					t.Fatalf("k=%d: RollbackNow: %v", k, err)
				}
				if ckDigest(t, s.cfg.AppDir) != oldD {
					t.Fatalf("k=%d: app directory after rollback is not the old tree", k)
				}
				return
			}
			if _, err := u.Install(ctx); err != nil {
				t.Fatalf("k=%d: Install after the disk recovered: %v", k, err)
			}
			if ckDigest(t, s.cfg.AppDir) != newD {
				t.Fatalf("k=%d: app directory is not the new tree", k)
			}
		})
	}
}

// TestHazardLeftoverFromCrash (item 13): the backup directory holds what an
// earlier crashed run left: garbage staged trees (including one at the
// target version), downloads of the right names with the wrong bytes, a
// partial download with a lying sidecar, a stale rollback area and discard
// area, and a torn temporary file. No journal: Prepare re-stages from
// scratch, trusting none of it, and Install ends in exactly the new tree.
func TestHazardLeftoverFromCrash(t *testing.T) {
	s := ckNewSetup(t, ckVersions[0])
	backup := s.cfg.AppDir + BackupSuffix
	files := map[string]string{
		"staged/1.2.0/bin/app":        "x:garbage from an earlier crash",
		"staged/1.2.0/extra.txt":      "not in the release",
		"staged/1.1.0/lib/core.js":    "half a hop",
		"rollback/bin/app":            "a stale rollback copy",
		"discard/7/lib/blob.bin":      "discarded",
		"downloads/junk.part":         "partial",
		"downloads/junk.part.json":    `{"size":1,"sha256":"00"}`,
		".deltaup-tmp-state.json":     "torn",
		"staged/.deltaup-tmp-garbage": "torn",
	}
	m := s.repo.manifest(t)
	for _, r := range m.Releases {
		for _, a := range r.Archives {
			files[path.Join(downloadsDir, path.Base(a.Path))] = "garbage archive"
		}
		for _, p := range r.Patches {
			// The right size with the wrong bytes, and its part file.
			files[path.Join(downloadsDir, path.Base(p.Path))] = strings.Repeat("G", int(p.Size))
			files[path.Join(downloadsDir, path.Base(p.Path))+PartSuffix] = "garbage part"
		}
	}
	ckWriteFiles(t, backup, files)
	u := &Updater{Config: *s.cfg}
	ctx := context.Background()
	p, err := u.Prepare(ctx)
	if err != nil {
		t.Fatalf("Prepare over leftovers: %v", err)
	}
	if p.Stage.Route != "patches" || p.Stage.Fallback != "" {
		t.Errorf("route %q fallback %q: leftovers should not force the archive", p.Stage.Route, p.Stage.Fallback)
	}
	if got, want := ckDigest(t, p.Stage.Dir), ckDigest(t, s.repo.trees[ckVersionsLast()]); got != want {
		t.Fatal("staged tree is not the release")
	}
	in, err := u.Install(ctx)
	if err != nil || !in.Confirmed {
		t.Fatalf("Install: %+v %v", in, err)
	}
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
		t.Fatal("app directory is not the new tree")
	}
	ents, _ := os.ReadDir(backup)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	t.Logf("backup directory afterwards: %v", names)
}

// TestHazardStagedModifiedBeforeInstall (item 10): a staged file is changed
// after Stage verified it and Prepare saved the journal, before Install.
// The swap checks the whole staged tree before its first change, so the
// damage is caught (ErrStagedMismatch) with the app directory untouched;
// the damaged stage is dropped (no update pending, the version not marked
// bad) and the next Prepare and Install give exactly the new tree. A staged
// file replaced by a symlink to a file with the right bytes is harmless
// (the bytes are what is checked) and installs exactly. The "during the
// swap" case damages the staged file after the check, when the swap has
// begun: the per-file check while copying catches it and the files
// already swapped are rolled back automatically.
func TestHazardStagedModifiedBeforeInstall(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"same size other bytes", "truncated", "symlink to other bytes", "symlink to right bytes", "removed"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			s, u, p, oldD, newD := hzPrepared(t)
			target := filepath.Join(p.Stage.Dir, "lib", "core.js")
			good, err := os.ReadFile(target)
			if err != nil {
				t.Fatal(err)
			}
			elsewhere := filepath.Join(t.TempDir(), "f")
			switch how {
			case "same size other bytes":
				bad := []byte(strings.Repeat("x", len(good)))
				err = os.WriteFile(target, bad, 0o644)
			case "truncated":
				err = os.WriteFile(target, good[:len(good)/2], 0o644)
			case "symlink to other bytes", "symlink to right bytes":
				content := []byte(strings.Repeat("y", len(good)))
				if how == "symlink to right bytes" {
					content = good
				}
				if err = os.WriteFile(elsewhere, content, 0o644); err == nil {
					if err = os.Remove(target); err == nil {
						err = os.Symlink(elsewhere, target)
					}
				}
			case "removed":
				err = os.Remove(target)
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = u.Install(ctx)
			if how == "symlink to right bytes" {
				if err != nil {
					t.Fatalf("Install: %v", err)
				}
				if ckDigest(t, s.cfg.AppDir) != newD {
					t.Fatal("app directory is not the new tree")
				}
				if fi, err := os.Lstat(filepath.Join(s.cfg.AppDir, "lib", "core.js")); err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("installed file is not a regular file: %v %v", fi, err)
				}
				return
			}
			if err == nil {
				t.Fatal("Install accepted a staged file changed after verification")
			}
			if !errors.Is(err, ErrStagedMismatch) {
				t.Errorf("Install: %v, want ErrStagedMismatch", err)
			}
			t.Logf("Install: %v", err)
			hzStageDropped(t, s, oldD, newD)
		})
	}
	t.Run("during the swap", func(t *testing.T) {
		t.Parallel()
		s, u, p, oldD, newD := hzPrepared(t)
		// Damage every staged file at the swap's first rename in the app
		// directory (after the check): whichever file comes next is caught.
		dfs := &hookFS{FS: OSFS{}, appDir: s.cfg.AppDir, hook: func() { hzDamageTree(p.Stage.Dir) }}
		u.FS = dfs
		_, err := u.Install(ctx)
		if !dfs.done {
			t.Fatal("the swap made no rename in the app directory")
		}
		if !errors.Is(err, ErrStagedMismatch) {
			t.Fatalf("Install: %v, want ErrStagedMismatch", err)
		}
		t.Logf("Install: %v", err)
		u.FS = nil
		hzStageDropped(t, s, oldD, newD)
	})
}

// hzPrepared: version 1.0.0 installed and the update to the last version
// prepared, with the digests of both trees.
func hzPrepared(t *testing.T) (s *ckSetup, u *Updater, p *Prepared, oldD, newD [32]byte) {
	t.Helper()
	s = ckNewSetup(t, ckVersions[0])
	oldD = ckDigest(t, s.repo.trees[ckVersions[0]])
	newD = ckDigest(t, s.repo.trees[ckVersionsLast()])
	u = &Updater{Config: *s.cfg}
	p, err := u.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, u, p, oldD, newD
}

// hzPreparedSetup is hzPrepared when only the setup is needed.
func hzPreparedSetup(t *testing.T) *ckSetup {
	t.Helper()
	s, _, _, _, _ := hzPrepared(t)
	return s
}

// hzStageDropped checks the state after a damaged stage was refused: the
// app directory exactly old, no update pending, the version not marked
// bad; then Prepare and Install give exactly the new tree.
func hzStageDropped(t *testing.T, s *ckSetup, oldD, newD [32]byte) {
	t.Helper()
	ctx := context.Background()
	if ckDigest(t, s.cfg.AppDir) != oldD {
		t.Fatal("app directory is not exactly the old tree")
	}
	backup := s.cfg.AppDir + BackupSuffix
	if _, err := LoadJournal(backup); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an update is still pending after the damaged stage was refused: %v", err)
	}
	if st, err := LoadState(backup); err != nil || len(st.Bad) != 0 {
		t.Fatalf("state %+v %v: the version must not be marked bad", st, err)
	}
	u := &Updater{Config: *s.cfg}
	if _, err := u.Prepare(ctx); err != nil {
		t.Fatalf("Prepare again: %v", err)
	}
	if in, err := u.Install(ctx); err != nil || !in.Confirmed {
		t.Fatalf("Install again: %+v %v", in, err)
	}
	if ckDigest(t, s.cfg.AppDir) != newD {
		t.Fatal("app directory is not the new tree")
	}
}

// hookFS runs hook once, just before the swap's first rename that touches
// the app directory (after the swap's checks, when it has begun).
type hookFS struct {
	FS
	appDir string
	hook   func()
	done   bool
}

func (d *hookFS) Rename(o, n string) error {
	in := func(p string) bool { return strings.HasPrefix(p, d.appDir+string(filepath.Separator)) }
	if !d.done && (in(o) || in(n)) {
		d.done = true
		d.hook()
	}
	return d.FS.Rename(o, n)
}

// hzDamageTree overwrites every regular file under dir with other bytes of
// the same size.
func hzDamageTree(dir string) {
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil {
				for i := range b {
					b[i] ^= 0x55
				}
				os.WriteFile(p, b, 0o644)
			}
		}
		return nil
	})
}

// TestHazardWrongContentRange (item 18): resuming a partial download, the
// server answers 206 with a Content-Range that does not match the request
// (another start, another total, garbage, none). The downloader must never
// splice the bytes at the wrong offset: it ends with the exact artifact or
// a clean error and no file at dest.
func TestHazardWrongContentRange(t *testing.T) {
	const name = "a.bin"
	data := dlTestData(100_000, 11)
	art := dlTestArtifact(name, data)
	const have = 5000
	cases := []struct {
		name  string
		cr    string // Content-Range of the 206 ("" none)
		start int    // offset of the body sent
	}{
		{"start 0 for a resume", "bytes 0-99999/100000", 0},
		{"later start", "bytes 6000-99999/100000", 6000},
		{"earlier start", "bytes 4000-99999/100000", 4000},
		{"right start, wrong total", "bytes 5000-99999/200000", have},
		{"garbage", "bytes x-y/z", have},
		{"missing", "", have},
		{"claims right, sends from 0", "bytes 5000-99999/100000", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var ranges []string
			var mu sync.Mutex
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				ranges = append(ranges, r.Header.Get("Range"))
				mu.Unlock()
				w.Header().Set("ETag", `"v1"`)
				if r.Header.Get("Range") == "" {
					w.Header().Set("Content-Length", fmt.Sprint(len(data)))
					w.Write(data)
					return
				}
				body := data[c.start:]
				if c.cr != "" {
					w.Header().Set("Content-Range", c.cr)
				}
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(body)
			}))
			defer srv.Close()
			dest := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(dest+PartSuffix, data[:have], 0o644); err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(fetchSidecar{Size: art.Size, SHA256: hex.EncodeToString(art.SHA256[:])})
			if err := os.WriteFile(dest+SidecarSuffix, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			err := dlTestDownloader(srv.URL).Fetch(context.Background(), art, dest)
			got, rerr := os.ReadFile(dest)
			mu.Lock()
			defer mu.Unlock()
			t.Logf("requests (Range): %q; Fetch: %v", ranges, err)
			if err != nil {
				if rerr == nil {
					t.Fatal("Fetch failed but left a file at dest")
				}
				return
			}
			if !bytes.Equal(got, data) {
				t.Fatal("dest is not the artifact: bytes spliced at the wrong offset")
			}
		})
	}
}

// TestHazardStaleMirror (item 18): the first mirror serves an older, validly
// signed manifest (or garbage) while the client has already seen a newer
// one. The client never goes back (state keeps its sequence) and the app
// directory is untouched; it either fails over to the good mirror or fails
// closed with a refusal (which one is logged).
func TestHazardStaleMirror(t *testing.T) {
	for _, how := range []string{"older manifest", "garbage manifest"} {
		t.Run(how, func(t *testing.T) {
			s := ckNewSetup(t, ckVersions[0])
			stale := filepath.Join(t.TempDir(), "stale")
			ckCopyDir(t, s.repo.dir, stale)
			switch how {
			case "older manifest":
				for _, suf := range []string{"", ".minisig"} {
					b, err := os.ReadFile(filepath.Join(stale, "manifests", "2.json"+suf))
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(stale, manifest.ManifestName+suf), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			case "garbage manifest":
				if err := os.WriteFile(filepath.Join(stale, manifest.ManifestName), []byte("<html>503</html>"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			srvStale := ckServe(t, stale)
			cfg := *s.cfg
			cfg.BackupDir = cfg.AppDir + BackupSuffix
			cfg.Servers = []string{srvStale.URL + "/", s.srv.URL + "/"}
			if err := (&State{App: "demo", Sequence: 3, Installed: ckVersions[0]}).Save(cfg.BackupDir); err != nil {
				t.Fatal(err)
			}
			appBefore := ckDigest(t, cfg.AppDir)
			res, err := Check(context.Background(), &cfg, &Downloader{Mirrors: cfg.Servers, Retries: -1})
			switch {
			case err == nil:
				t.Logf("failed over to the good mirror: target %s", res.Target)
				if res.Target != ckVersionsLast() {
					t.Errorf("target %s", res.Target)
				}
			default:
				t.Fatalf("Check did not fail over to the good mirror: %v", err)
			}
			st, err := LoadState(cfg.BackupDir)
			if err != nil || st.Sequence < 3 {
				t.Fatalf("state went back: %+v %v", st, err)
			}
			if ckDigest(t, cfg.AppDir) != appBefore {
				t.Fatal("app directory changed")
			}
		})
	}
}

// Fuzz targets for the client's own decoders that have none elsewhere
// (item 9): the need_update journal, the client state file, and the
// Content-Range parser. None may panic; a journal that loads is usable.
func FuzzHazardJournalDecode(f *testing.F) {
	fx := newFixture(f, oldNodes, newNodes)
	if b, err := os.ReadFile(filepath.Join(fx.backup, JournalFileName)); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"body":{},"sha256":""}`))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, JournalFileName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := LoadJournal(dir)
		if err == nil && j == nil {
			t.Fatal("nil journal without error")
		}
	})
}

func FuzzHazardStateDecode(f *testing.F) {
	dir := f.TempDir()
	if err := (&State{App: "demo", Sequence: 3, Installed: "1.0.0"}).Save(dir); err == nil {
		if b, err := os.ReadFile(StatePath(dir)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("null"))
	f.Add([]byte(`{"sequence":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(StatePath(dir), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if st, err := LoadState(dir); err == nil && st == nil {
			t.Fatal("nil state without error")
		}
	})
}

func FuzzHazardContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 5-4/100", "bytes 0-99/99", "bytes */100", "bytes -1-5/10", "bytes 0-9223372036854775807/9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		first, last, total, ok := parseContentRange(v)
		if ok && (first < 0 || last < first || total <= last) {
			t.Fatalf("%q -> %d-%d/%d accepted", v, first, last, total)
		}
	})
}

// TestHazardShellCharacterNames (item 6): file and directory names with
// quotes, shell metacharacters, %VAR%, $VAR, backquotes and spaces travel
// through publish, bundle, archive, journal and swap as plain names: the
// update ends in exactly the published tree and nothing outside the app
// directory is created (no shell ever sees them).
func TestHazardShellCharacterNames(t *testing.T) {
	names := []string{
		"it's here.txt", "a;b.txt", "$(touch pwned).txt", "`id`.txt", "%APPDATA%.txt",
		"$HOME and ${PATH}.txt", "a&b.txt", "semi; rm -rf x/new file.txt", "#hash!bang~.txt",
	}
	tree := func(n int) string {
		dir := t.TempDir()
		files := map[string]string{}
		for i, name := range names {
			// Incompressible bodies, so that the patch route is the cheap one.
			files[name] = string(ckNoise(8 << 10)[i:]) + fmt.Sprintf("%d line %d of %q\n", n, i, name)
		}
		ckWriteFiles(t, dir, files)
		return dir
	}
	r := ckNewRepo(t)
	v1, v2 := "2.0.0", "2.1.0"
	t1, t2 := tree(1), tree(2)
	r.publish(t, v1, t1)
	r.publish(t, v2, t2)
	root := t.TempDir()
	appDir := filepath.Join(root, "app")
	r.install(t, v1, appDir)
	srv := ckServe(t, r.dir)
	cfg := Config{AppDir: appDir, Servers: []string{srv.URL + "/"}, PublicKey: r.pub, App: "demo", To: v2,
		Now: func() time.Time { return r.now.Add(time.Hour) }}
	u := &Updater{Config: cfg}
	p, err := u.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Stage.Route != "patches" {
		t.Errorf("route %s (%s)", p.Stage.Route, p.Stage.Fallback)
	}
	if _, err := u.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ckDigest(t, appDir) != ckDigest(t, t2) {
		t.Fatal("app directory is not the published tree")
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "app" && e.Name() != "app"+BackupSuffix {
			t.Errorf("unexpected %s beside the app directory", e.Name())
		}
	}
	if _, err := os.Stat("pwned"); err == nil {
		t.Error("a name was run by a shell")
	}
}

// TestHazardAppDirUnwritable: permission denied in the middle of the swap,
// for real (as root the test reruns itself unprivileged): the app
// directory, or one of its subdirectories, turns read-only once the swap has
// begun.
// Install reports ErrLocalIO wrapping the permission error; then either
// RollbackNow (tried before and, if refused, after the permission is
// restored) gives exactly the old tree, or Install after the permission is
// restored gives exactly the new one.
func TestHazardAppDirUnwritable(t *testing.T) {
	if rerunUnprivileged(t) {
		return
	}
	for _, rel := range []string{"data", "lib", "bin"} {
		for _, rollback := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s rollback=%v", rel, rollback), func(t *testing.T) {
				if os.Geteuid() == 0 {
					t.Skip("running as root without an unprivileged rerun: permission bits do not stop writes")
				}
				t.Parallel()
				ctx := context.Background()
				s := ckNewSetup(t, ckVersions[0])
				u := &Updater{Config: *s.cfg}
				if _, err := u.Prepare(ctx); err != nil {
					t.Fatal(err)
				}
				oldD := ckDigest(t, s.cfg.AppDir)
				newD := ckDigest(t, s.repo.trees[ckVersionsLast()])
				dir := filepath.Join(s.cfg.AppDir, rel)
				fi, err := os.Stat(dir)
				if err != nil {
					t.Fatal(err)
				}
				// Read-only from the swap's first change on (before it, the
				// swap would see a changed tree and not start: ErrAppChanged).
				u.FS = &hookFS{FS: OSFS{}, appDir: s.cfg.AppDir, hook: func() {
					if err := os.Chmod(dir, 0o555); err != nil {
						t.Error(err)
					}
				}}
				restore := func() {
					if err := os.Chmod(dir, fi.Mode().Perm()); err != nil && !errors.Is(err, fs.ErrNotExist) {
						t.Fatal(err)
					}
				}
				t.Cleanup(func() { os.Chmod(dir, 0o755) })
				_, err = u.Install(ctx)
				if err == nil {
					t.Fatal("Install succeeded in a read-only directory")
				}
				if !errors.Is(err, fs.ErrPermission) || !errors.Is(err, ErrLocalIO) {
					t.Fatalf("Install: want ErrLocalIO wrapping a permission error, got %v", err)
				}
				t.Logf("Install: %v", err)
				if rollback {
					if _, rerr := u.RollbackNow(ctx); rerr != nil {
						t.Logf("RollbackNow with the directory still read-only: %v", rerr)
						restore()
						if _, rerr = u.RollbackNow(ctx); rerr != nil {
							t.Fatalf("RollbackNow after restoring the permission: %v", rerr)
						}
					} else {
						restore()
					}
					if ckDigest(t, s.cfg.AppDir) != oldD {
						t.Fatal("app directory after rollback is not exactly the old tree")
					}
					return
				}
				restore()
				if in, err := u.Install(ctx); err != nil || !in.Confirmed {
					t.Fatalf("Install after restoring the permission: %+v %v", in, err)
				}
				if ckDigest(t, s.cfg.AppDir) != newD {
					t.Fatal("app directory is not the new tree")
				}
			})
		}
	}
}

// swapAfterFetch is an ArtifactFetcher that, after each verified download,
// overwrites the file with other bytes of the same size: an artifact
// swapped between its check and its use.
type swapAfterFetch struct {
	ArtifactFetcher
	with    func(p string) []byte // the replacement bytes for repository path p; nil: the file's bytes XOR 0x5a
	swapped []string
}

func (s *swapAfterFetch) Fetch(ctx context.Context, art manifest.Artifact, dest string) error {
	if err := s.ArtifactFetcher.Fetch(ctx, art, dest); err != nil {
		return err
	}
	b := s.with(art.Path)
	if b == nil {
		var err error
		if b, err = os.ReadFile(dest); err != nil {
			return err
		}
		for i := range b {
			b[i] ^= 0x5a
		}
	}
	s.swapped = append(s.swapped, art.Path)
	return os.WriteFile(dest, b, 0o644)
}

// TestHazardArtifactSwappedAfterFetch: the bundle and then the archive are
// replaced on disk after the downloader verified them. The bundle's own
// checks make the patch route fail (falling back), the archive's entries
// are checked against the signed file list, so Stage fails and nothing
// reaches a staged tree, let alone the app directory.
func TestHazardArtifactSwappedAfterFetch(t *testing.T) {
	for _, valid := range []bool{false, true} {
		t.Run(fmt.Sprint("valid replacement=", valid), func(t *testing.T) { testArtifactSwapped(t, valid) })
	}
}

// testArtifactSwapped: valid=false garbles the downloaded bytes; valid=true
// replaces them with another well-formed artifact of the same repository
// (the 1.0.0 -> 1.1.0 bundle, the 1.1.0 archive).
func testArtifactSwapped(t *testing.T, valid bool) {
	ctx := context.Background()
	s := ckNewSetup(t, ckVersions[0])
	cfg := *s.cfg
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	oldD := ckDigest(t, cfg.AppDir)
	d := &Downloader{Mirrors: cfg.Servers}
	res, err := CheckUpdate(ctx, &cfg, d, &State{})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := res.Manifest.Release(res.Target)
	if err != nil {
		t.Fatal(err)
	}
	target, err := releaseEntries(ctx, d, rel)
	if err != nil {
		t.Fatal(err)
	}
	sw := &swapAfterFetch{ArtifactFetcher: d, with: func(p string) []byte {
		if !valid {
			return nil
		}
		other := "patches/demo-1.0.0-to-1.1.0.dupb"
		if strings.HasSuffix(p, ".tar.zst") {
			other = "archives/demo-1.1.0.tar.zst"
		}
		b, err := os.ReadFile(filepath.Join(s.serve, other))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}}
	sr, err := Stage(ctx, cfg.AppDir, cfg.BackupDir, res.Manifest, res.Route, target, nil, sw)
	if err == nil {
		t.Fatalf("Stage used swapped artifacts: %+v", sr)
	}
	t.Logf("Stage: %v", err)
	if len(sw.swapped) != 2 || !strings.HasSuffix(sw.swapped[0], ".dupb") || !strings.HasSuffix(sw.swapped[1], ".tar.zst") {
		t.Fatalf("swapped %v, want the bundle then the archive", sw.swapped)
	}
	if ents, _ := os.ReadDir(filepath.Join(cfg.BackupDir, stagingDir)); len(ents) != 0 {
		t.Errorf("staged trees left from swapped artifacts: %v", ents)
	}
	if ckDigest(t, cfg.AppDir) != oldD {
		t.Fatal("app directory changed")
	}
}

// TestHazardMixedRoute: a route that mixes a patch hop and an archive hop
// (the planner never builds one; a caller could) is refused before any
// download, and Stage goes to the target's archive instead.
func TestHazardMixedRoute(t *testing.T) {
	ctx := context.Background()
	s := ckNewSetup(t, ckVersions[0])
	cfg := *s.cfg
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := &Downloader{Mirrors: cfg.Servers}
	res, err := CheckUpdate(ctx, &cfg, d, &State{})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	rel, err := m.Release(ckVersionsLast())
	if err != nil {
		t.Fatal(err)
	}
	p, err := Plan(m, ckVersions[0], ckVersions[1], nil)
	if err != nil || len(p.Steps) != 1 || p.Steps[0].Kind != StepPatch {
		t.Fatalf("plan 1.0.0 -> 1.1.0: %+v %v", p, err)
	}
	arch, _ := preferredArchive(rel)
	mixed := &Route{From: ckVersions[0], To: rel.Version, Steps: []Step{p.Steps[0],
		{Kind: StepArchive, From: ckVersions[1], To: rel.Version, Format: arch.Format, Artifact: arch.Artifact}}}
	if _, err := stagePatches(ctx, cfg.AppDir, cfg.BackupDir, &Route{Steps: mixed.Steps[1:]}, nil, d, &StageResult{}); err == nil || !strings.Contains(err.Error(), "mixes patches and archives") {
		t.Fatalf("stagePatches on an archive hop: %v", err)
	}
	target, err := releaseEntries(ctx, d, rel)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := Stage(ctx, cfg.AppDir, cfg.BackupDir, m, mixed, target, nil, d)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Route != "archive" || !strings.Contains(sr.Fallback, "mixes patches and archives") {
		t.Fatalf("Stage on a mixed route: %+v", sr)
	}
	if ckDigest(t, sr.Dir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
		t.Fatal("staged tree is not the release")
	}
}

// TestHazardAppChangedBeforeInstall: between Prepare and Install the app
// directory changes — a file added (an app writing logs into its own
// directory), a file the update does not touch edited, a file removed. The
// plan no longer fits, so Install refuses before its first change
// (ErrAppChanged): the app directory is exactly as it was, nothing is
// pending, and the next Prepare and Install give exactly the new tree.
func TestHazardAppChangedBeforeInstall(t *testing.T) {
	for _, how := range []string{"file added", "untouched file edited", "file removed", "file added in a changed directory"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			s, u, _, _, newD := hzPrepared(t)
			app := s.cfg.AppDir
			var err error
			added := "" // a file of the user's: it stays after the update
			switch how {
			case "file added":
				added = filepath.Join(app, "lib", "app.log")
				err = os.WriteFile(added, []byte("log line\n"), 0o644)
			case "untouched file edited":
				err = os.WriteFile(filepath.Join(app, "README.md"), []byte("edited\n"), 0o644)
			case "file removed":
				err = os.Remove(filepath.Join(app, "README.md"))
			case "file added in a changed directory":
				added = filepath.Join(app, "data", "cache.bin")
				err = os.WriteFile(added, []byte("cache"), 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			before := hzSnapshot(t, app)
			_, err = u.Install(context.Background())
			if !errors.Is(err, ErrAppChanged) {
				t.Fatalf("Install on a changed app directory: %v, want ErrAppChanged", err)
			}
			t.Logf("Install: %v", err)
			if hzSnapshot(t, app) != before {
				t.Fatal("a refused Install changed the app directory")
			}
			if _, err := LoadJournal(app + BackupSuffix); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("an update is still pending: %v", err)
			}
			if _, err := u.Prepare(context.Background()); err != nil {
				t.Fatalf("Prepare again: %v", err)
			}
			if in, err := u.Install(context.Background()); err != nil || !in.Confirmed {
				t.Fatalf("Install again: %+v %v", in, err)
			}
			if added != "" {
				if _, err := os.Stat(added); err != nil {
					t.Fatalf("the user's file is gone: %v", err)
				}
				must(t, os.Remove(added))
			}
			if ckDigest(t, app) != newD {
				t.Fatal("app directory is not the new tree")
			}
		})
	}
}
