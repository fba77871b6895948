package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

func ckVersionsLast() string { return ckVersions[len(ckVersions)-1] }

// TestUpdateEndToEnd: a published repository served over HTTP, the oldest
// version installed; Prepare downloads exactly the cheapest chain and stages
// the new version in the backup directory; Install swaps it in. The app
// directory ends byte for byte the published tree, with no state in it.
func TestUpdateEndToEnd(t *testing.T) {
	s := ckNewSetup(t, ckVersions[0])
	u := &Updater{Config: *s.cfg}
	ctx := context.Background()
	p, err := u.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := ckVersionsLast()
	if p.Check.UpToDate || p.Check.Target != last || p.Stage == nil || p.Stage.Route != "patches" || p.Stage.Fallback != "" {
		t.Fatalf("prepare: %+v %+v", p.Check, p.Stage)
	}
	// Exactly the planned chain was fetched, and nothing else.
	var want []string
	for _, st := range p.Check.Route.Steps {
		want = append(want, "/"+st.Artifact.Path)
	}
	var got []string
	for _, r := range s.srv.requests() {
		if !strings.HasPrefix(r, "/manifest") {
			got = append(got, r)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("fetched %v, planned %v", got, want)
	}
	// Nothing changed in the app directory yet.
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersions[0]]) {
		t.Fatal("Prepare changed the app directory")
	}
	in, err := u.Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Confirmed || in.RolledBack {
		t.Fatalf("install: %+v", in)
	}
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[last]) {
		t.Fatal("app directory is not the published tree")
	}
	st, err := LoadState(s.cfg.AppDir + BackupSuffix)
	if err != nil || st.Installed != last {
		t.Fatalf("state: %+v %v", st, err)
	}
	// Nothing pending, nothing more to do.
	if in, err := u.Install(ctx); err != nil || in.Journal != nil {
		t.Errorf("second Install: %+v %v", in, err)
	}
	p, err = u.Prepare(ctx)
	if err != nil || !p.Check.UpToDate {
		t.Errorf("after update: %+v %v", p, err)
	}
}

// TestUpdateFallback: the mirror sends damaged patches, so the patch chain
// fails its SHA-256 check; the full archive is used instead, the reason is
// given, and the result is still exact.
func TestUpdateFallback(t *testing.T) {
	s := ckNewSetup(t, ckVersions[0])
	patches, _ := filepath.Glob(filepath.Join(s.serve, "patches", "*"))
	if len(patches) == 0 {
		t.Fatal("no patches published")
	}
	for _, p := range patches {
		rpFlip(t, p)
	}
	cfg := *s.cfg
	cfg.Current = ckVersions[0] // the app says which version it is
	u := &Updater{Config: cfg}
	p, err := u.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Stage.Route != "archive" || !strings.Contains(p.Stage.Fallback, "do not match the manifest's SHA-256") {
		t.Fatalf("expected a fallback to the archive: %+v", p.Stage)
	}
	t.Logf("fallback because: %s", p.Stage.Fallback)
	if _, err := u.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
		t.Fatal("app directory is not the published tree")
	}
}

