//go:build unix

package apply

// A real kill -9 at every step of Install: a child process (this test
// binary) runs Updater.Install on a prepared update and sends itself
// SIGKILL just before its k-th file-system step — each rename, removal,
// directory creation, chmod, symlink and directory sync, and each open,
// write, sync and close of a file it copies, so some kills land in the
// middle of writing a file. The process really dies: its lock is released
// by the kernel, its files stay as they are, nothing it deferred runs.
// Then a fresh Install (or RollbackNow) in this process must end in
// exactly the new (or exactly the old) tree.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// killFS counts the steps of an FS and kills the process before step
// limit (limit < 0: only count).
type killFS struct {
	FS
	limit, n int
}

func (k *killFS) step() {
	if k.limit >= 0 && k.n >= k.limit {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns: the signal is on its way
	}
	k.n++
}

func (k *killFS) Rename(o, n string) error { k.step(); return k.FS.Rename(o, n) }
func (k *killFS) Remove(p string) error    { k.step(); return k.FS.Remove(p) }
func (k *killFS) RemoveAll(p string) error { k.step(); return k.FS.RemoveAll(p) }
func (k *killFS) Mkdir(p string, m fs.FileMode) error {
	k.step()
	return k.FS.Mkdir(p, m)
}
func (k *killFS) MkdirAll(p string, m fs.FileMode) error {
	k.step()
	return k.FS.MkdirAll(p, m)
}
func (k *killFS) Chmod(p string, m fs.FileMode) error { k.step(); return k.FS.Chmod(p, m) }
func (k *killFS) Symlink(o, n string) error           { k.step(); return k.FS.Symlink(o, n) }
func (k *killFS) SyncDir(p string) error              { k.step(); return k.FS.SyncDir(p) }
func (k *killFS) OpenFile(p string, flag int, m fs.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE) == 0 {
		return k.FS.OpenFile(p, flag, m)
	}
	k.step()
	f, err := k.FS.OpenFile(p, flag, m)
	if err != nil {
		return nil, err
	}
	return &killFile{File: f, k: k}, nil
}

// killFile makes each write, sync and close of a written file a step; the
// writes are split in halves so a kill can land inside one.
type killFile struct {
	File
	k *killFS
}

func (f *killFile) Write(p []byte) (int, error) {
	h := len(p) / 2
	f.k.step()
	n, err := f.File.Write(p[:h])
	if err != nil {
		return n, err
	}
	f.k.step()
	m, err := f.File.Write(p[h:])
	return n + m, err
}
func (f *killFile) Sync() error  { f.k.step(); return f.File.Sync() }
func (f *killFile) Close() error { f.k.step(); return f.File.Close() }

const kill9Env = "DELTAUP_TEST_KILL9_AT"

