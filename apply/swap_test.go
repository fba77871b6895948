package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

// tnode is one entry of a test tree: files (data = content), dirs,
// symlinks (data = target).
type tnode struct {
	path string
	typ  tree.Type
	mode fs.FileMode
	data string
}

var oldNodes = []tnode{
	{"app", tree.File, 0o755, "old exe v1"},
	{"lib", tree.Dir, 0o755, ""},
	{"lib/libx.so", tree.File, 0o644, "libx old"},
	{"lib/unchanged.txt", tree.File, 0o644, "same bytes"},
	{"docs", tree.Dir, 0o755, ""},
	{"docs/readme.txt", tree.File, 0o644, "readme"},
	{"docs/sub", tree.Dir, 0o755, ""},
	{"docs/sub/a.txt", tree.File, 0o600, "a"},
	{"current", tree.Symlink, 0, "lib/libx.so"},
	{"x", tree.File, 0o644, "x was a file"},
	{"d2", tree.Dir, 0o755, ""},
	{"d2/f", tree.File, 0o644, "f"},
	{"script.sh", tree.File, 0o644, "#!/bin/sh\necho hi\n"},
	{"cfg", tree.Dir, 0o755, ""},
	{"cfg/c.ini", tree.File, 0o644, "k=v"},
}

var newNodes = []tnode{
	{"app", tree.File, 0o755, "new exe v2, somewhat longer"},
	{"lib", tree.Dir, 0o755, ""},
	{"lib/libx.so", tree.File, 0o644, "libx new"},
	{"lib/unchanged.txt", tree.File, 0o644, "same bytes"},
	{"lib/new.so", tree.File, 0o755, "brand new lib"},
	{"newdir", tree.Dir, 0o755, ""},
	{"newdir/sub", tree.Dir, 0o750, ""},
	{"newdir/sub/file.txt", tree.File, 0o644, "new file"},
	{"current", tree.Symlink, 0, "lib/new.so"},
	{"tools", tree.Symlink, 0, "lib"},
	{"x", tree.Dir, 0o755, ""},
	{"x/y", tree.File, 0o644, "y"},
	{"d2", tree.File, 0o644, "d2 is now a file"},
	{"script.sh", tree.File, 0o755, "#!/bin/sh\necho hi\n"},
	{"cfg", tree.Dir, 0o700, ""},
	{"cfg/c.ini", tree.File, 0o644, "k=v"},
}