// TestUpdateUnknownVersion: a locally modified app that does not say its
// version matches no release, so only the full archive applies; Prepare
// must still build a journal (it used to fail: the unknown version "" was
// refused as the rollback area's name), Install gives the exact new tree,
// and a rollback gives back exactly the modified tree.
func TestUpdateUnknownVersion(t *testing.T) {
	for _, rollback := range []bool{false, true} {
		t.Run(fmt.Sprint("rollback=", rollback), func(t *testing.T) {
			ctx := context.Background()
			s := ckNewSetup(t, ckVersions[0])
			if err := os.WriteFile(filepath.Join(s.cfg.AppDir, "README.md"), []byte("edited by the user\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			oldD := ckDigest(t, s.cfg.AppDir)
			u := &Updater{Config: *s.cfg}
			p, err := u.Prepare(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if p.Check.Current != "" || p.Stage.Route != "archive" || p.Journal.From != "" {
				t.Fatalf("current %q, route %s, journal from %q", p.Check.Current, p.Stage.Route, p.Journal.From)
			}
			if rollback {
				if _, err := u.RollbackNow(ctx); err != nil {
					t.Fatal(err)
				}
				if ckDigest(t, s.cfg.AppDir) != oldD {
					t.Fatal("rollback did not restore the modified tree exactly")
				}
				return
			}
			if in, err := u.Install(ctx); err != nil || !in.Confirmed {
				t.Fatalf("Install: %+v %v", in, err)
			}
			if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
				t.Fatal("app directory is not the published tree")
			}
		})
	}
}

// TestUpdateRollback: the relaunched new version exits without confirming;
// the old files come back and the version is marked bad, so the next check
// does not offer it again. A version that confirms is kept.
func TestUpdateRollback(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh to run the relaunched app")
	}
	s := ckNewSetup(t, ckVersions[0])
	cfg := *s.cfg
	cfg.Relaunch = []string{"bin/app"} // the published bin/app is not a runnable program: it fails at once
	u := &Updater{Config: cfg, ConfirmTimeout: 5 * time.Second}
	ctx := context.Background()
	if _, err := u.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := u.Install(ctx)
	if !errors.Is(err, ErrRolledBack) || !in.RolledBack || in.Relaunched {
		t.Fatalf("install of a failing version: %+v %v (neither version can start: nothing runs)", in, err)
	}
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersions[0]]) {
		t.Fatal("rollback did not restore the old tree")
	}
	st, _ := LoadState(cfg.AppDir + BackupSuffix)
	if !st.IsBad(ckVersionsLast()) {
		t.Fatalf("state after rollback: %+v", st)
	}
	// The next update skips the bad version; without a relaunch command the
	// swap is final at once.
	cfg.Relaunch = nil
	u.Config = cfg
	p, err := u.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Check.Target == ckVersionsLast() || p.Check.UpToDate {
		t.Fatalf("the bad version is offered again, or nothing is: %+v", p.Check)
	}
	if in, err = u.Install(ctx); err != nil || !in.Confirmed || in.Relaunched {
		t.Fatalf("install of %s: %+v %v (no relaunch command: nothing started)", p.Check.Target, in, err)
	}
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[p.Check.Target]) {
		t.Fatal("app directory is not the published tree")
	}
}

// TestPrepareInBackground: the background check reports on its channel; a
// cancelled one reports the context error and changes nothing.
func TestPrepareInBackground(t *testing.T) {
	s := ckNewSetup(t, ckVersions[0])
	u := &Updater{Config: *s.cfg}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := <-u.PrepareInBackground(ctx)
	if !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("cancelled background prepare: %+v", r)
	}
	r = <-u.PrepareInBackground(context.Background())
	if r.Err != nil || r.Prepared.Journal == nil {
		t.Fatalf("background prepare: %+v", r)
	}
	if in, err := u.Resume(context.Background()); err != nil || !in.Confirmed {
		t.Fatalf("resume: %+v %v", in, err)
	}
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
		t.Fatal("app directory is not the published tree")
	}
}

// TestUpdateRelaunchLimit (no update loop): a new version whose start
// takes the waiting updater down with it — here the updater's context ends
// while it waits, as when it is killed or the machine crashes — leaves the
// swap unconfirmed. Each later Install starts it again, counting the starts
// in the journal; after MaxRelaunches starts without a confirmation the
// next Install rolls back, marks the version bad and does not start it.
func TestUpdateRelaunchLimit(t *testing.T) {
	starts, s := hangingApp(t, "%s", 5)
	repo := s.repo
	cfg := *s.cfg
	u := &Updater{Config: cfg, ConfirmTimeout: time.Minute}
	if _, err := u.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= MaxRelaunches; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := u.Install(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Install %d: %v, want the updater stopped while waiting", i, err)
		}
		j, err := LoadJournal(cfg.AppDir + BackupSuffix)
		if err != nil || j.State != JournalSwapped || j.Relaunches != i {
			t.Fatalf("after Install %d: journal %+v %v", i, j, err)
		}
	}
	in, err := u.Install(context.Background())
	if !errors.Is(err, ErrRolledBack) || !in.RolledBack || !in.Relaunched {
		t.Fatalf("Install after %d unconfirmed starts: %+v %v", MaxRelaunches, in, err)
	}
	t.Logf("Install: %v", err)
	if ckDigest(t, cfg.AppDir) != ckDigest(t, repo.trees["1.0.0"]) {
		t.Fatal("app directory is not exactly the old version")
	}
	if st, _ := LoadState(cfg.AppDir + BackupSuffix); !st.IsBad("2.0.0") {
		t.Fatalf("2.0.0 not marked bad: %+v", st)
	}
	// The new version was started MaxRelaunches times, then the old one
	// once (the rollback relaunches it).
	if got := waitLines(t, starts, MaxRelaunches+1); len(got) != MaxRelaunches+1 || slices.Index(got, "1.0.0") != MaxRelaunches {
		t.Fatalf("starts %q, want 2.0.0 ×%d then 1.0.0", got, MaxRelaunches)
	}
	// No loop: the bad version is not offered again.
	p, err := u.Prepare(context.Background())
	if err != nil || !p.Check.UpToDate {
		t.Fatalf("Prepare after the rollback: %+v %v", p, err)
	}
}

