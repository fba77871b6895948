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
	"strconv"
	"syscall"
	"testing"

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
	cfg := Config{AppDir: os.Getenv(kill9Env + "_APP"), Servers: []string{os.Getenv(kill9Env + "_SERVER")}, PublicKey: pub, App: "demo"}
	if _, err := (&Updater{Config: cfg, FS: &killFS{FS: OSFS{}, limit: limit}}).Install(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestHazardKill9DuringInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the kill -9 sweep")
	}
	ctx := context.Background()
	prepared := func(t *testing.T) *ckSetup {
		s := ckNewSetup(t, ckVersions[0])
		if _, err := (&Updater{Config: *s.cfg}).Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s0 := prepared(t)
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
				s := prepared(t)
				oldD := ckDigest(t, s.cfg.AppDir)
				newD := ckDigest(t, s.repo.trees[ckVersionsLast()])
				child := func(at int) ([]byte, error, bool) {
					cmd := exec.Command(os.Args[0], "-test.run=^TestHazardKill9Child$", "-test.count=1")
					cmd.Env = append(os.Environ(), kill9Env+"="+strconv.Itoa(at), kill9Env+"_APP="+s.cfg.AppDir,
						kill9Env+"_SERVER="+s.cfg.Servers[0], kill9Env+"_PUB="+string(s.repo.pubFile))
					out, err := cmd.CombinedOutput()
					var ee *exec.ExitError
					killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() &&
						ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
					return out, err, killed
				}
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
						t.Fatalf("k=%d: app directory after resuming is not exactly the new tree", k)
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

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
