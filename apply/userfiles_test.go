package apply

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// ufUserFiles are files of the user's in the app directory that no release
// lists: at the top, inside a release's directory, in a directory of their
// own, and at paths the newest release needs (data/v2.txt: a file the
// newest release adds; a directory where it puts that file).
var ufUserFiles = map[string]map[string]string{
	"beside": {
		"settings.ini":     "theme=dark\n",
		"lib/plugin.so":    "the user's plugin\n",
		"plugins/p1/x.cfg": "x=1\n",
		"data/user.db":     "rows\n",
	},
	"in the way": {
		"settings.ini": "theme=dark\n",
		"data/v2.txt":  "the user's own v2 notes\n",
	},
	"dir in the way": {
		"data/v2.txt/a.txt":   "mine\n",
		"data/v2.txt/b/c.txt": "mine too\n",
	},
}

// ufSetup installs the oldest version with the user's files added.
func ufSetup(t *testing.T, files map[string]string) (*ckSetup, *Updater) {
	t.Helper()
	s := ckNewSetup(t, ckVersions[0])
	ckWriteFiles(t, s.cfg.AppDir, files)
	return s, &Updater{Config: *s.cfg}
}

// ufCheckNew checks that the app directory is the newest release plus the
// user's files, each where it was or, when in the way, in the displaced
// area (reported by the journal), byte for byte.
func ufCheckNew(t *testing.T, s *ckSetup, files map[string]string, j *Journal) {
	t.Helper()
	want := hzSnapshot(t, s.repo.trees[ckVersionsLast()])
	displaced := map[string]bool{}
	for _, p := range j.Displacements() {
		displaced[p] = true
	}
	for p, content := range files {
		at := filepath.Join(s.cfg.AppDir, filepath.FromSlash(p))
		for d := p; d != "."; d = filepath.ToSlash(filepath.Dir(d)) {
			if displaced[d] {
				at = filepath.Join(j.Displaced, filepath.FromSlash(p))
			}
		}
		b, err := os.ReadFile(at)
		if err != nil || string(b) != content {
			t.Errorf("the user's %s: %q %v (looked at %s)", p, b, err, at)
		}
	}
	// Without the user's files left in place, the app is exactly the release.
	got := s.cfg.AppDir + ".check"
	ckCopyDir(t, s.cfg.AppDir, got)
	for p := range files {
		if !slices.ContainsFunc(j.Displacements(), func(d string) bool { return p == d || strings.HasPrefix(p, d+"/") }) {
			os.Remove(filepath.Join(got, filepath.FromSlash(p)))
		}
	}
	for _, d := range []string{"plugins/p1", "plugins"} {
		os.Remove(filepath.Join(got, d))
	}
	if have := hzSnapshot(t, got); have != want {
		t.Errorf("the app directory without the user's files is not the new release:\n%s", hzDiff(want, have))
	}
}