func writeTree(t testing.TB, root string, nodes []tnode) {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		p := filepath.Join(root, filepath.FromSlash(n.path))
		var err error
		switch n.typ {
		case tree.Dir:
			if err = os.Mkdir(p, n.mode); err == nil {
				err = os.Chmod(p, n.mode)
			}
		case tree.File:
			if err = os.WriteFile(p, []byte(n.data), n.mode); err == nil {
				err = os.Chmod(p, n.mode)
			}
		case tree.Symlink:
			err = os.Symlink(n.data, p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Directory modes last (a 0700 dir is fine, but keep writes possible).
}

func scanTree(t testing.TB, root string) []tree.Entry {
	t.Helper()
	es, err := tree.Scan(context.Background(), root, tree.ScanOptions{Hash: true})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

type fixture struct {
	app, backup, staged string
	oldD, newD          [32]byte
	ops                 int
}

// newFixture writes the old tree as the app dir, stages the new tree in
// the backup dir and saves the journal (state staged).
func newFixture(t testing.TB, oldN, newN []tnode) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{app: filepath.Join(base, "app"), backup: filepath.Join(base, "app.backup")}
	f.staged = filepath.Join(f.backup, "staged", "2.0")
	writeTree(t, f.app, oldN)
	writeTree(t, f.staged, newN)
	if err := claim(f.backup, f.app, true); err != nil { // as Prepare's secureDirs does
		t.Fatal(err)
	}
	old, nw := scanTree(t, f.app), scanTree(t, f.staged)
	f.oldD, f.newD = tree.Digest(old), tree.Digest(nw)
	j, err := BuildJournal(f.app, f.backup, "1.0", "2.0", old, nw, f.staged, []string{"app", "--updated"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Save(); err != nil {
		t.Fatal(err)
	}
	f.ops = len(j.Ops)
	return f
}

func (f *fixture) load(t testing.TB) *Journal {
	t.Helper()
	j, err := LoadJournal(f.backup)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (f *fixture) appIs(t testing.TB, want [32]byte, what string) {
	t.Helper()
	if got := tree.Digest(scanTree(t, f.app)); got != want {
		var names []string
		for _, e := range scanTree(t, f.app) {
			names = append(names, e.Path+":"+string(e.Type)+":"+e.Mode.String())
		}
		t.Fatalf("app dir is not the %s tree: %v", what, names)
	}
}

var errCrash = errors.New("simulated crash")

// crashFS counts mutating steps and fails every step from limit on
// (limit < 0: never), like a process killed before that step.
type crashFS struct {
	FS
	limit, n   int
	appDir     string
	touchedApp bool
}

func (c *crashFS) step(paths ...string) error {
	if c.limit >= 0 && c.n >= c.limit {
		return errCrash
	}
	c.n++
	for _, p := range paths {
		if strings.HasPrefix(p, c.appDir+string(filepath.Separator)) {
			c.touchedApp = true
		}
	}
	return nil
}

func (c *crashFS) Rename(o, n string) error {
	if err := c.step(o, n); err != nil {
		return err
	}
	return c.FS.Rename(o, n)
}
func (c *crashFS) Remove(p string) error {
	if err := c.step(p); err != nil {
		return err
	}
	return c.FS.Remove(p)
}
func (c *crashFS) RemoveAll(p string) error {
	if err := c.step(p); err != nil {
		return err
	}
	return c.FS.RemoveAll(p)
}
func (c *crashFS) Mkdir(p string, m fs.FileMode) error {
	if err := c.step(p); err != nil {
		return err
	}
	return c.FS.Mkdir(p, m)
}
func (c *crashFS) MkdirAll(p string, m fs.FileMode) error {
	if err := c.step(p); err != nil {
		return err
	}
	return c.FS.MkdirAll(p, m)
}
func (c *crashFS) OpenFile(p string, flag int, m fs.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE) != 0 {
		if err := c.step(p); err != nil {
			return nil, err
		}
	}
	return c.FS.OpenFile(p, flag, m)
}
func (c *crashFS) Chmod(p string, m fs.FileMode) error {
	if err := c.step(p); err != nil {
		return err
	}
	return c.FS.Chmod(p, m)
}
func (c *crashFS) Symlink(o, n string) error {
	if err := c.step(n); err != nil {
		return err
	}
	return c.FS.Symlink(o, n)
}
func (c *crashFS) SyncDir(p string) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.FS.SyncDir(p)
}

func TestSwapPlain(t *testing.T) {
	f := newFixture(t, oldNodes, newNodes)
	j := f.load(t)
	if err := Swap(context.Background(), j, nil); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.newD, "new")
	j2 := f.load(t)
	if j2.State != JournalSwapped || j2.Done != len(j2.Ops) {
		t.Fatalf("state %s done %d/%d", j2.State, j2.Done, len(j2.Ops))
	}
	// The rollback area holds the old versions of what was replaced.
	if b, err := os.ReadFile(filepath.Join(j.Rollback, "app")); err != nil || string(b) != "old exe v1" {
		t.Fatalf("rollback area: %q %v", b, err)
	}
	// Swap again: nothing to do.
	if err := Swap(context.Background(), j2, nil); err != nil {
		t.Fatal(err)
	}
	if err := Rollback(context.Background(), j2, nil); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.oldD, "old")
	// Resume of a rolled-back journal cleans up everything.
	if _, err := Resume(context.Background(), f.app, f.backup, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{j.Rollback, j.Staged, j.Path(), filepath.Join(f.backup, JournalBackupName)} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s still there after cleanup: %v", p, err)
		}
	}
	if j3, err := Resume(context.Background(), f.app, f.backup, nil); j3 != nil || err != nil {
		t.Fatalf("Resume without journal: %v %v", j3, err)
	}
}