// hangingApp publishes versions 1.0.0 and 2.0.0 of an app whose bin/app
// appends a line (format, with %s the version) to a log file and then
// sleeps for sleep seconds without confirming; 1.0.0 is installed and
// bin/app is the relaunch command. It returns the log file's path.
func hangingApp(t *testing.T, format string, sleep int) (string, *ckSetup) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh to run the relaunched app")
	}
	log := filepath.Join(t.TempDir(), "log")
	t.Setenv("DELTAUP_TEST_LOG", log)
	repo := ckEmptyRepo(t)
	for i, v := range []string{"1.0.0", "2.0.0"} {
		dir := t.TempDir()
		line := strings.ReplaceAll(format, "%s", v)
		ckWriteFiles(t, dir, map[string]string{
			"bin/app":  fmt.Sprintf("x:#!/bin/sh\necho %s >> \"$DELTAUP_TEST_LOG\"\nexec sleep %d >/dev/null 2>&1 </dev/null\n", line, sleep),
			"data.txt": strings.Repeat(fmt.Sprint(i), 100),
		})
		repo.trees[v] = dir
		repo.publish(t, v, dir)
	}
	s := ckSetupFor(t, repo, "1.0.0")
	s.cfg.Relaunch = []string{"bin/app"}
	return log, s
}

// waitLines waits up to 5 s for the file to hold n lines (processes
// started in the background write them) and returns its lines.
func waitLines(t *testing.T, name string, n int) []string {
	t.Helper()
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(name)
		if lines = strings.Fields(string(b)); len(lines) >= n {
			break
		}
	}
	return lines
}

// TestUpdateWindowsModes runs the client with the Windows rules for
// permission bits (tree.DefaultModes = ModesPortable: Windows reports 0666
// or 0444 for every file and 0777 for directories, whatever was set) on an
// app directory whose modes look like that. A repository published with
// PortableModes updates through the patch route to exactly the release
// (as the portable view sees it); one published with exact modes (an
// executable bit) is refused up front with ErrNotPortable and changes
// nothing.
func TestUpdateWindowsModes(t *testing.T) {
	saved := tree.DefaultModes
	tree.DefaultModes = tree.ModesPortable
	t.Cleanup(func() { tree.DefaultModes = saved })
	windowsLike := func(t *testing.T, dir string) {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink != 0 || p == dir {
				return err
			}
			if d.IsDir() {
				return os.Chmod(p, 0o777)
			}
			return os.Chmod(p, 0o666)
		})
	}
	for _, portable := range []bool{true, false} {
		t.Run(fmt.Sprint("portable=", portable), func(t *testing.T) {
			repo := ckEmptyRepo(t)
			repo.portable = portable
			for i, v := range ckVersions {
				repo.trees[v] = ckTree(t, i, repo.pubFile) // bin/app is 0755
				repo.publish(t, v, repo.trees[v])
			}
			s := ckSetupFor(t, repo, ckVersions[0])
			windowsLike(t, s.cfg.AppDir)
			before := hzSnapshot(t, s.cfg.AppDir)
			u := &Updater{Config: *s.cfg}
			ctx := context.Background()
			p, err := u.Prepare(ctx)
			if !portable {
				if !errors.Is(err, ErrNotPortable) {
					t.Fatalf("Prepare of a release with exec bits under Windows rules: %v, want ErrNotPortable", err)
				}
				t.Logf("Prepare: %v", err)
				if hzSnapshot(t, s.cfg.AppDir) != before {
					t.Fatal("a refused Prepare changed the app directory")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Check.Current != ckVersions[0] || p.Stage.Route != "patches" {
				t.Fatalf("detected %q, route %s (%s): want the installed version found and the patch route", p.Check.Current, p.Stage.Route, p.Stage.Fallback)
			}
			if in, err := u.Install(ctx); err != nil || !in.Confirmed {
				t.Fatalf("Install: %+v %v", in, err)
			}
			m := repo.manifest(t)
			rel, _ := m.Release(ckVersionsLast())
			if ckDigest(t, s.cfg.AppDir) != rel.TreeDigest {
				t.Fatal("the app directory, seen with portable modes, is not the release")
			}
			// Detection after the update, with the files as Windows would report them.
			windowsLike(t, s.cfg.AppDir)
			if v, err := DetectVersion(ctx, s.cfg.AppDir, m, nil); err != nil || v != ckVersionsLast() {
				t.Fatalf("DetectVersion after the update: %q %v", v, err)
			}
		})
	}
}