// TestHazardKill9Child is the child process of TestHazardKill9DuringInstall.
func TestHazardKill9Child(t *testing.T) {
	at := os.Getenv(kill9Env)
	if at == "" {
		t.Skip("helper process of TestHazardKill9DuringInstall")
	}
	limit, err := strconv.Atoi(at)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := manifest.ParsePublicKey([]byte(os.Getenv(kill9Env + "_PUB")))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{AppDir: os.Getenv(kill9Env + "_APP"), Servers: []string{os.Getenv(kill9Env + "_SERVER")}, PublicKey: pub, App: "demo",
		Current: os.Getenv(kill9Env + "_CURRENT")}
	if os.Getenv(kill9Env+"_PHASE") == "prepare" {
		ev := &prepareEvents{limit: limit}
		if _, err := (&Updater{Config: cfg, Progress: ev.report}).Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := (&Updater{Config: cfg, FS: &killFS{FS: OSFS{}, limit: limit}}).Install(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// prepareEvents turns Prepare's progress reports into step boundaries:
// the start (0 bytes) and the end (all bytes) of each manifest and
// signature fetch, each artifact download and each verification, counted
// once each (reports in between are time-throttled, so not deterministic).
// With limit >= 0 it kills the process at boundary number limit.
type prepareEvents struct {
	limit, n int
	last     Progress
	names    []string
}

func (e *prepareEvents) report(p Progress) {
	if p.Bytes != 0 && p.Bytes != p.Total {
		return
	}
	if p.Phase == e.last.Phase && p.Path == e.last.Path && p.Bytes == e.last.Bytes {
		return
	}
	e.last = p
	if e.limit >= 0 && e.n >= e.limit {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	e.n++
	e.names = append(e.names, fmt.Sprintf("%s %s %d/%d", p.Phase, p.Path, p.Bytes, p.Total))
}

// kill9Child runs TestHazardKill9Child on s's app directory: phase
// "install" or "prepare", killed at step at. It returns the output, the
// error and whether SIGKILL ended the process.
func kill9Child(s *ckSetup, phase string, at int) ([]byte, error, bool) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHazardKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), kill9Env+"="+strconv.Itoa(at), kill9Env+"_PHASE="+phase,
		kill9Env+"_APP="+s.cfg.AppDir, kill9Env+"_SERVER="+s.cfg.Servers[0],
		kill9Env+"_PUB="+string(s.repo.pubFile), kill9Env+"_CURRENT="+s.cfg.Current)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() &&
		ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	return out, err, killed
}

func TestHazardKill9DuringInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the kill -9 sweep")
	}
	ctx := context.Background()
	s0 := k9PreparedWithUserFiles(t)
	count := &killFS{FS: OSFS{}, limit: -1}
	if in, err := (&Updater{Config: *s0.cfg, FS: count}).Install(ctx); err != nil || !in.Confirmed {
		t.Fatalf("counting Install: %+v %v", in, err)
	}
	n := count.n
	t.Logf("Install makes %d file-system steps; killing the process before each of them", n)
	var killed, mixedSeen int
	results := make(chan [2]int, n+1)
	t.Run("k", func(t *testing.T) {
		for k := 0; k <= n; k++ {
			t.Run(fmt.Sprint(k), func(t *testing.T) {
				t.Parallel()
				s := k9PreparedWithUserFiles(t)
				oldD := ckDigest(t, s.cfg.AppDir)
				newD := k9NewWithUserFiles(t, s)
				child := func(at int) ([]byte, error, bool) { return kill9Child(s, "install", at) }
				out, err, wasKilled := child(k)
				switch {
				case k < n && !wasKilled:
					t.Fatalf("k=%d: child not killed (%v):\n%s", k, err, out)
				case k == n && err != nil:
					t.Fatalf("k=%d: child without a kill failed: %v\n%s", k, err, out)
				}
				d := ckDigest(t, s.cfg.AppDir)
				mixed := d != oldD && d != newD
				if k == n && d != newD {
					t.Fatalf("k=%d: completed Install did not leave the new tree", k)
				}
				if mixed {
					// Legal only while the journal records an unfinished swap.
					j, err := LoadJournal(s.cfg.AppDir + BackupSuffix)
					if err != nil || (j.State != JournalSwapping && j.State != JournalStaged && j.State != JournalRollingBack) {
						t.Fatalf("k=%d: app directory is a mix of old and new with journal %+v (%v)", k, j, err)
					}
				}
				u := &Updater{Config: *s.cfg}
				if k%2 == 1 {
					in, err := u.RollbackNow(ctx)
					if err != nil {
						// Only a confirmed (finished) update may refuse.
						if d != newD {
							t.Fatalf("k=%d: RollbackNow after kill -9: %v", k, err)
						}
					} else {
						if !in.RolledBack {
							t.Fatalf("k=%d: RollbackNow after kill -9: %+v", k, in)
						}
						if ckDigest(t, s.cfg.AppDir) != oldD {
							t.Fatalf("k=%d: app directory after rollback is not exactly the old tree", k)
						}
					}
				} else {
					if k%4 == 2 {
						// Kill the resuming process too, a few steps in.
						if out, err, killed := child(k%7 + 1); err != nil && !killed {
							t.Fatalf("k=%d: second child: %v\n%s", k, err, out)
						}
					}
					if in, err := u.Install(ctx); err != nil || !(in.Confirmed || in.Journal == nil) {
						t.Fatalf("k=%d: Install after kill -9: %+v %v", k, in, err)
					}
					if ckDigest(t, s.cfg.AppDir) != newD {
						t.Fatalf("k=%d: app directory after resuming is not exactly the new tree plus the user's file", k)
					}
					// The user's file the new release needed the path of is kept.
					moved, _ := filepath.Glob(filepath.Join(s.cfg.AppDir+BackupSuffix, "displaced", "*", "data", "v2.txt"))
					if len(moved) != 1 {
						t.Fatalf("k=%d: the displaced user's file: %v", k, moved)
					}
					if b, err := os.ReadFile(moved[0]); err != nil || string(b) != k9UserFiles["data/v2.txt"] {
						t.Fatalf("k=%d: the displaced user's file: %q %v", k, b, err)
					}
				}
				m := 0
				if mixed {
					m = 1
				}
				results <- [2]int{btoi(wasKilled), m}
			})
		}
	})
	close(results)
	for r := range results {
		killed += r[0]
		mixedSeen += r[1]
	}
	t.Logf("%d real kill -9 points; %d left a half-swapped app directory that the journal finished or undid", killed, mixedSeen)
}