func TestJournalOpsOrder(t *testing.T) {
	f := newFixture(t, oldNodes, newNodes)
	j := f.load(t)
	var got []string
	for _, op := range j.Ops {
		got = append(got, string(op.Kind)+" "+op.Path)
	}
	want := []string{
		"remove x", "remove docs/sub/a.txt", "remove docs/sub", "remove docs/readme.txt", "remove docs", "remove d2/f", "remove d2",
		"mkdir cfg", "mkdir newdir", "mkdir newdir/sub", "mkdir x",
		"file app", "symlink current", "file d2", "file lib/libx.so", "file lib/new.so", "file newdir/sub/file.txt", "file script.sh", "symlink tools", "file x/y",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ops:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// countSteps runs a whole swap through a counting FS.
func countSteps(t *testing.T) int {
	f := newFixture(t, oldNodes, newNodes)
	c := &crashFS{FS: OSFS{}, limit: -1, appDir: f.app}
	if err := Swap(context.Background(), f.load(t), c); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.newD, "new")
	return c.n
}

func TestSwapCrashEveryStepResume(t *testing.T) {
	n := countSteps(t)
	t.Logf("%d mutating steps", n)
	ctx := context.Background()
	for k := 0; k <= n; k++ {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, oldNodes, newNodes)
			c := &crashFS{FS: OSFS{}, limit: k, appDir: f.app}
			err := Swap(ctx, f.load(t), c)
			if k < n && !errors.Is(err, errCrash) {
				t.Fatalf("k=%d: Swap: %v", k, err)
			}
			if k == n && err != nil {
				t.Fatalf("k=%d: Swap: %v", k, err)
			}
			if !c.touchedApp {
				f.appIs(t, f.oldD, "old")
			}
			if k%3 == 1 { // a second crash while resuming
				c2 := &crashFS{FS: OSFS{}, limit: k / 2, appDir: f.app}
				if _, err := Resume(ctx, f.app, f.backup, c2); err != nil && !errors.Is(err, errCrash) {
					t.Fatalf("k=%d: Resume with crash: %v", k, err)
				}
			}
			j, err := Resume(ctx, f.app, f.backup, OSFS{})
			if err != nil {
				t.Fatalf("k=%d: Resume: %v", k, err)
			}
			if j.State != JournalSwapped {
				t.Fatalf("k=%d: state %s", k, j.State)
			}
			f.appIs(t, f.newD, "new")
		})
	}
}

func TestRollbackAfterCrashEveryStep(t *testing.T) {
	n := countSteps(t)
	ctx := context.Background()
	for k := 0; k <= n; k++ {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, oldNodes, newNodes)
			c := &crashFS{FS: OSFS{}, limit: k, appDir: f.app}
			_ = Swap(ctx, f.load(t), c)
			if k%4 == 2 { // crash during the rollback too
				c2 := &crashFS{FS: OSFS{}, limit: k / 2, appDir: f.app}
				if err := Rollback(ctx, f.load(t), c2); err != nil && !errors.Is(err, errCrash) {
					t.Fatalf("k=%d: Rollback with crash: %v", k, err)
				}
				// A fresh process resumes the rollback, not the swap.
				j, err := Resume(ctx, f.app, f.backup, OSFS{})
				if err != nil || j.State != JournalRolledBack {
					t.Fatalf("k=%d: Resume of an interrupted rollback: %v", k, err)
				}
				f.appIs(t, f.oldD, "old")
			}
			j := f.load(t)
			if err := Rollback(ctx, j, OSFS{}); err != nil {
				t.Fatalf("k=%d: Rollback: %v", k, err)
			}
			f.appIs(t, f.oldD, "old")
			if f.load(t).State != JournalRolledBack {
				t.Fatalf("k=%d: not rolled back", k)
			}
			if _, err := Resume(ctx, f.app, f.backup, nil); err != nil {
				t.Fatalf("k=%d: cleanup: %v", k, err)
			}
			f.appIs(t, f.oldD, "old")
		})
	}
}

func TestRollbackConfirmedRefused(t *testing.T) {
	f := newFixture(t, oldNodes, newNodes)
	j := f.load(t)
	if err := Swap(context.Background(), j, nil); err != nil {
		t.Fatal(err)
	}
	if err := Confirm(f.backup); err != nil {
		t.Fatal(err)
	}
	if err := Rollback(context.Background(), f.load(t), nil); !errors.Is(err, ErrJournalState) {
		t.Fatalf("Rollback of a confirmed update: %v", err)
	}
	f.appIs(t, f.newD, "new")
}