// TestUserFilesSurviveUpdate (issue 11, item 1): files no release put in
// the app directory are the user's: the version is still detected (the
// patch route is taken), the update leaves them in place, moves those in
// the new release's way into the backup directory and reports them, and
// never deletes one.
func TestUserFilesSurviveUpdate(t *testing.T) {
	for name, files := range ufUserFiles {
		t.Run(name, func(t *testing.T) {
			s, u := ufSetup(t, files)
			ctx := context.Background()
			p, err := u.Prepare(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Check.Detected || p.Check.Current != ckVersions[0] || p.Stage.Route != "patches" {
				t.Fatalf("detected %v %q, route %q (fallback: %s)", p.Check.Detected, p.Check.Current, p.Stage.Route, p.Stage.Fallback)
			}
			if len(p.Check.Extra) == 0 {
				t.Fatal("the user's files are not reported as extra")
			}
			in, err := u.Install(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ufCheckNew(t, s, files, in.Journal)
			wantDisplaced := name != "beside"
			if got := len(in.Journal.Displacements()) > 0; got != wantDisplaced {
				t.Fatalf("displaced %v, want some: %v", in.Journal.Displacements(), wantDisplaced)
			}
			if wantDisplaced {
				if _, err := os.Stat(in.Journal.Displaced); err != nil {
					t.Fatalf("the displaced area is gone after the update: %v", err)
				}
			}
		})
	}
}

// TestUserFilesSurviveCrashes: at every fault point of the swap (a crash
// before each file-system step), the user's files survive: resumed, the
// update ends in the new release plus the user's files; rolled back, the
// app directory is exactly what it was, user's files included, and the
// displaced area is emptied.
func TestUserFilesSurviveCrashes(t *testing.T) {
	files := ufUserFiles["in the way"]
	for k := 0; ; k++ {
		s, u := ufSetup(t, files)
		ctx := context.Background()
		before := ckDigest(t, s.cfg.AppDir)
		if _, err := u.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		backup := trBackup(s)
		j, err := LoadJournal(backup)
		must(t, err)
		err = Swap(ctx, j, &crashFS{FS: OSFS{}, limit: k, appDir: s.cfg.AppDir})
		if err == nil {
			t.Logf("%d fault points", k)
			if k < 5 {
				t.Fatalf("only %d steps", k)
			}
			return
		}
		if !errors.Is(err, errCrash) {
			t.Fatalf("k=%d: %v", k, err)
		}
		if k%2 == 0 {
			j, err := Resume(ctx, s.cfg.AppDir, backup, nil)
			if err != nil {
				t.Fatalf("k=%d: resume: %v", k, err)
			}
			ufCheckNew(t, s, files, j)
		} else {
			j, err := LoadJournal(backup)
			must(t, err)
			if err := Rollback(ctx, j, nil); err != nil {
				t.Fatalf("k=%d: rollback: %v", k, err)
			}
			if ckDigest(t, s.cfg.AppDir) != before {
				t.Fatalf("k=%d: not exactly the old directory after the rollback", k)
			}
			if _, err := Resume(ctx, s.cfg.AppDir, backup, nil); err != nil { // cleanup
				t.Fatal(err)
			}
			if _, err := os.Stat(j.Displaced); err == nil {
				t.Fatalf("k=%d: the displaced area stayed after the rollback put everything back", k)
			}
		}
	}
}

// TestUserFilesSurviveRollback: a confirmed-less update rolled back by
// RollbackNow brings the user's files back where they were.
func TestUserFilesSurviveRollback(t *testing.T) {
	files := ufUserFiles["dir in the way"]
	s, u := ufSetup(t, files)
	ctx := context.Background()
	before := hzSnapshot(t, s.cfg.AppDir)
	if _, err := u.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	j, err := LoadJournal(trBackup(s))
	must(t, err)
	must(t, Swap(ctx, j, nil))
	ufCheckNew(t, s, files, j)
	if _, err := u.RollbackNow(ctx); err != nil {
		t.Fatal(err)
	}
	if after := hzSnapshot(t, s.cfg.AppDir); after != before {
		t.Fatalf("after the rollback:\n%s", hzDiff(before, after))
	}
}

// TestWrongFolderUntouched (issue 11, item 1): pointed at a folder that is
// no installation (one important.txt, no state), every command refuses and
// the folder stays byte for byte the same; --current lets it through, and
// even then the user's file is not deleted.
func TestWrongFolderUntouched(t *testing.T) {
	s := ckNewSetup(t, ckVersions[0])
	wrong := filepath.Join(t.TempDir(), "wrongdir")
	ckWriteFiles(t, wrong, map[string]string{"important.txt": "do not lose me\n"})
	s.cfg.AppDir = wrong
	before := hzSnapshot(t, wrong)
	u := &Updater{Config: *s.cfg}
	ctx := context.Background()
	if _, err := u.Prepare(ctx); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Prepare: %v, want ErrNotInstalled", err)
	} else {
		t.Logf("refused: %v", err)
	}
	cfg := *s.cfg
	if _, err := Check(ctx, &cfg, s.fetcher()); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Check: %v", err)
	}
	if after := hzSnapshot(t, wrong); after != before {
		t.Fatalf("the folder changed:\n%s", hzDiff(before, after))
	}
	if _, err := os.Lstat(wrong + BackupSuffix); err == nil {
		t.Fatal("a refused command left a backup directory behind")
	}
	u.Config.Current = ckVersions[0]
	if _, err := u.Prepare(ctx); err != nil {
		t.Fatalf("with --current: %v", err)
	}
	in, err := u.Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(wrong, "important.txt")); err != nil || string(b) != "do not lose me\n" {
		t.Fatalf("important.txt: %q %v", b, err)
	}
	if !slices.Contains(in.Journal.Displacements(), "important.txt") && len(in.Journal.Displacements()) != 0 {
		t.Fatalf("displaced: %v", in.Journal.Displacements())
	}
}

// trBackup returns the default backup directory of s.
func trBackup(s *ckSetup) string { return s.cfg.AppDir + BackupSuffix }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