// k9UserFiles are files of the user's in the app directory during the
// kill -9 sweep: one beside the release (it stays), one at a path the new
// release adds (it is displaced into the backup directory, and put back by
// a rollback).
var k9UserFiles = map[string]string{"settings.ini": "theme=dark\n", "data/v2.txt": "the user's own notes\n"}

// k9PreparedWithUserFiles is hzPreparedSetup with k9UserFiles in the app
// directory before Prepare.
func k9PreparedWithUserFiles(t *testing.T) *ckSetup {
	t.Helper()
	s := ckNewSetup(t, ckVersions[0])
	ckWriteFiles(t, s.cfg.AppDir, k9UserFiles)
	if _, err := (&Updater{Config: *s.cfg}).Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// k9NewWithUserFiles is the digest of the new release plus the user's
// file that stays in place (the other one is displaced).
func k9NewWithUserFiles(t *testing.T, s *ckSetup) [32]byte {
	t.Helper()
	d := filepath.Join(t.TempDir(), "want")
	if out, err := exec.Command("cp", "-a", s.repo.trees[ckVersionsLast()], d).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	ckWriteFiles(t, d, map[string]string{"settings.ini": k9UserFiles["settings.ini"]})
	return ckDigest(t, d)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestHazardKill9DuringPrepare: a real kill -9 at every step boundary of
// Prepare that its progress reports mark — before and after each document
// fetch, each artifact download and each verification — on the patch
// route, and on a route whose patch fails (a user-edited file) and falls
// back to the archive. After each kill the app directory is exactly the
// old tree and no journal exists; a fresh Prepare never downloads again
// an artifact already complete on disk, and Install then gives exactly
// the new tree.
func TestHazardKill9DuringPrepare(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the kill -9 sweep")
	}
	ctx := context.Background()
	for _, scenario := range []string{"patches", "two hops", "archive"} {
		route := scenario
		if scenario == "two hops" {
			route = "patches"
		}
		t.Run(scenario, func(t *testing.T) {
			setup := func(t *testing.T) (*ckSetup, *ckServer) {
				patchesFrom := 0
				if scenario == "two hops" {
					patchesFrom = 1
				}
				s := ckSetupFor(t, ckSharedRepoPatches(t, patchesFrom), ckVersions[0])
				if route == "archive" {
					if err := os.WriteFile(filepath.Join(s.cfg.AppDir, "README.md"), []byte("edited by the user\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					s.cfg.Current = ckVersions[0]
				}
				return s, s.srv
			}
			s0, _ := setup(t)
			count := &prepareEvents{limit: -1}
			p, err := (&Updater{Config: *s0.cfg, Progress: count.report}).Prepare(ctx)
			if err != nil || p.Stage.Route != route {
				t.Fatalf("counting Prepare: %+v %v", p, err)
			}
			n := count.n
			if scenario == "two hops" && len(p.Check.Route.Steps) != 2 {
				t.Fatalf("route %+v, want two hops", p.Check.Route)
			}
			t.Logf("%s: %d step boundaries: %q", scenario, n, count.names)
			for k := 0; k <= n; k++ {
				t.Run(fmt.Sprint(k), func(t *testing.T) {
					t.Parallel()
					s, srv := setup(t)
					oldD := ckDigest(t, s.cfg.AppDir)
					out, err, killed := kill9Child(s, "prepare", k)
					switch {
					case k < n && !killed:
						t.Fatalf("k=%d: child not killed (%v):\n%s", k, err, out)
					case k == n && err != nil:
						t.Fatalf("k=%d: child without a kill failed: %v\n%s", k, err, out)
					}
					if ckDigest(t, s.cfg.AppDir) != oldD {
						t.Fatalf("k=%d: Prepare killed: the app directory changed", k)
					}
					backup := s.cfg.AppDir + BackupSuffix
					if _, err := LoadJournal(backup); k < n && !errors.Is(err, fs.ErrNotExist) {
						t.Fatalf("k=%d: a killed Prepare left a journal (%v)", k, err)
					}
					// Artifacts complete on disk must not be fetched again.
					done, _ := os.ReadDir(filepath.Join(backup, downloadsDir))
					before := map[string]int{}
					for _, e := range done {
						before[e.Name()] = srv.count("/" + e.Name())
					}
					u := &Updater{Config: *s.cfg}
					if k < n {
						p, err := u.Prepare(ctx)
						if err != nil || p.Stage.Route != route {
							t.Fatalf("k=%d: Prepare after kill -9: %+v %v", k, p, err)
						}
					}
					for _, e := range done {
						if strings.HasSuffix(e.Name(), PartSuffix) || strings.HasSuffix(e.Name(), SidecarSuffix) || strings.HasSuffix(e.Name(), ".tmp") {
							continue
						}
						if after := srv.count("/" + e.Name()); after != before[e.Name()] {
							t.Errorf("k=%d: %s was complete on disk but fetched again", k, e.Name())
						}
					}
					if in, err := u.Install(ctx); err != nil || !in.Confirmed {
						t.Fatalf("k=%d: Install: %+v %v", k, in, err)
					}
					if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
						t.Fatalf("k=%d: app directory is not exactly the new tree", k)
					}
				})
			}
		})
	}
}

// TestHazardHungNewVersionStopped: the new version starts and hangs
// without confirming. When ConfirmTimeout passes, Install stops that
// process (it would otherwise run on beside the old version, and on
// Windows hold its files), rolls back and marks the version bad.
func TestHazardHungNewVersionStopped(t *testing.T) {
	pids, s := hangingApp(t, "$$", 30)
	repo := s.repo
	cfg := *s.cfg
	u := &Updater{Config: cfg, ConfirmTimeout: 500 * time.Millisecond}
	ctx := context.Background()
	if _, err := u.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := u.Install(ctx)
	if !errors.Is(err, ErrRolledBack) || !in.RolledBack {
		t.Fatalf("Install of a hanging version: %+v %v", in, err)
	}
	ps := waitLines(t, pids, 2)
	if len(ps) != 2 {
		t.Fatalf("started processes %q, want the new version then the old one", ps)
	}
	for i, p := range ps {
		pid, _ := strconv.Atoi(p)
		alive := syscall.Kill(pid, 0) == nil
		if i == 0 && alive {
			t.Errorf("the hung new version (pid %d) still runs after the rollback", pid)
		}
		if i == 1 {
			if !alive {
				t.Errorf("the old version (pid %d) was not left running", pid)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if ckDigest(t, cfg.AppDir) != ckDigest(t, repo.trees["1.0.0"]) {
		t.Fatal("app directory is not exactly the old version")
	}
}