func TestSwapStagedMismatch(t *testing.T) {
	f := newFixture(t, oldNodes, newNodes)
	if err := os.WriteFile(filepath.Join(f.staged, "lib", "new.so"), []byte("tampered!!!!!"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Swap(context.Background(), f.load(t), nil)
	if !errors.Is(err, ErrStagedMismatch) {
		t.Fatalf("Swap with a damaged staged file: %v", err)
	}
	if err := Rollback(context.Background(), f.load(t), nil); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.oldD, "old")
}

func corrupt(t *testing.T, p string, how string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	switch how {
	case "torn":
		b = b[:len(b)/2]
	case "flip": // still valid JSON, checksum no longer matches
		b = []byte(strings.Replace(string(b), `"from":"1.0"`, `"from":"1.1"`, 1))
	case "garbage":
		b = []byte("\x00\x00\x00")
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestJournalCorrupt(t *testing.T) {
	ctx := context.Background()
	t.Run("one copy", func(t *testing.T) {
		f := newFixture(t, oldNodes, newNodes)
		corrupt(t, filepath.Join(f.backup, JournalFileName), "flip")
		j := f.load(t)
		if j.From != "1.0" {
			t.Fatal("wrong copy")
		}
		corrupt(t, filepath.Join(f.backup, JournalBackupName), "torn")
		if _, err := LoadJournal(f.backup); !errors.Is(err, ErrJournalCorrupt) {
			t.Fatalf("both copies bad: %v", err)
		}
	})
	t.Run("newest copy wins", func(t *testing.T) {
		f := newFixture(t, oldNodes, newNodes)
		j := f.load(t)
		j.Done = 3
		if err := j.Save(); err != nil {
			t.Fatal(err)
		}
		// Simulate a crash between the two writes: primary one Save behind.
		old, _ := os.ReadFile(filepath.Join(f.backup, JournalBackupName))
		j.Done = 4
		if err := j.Save(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(f.backup, JournalFileName), old, 0o644); err != nil {
			t.Fatal(err)
		}
		if got := f.load(t); got.Done != 4 {
			t.Fatalf("loaded done=%d seq=%d", got.Done, got.Seq)
		}
	})
	for _, how := range []string{"torn", "flip", "garbage"} {
		t.Run("not started "+how, func(t *testing.T) {
			f := newFixture(t, oldNodes, newNodes)
			corrupt(t, filepath.Join(f.backup, JournalFileName), how)
			corrupt(t, filepath.Join(f.backup, JournalBackupName), how)
			_, err := Resume(ctx, f.app, f.backup, nil)
			if !errors.Is(err, ErrJournalCorrupt) {
				t.Fatalf("Resume: %v", err)
			}
			f.appIs(t, f.oldD, "old")
			if err := Confirm(f.backup); !errors.Is(err, ErrJournalCorrupt) {
				t.Fatalf("Confirm: %v", err)
			}
		})
	}
	t.Run("after rollback", func(t *testing.T) {
		f := newFixture(t, oldNodes, newNodes)
		if err := Swap(ctx, f.load(t), nil); err != nil {
			t.Fatal(err)
		}
		if err := Rollback(ctx, f.load(t), nil); err != nil {
			t.Fatal(err)
		}
		corrupt(t, filepath.Join(f.backup, JournalFileName), "garbage")
		corrupt(t, filepath.Join(f.backup, JournalBackupName), "garbage")
		if _, err := Resume(ctx, f.app, f.backup, nil); !errors.Is(err, ErrJournalCorrupt) {
			t.Fatalf("Resume: %v", err)
		}
		f.appIs(t, f.oldD, "old") // not swapped forward again
	})
	n := countSteps(t)
	for _, k := range []int{3, n / 3, n / 2, n - 2} {
		f := newFixture(t, oldNodes, newNodes)
		if err := Swap(ctx, f.load(t), &crashFS{FS: OSFS{}, limit: k, appDir: f.app}); !errors.Is(err, errCrash) {
			t.Fatalf("k=%d: %v", k, err)
		}
		corrupt(t, filepath.Join(f.backup, JournalFileName), "torn")
		corrupt(t, filepath.Join(f.backup, JournalBackupName), "flip")
		j, err := Resume(ctx, f.app, f.backup, nil)
		if err != nil {
			t.Fatalf("k=%d: Resume of a started swap with a corrupt journal: %v", k, err)
		}
		if !j.Recovered || j.State != JournalSwapped {
			t.Fatalf("k=%d: %+v", k, j)
		}
		f.appIs(t, f.newD, "new")
	}
}

func TestBuildJournalRefuses(t *testing.T) {
	f := newFixture(t, oldNodes, newNodes)
	old, nw := scanTree(t, f.app), scanTree(t, f.staged)
	cases := map[string]func() error{
		"staged outside backup": func() error {
			_, err := BuildJournal(f.app, f.backup, "1.0", "2.0", old, nw, f.app, nil, nil)
			return err
		},
		"backup inside app": func() error {
			_, err := BuildJournal(f.app, filepath.Join(f.app, "b"), "1.0", "2.0", old, nw, filepath.Join(f.app, "b", "s"), nil, nil)
			return err
		},
		"relaunch escapes": func() error {
			_, err := BuildJournal(f.app, f.backup, "1.0", "2.0", old, nw, f.staged, []string{"../evil"}, nil)
			return err
		},
		"bad version": func() error {
			_, err := BuildJournal(f.app, f.backup, "../1.0", "2.0", old, nw, f.staged, nil, nil)
			return err
		},
	}
	for name, fn := range cases {
		if fn() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestResumeTimeBudget(t *testing.T) {
	// Guard: the crash loops above must stay fast.
	start := time.Now()
	f := newFixture(t, oldNodes, newNodes)
	if _, err := Resume(context.Background(), f.app, f.backup, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("one swap took %v", d)
	}
}
