//go:build unix

package apply

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// otherUID is the less privileged user the root-only cases give files to.
const otherUID = 65534

// trRefused checks the aftermath of a refused operation: the error's
// class, the app directory exactly the old tree, no journal, and the
// victim directory (where a planted link points) byte for byte the same.
func trRefused(t *testing.T, s *ckSetup, err error, want error, victim, before string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	t.Logf("refused: %v", err)
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersions[0]]) {
		t.Fatal("the app directory changed")
	}
	if victim != "" {
		if after := hzSnapshot(t, victim); after != before {
			t.Fatalf("the victim directory changed:\n%s", hzDiff(before, after))
		}
	}
}

// trOps runs each entry point that takes the backup directory and returns
// their errors by name.
func trOps(s *ckSetup) map[string]error {
	ctx := context.Background()
	u := &Updater{Config: *s.cfg}
	out := map[string]error{}
	_, out["Prepare"] = u.Prepare(ctx)
	_, out["Install"] = u.Install(ctx)
	_, out["RollbackNow"] = u.RollbackNow(ctx)
	cfg := *s.cfg
	_, out["Check"] = Check(ctx, &cfg, s.fetcher())
	return out
}

// TestHazardBackupDirTrust (issue 14, items 1 and 2): a backup directory,
// or an entry in it, that the updater did not make its own is refused by
// every entry point (Prepare, Install, RollbackNow, Check), and nothing is
// written through it.
func TestHazardBackupDirTrust(t *testing.T) {
	root := os.Geteuid() == 0
	cases := []struct {
		name     string
		rootOnly bool
		// plant prepares the hazard; victim is a directory or file a link
		// points to ("" if none).
		plant func(t *testing.T, backup, victim string)
		want  error
		// lenient: entry points that may fail otherwise (they do not read
		// the planted entry), e.g. "nothing to roll back".
		lenient map[string]bool
	}{
		{"backup dir is a link", false, func(t *testing.T, backup, victim string) {
			must(t, os.Symlink(victim, backup))
		}, ErrUnsafeBackupDir, nil},
		{"backup dir writable by others", false, func(t *testing.T, backup, _ string) {
			must(t, os.Mkdir(backup, 0o700))
			must(t, os.Chmod(backup, 0o777))
		}, ErrUnsafeBackupDir, nil},
		{"backup dir writable by group", false, func(t *testing.T, backup, _ string) {
			must(t, os.Mkdir(backup, 0o700))
			must(t, os.Chmod(backup, 0o770))
		}, ErrUnsafeBackupDir, nil},
		{"backup dir and bin owned by another user", true, func(t *testing.T, backup, victim string) {
			// The attack of item 1: a local user pre-creates the backup
			// directory and bin/deltaup, a script root would run.
			must(t, os.MkdirAll(filepath.Join(backup, "bin"), 0o755))
			script := "#!/bin/sh\ntouch " + filepath.Join(victim, "pwned") + "\n"
			must(t, os.WriteFile(filepath.Join(backup, "bin", "deltaup"), []byte(script), 0o755))
			for _, p := range []string{backup, filepath.Join(backup, "bin"), filepath.Join(backup, "bin", "deltaup")} {
				must(t, os.Lchown(p, otherUID, otherUID))
			}
		}, ErrUnsafeBackupDir, nil},
		{"lock is a link to a file", false, func(t *testing.T, backup, victim string) {
			must(t, os.Mkdir(backup, 0o700))
			must(t, os.Symlink(filepath.Join(victim, "sentinel.txt"), filepath.Join(backup, LockFileName)))
		}, ErrUnsafeBackupDir, nil},
		{"state.json is a link to a file", false, func(t *testing.T, backup, victim string) {
			must(t, os.Mkdir(backup, 0o700))
			must(t, os.Symlink(filepath.Join(victim, "sentinel.txt"), filepath.Join(backup, StateFileName)))
		}, ErrUnsafeBackupDir, map[string]bool{"RollbackNow": true}},
		{"claim file is a link", false, func(t *testing.T, backup, victim string) {
			must(t, os.Mkdir(backup, 0o700))
			must(t, os.Symlink(filepath.Join(victim, "sentinel.txt"), filepath.Join(backup, ClaimFileName)))
		}, ErrUnsafeBackupDir, nil},
		{"backup dir serves another app", false, func(t *testing.T, backup, victim string) {
			must(t, os.Mkdir(backup, 0o700))
			must(t, os.WriteFile(filepath.Join(backup, ClaimFileName), []byte(victim+"\n"), 0o600))
		}, ErrUnsafeBackupDir, nil},
		{"claim file is not ours", false, func(t *testing.T, backup, _ string) {
			must(t, os.Mkdir(backup, 0o700))
			must(t, os.WriteFile(filepath.Join(backup, ClaimFileName), []byte("relative/path\n"), 0o600))
		}, ErrUnsafeBackupDir, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rootOnly && !root {
				t.Skip("giving a file to another user needs root (CI runs the tests as root)")
			}
			s := ckNewSetup(t, ckVersions[0])
			backup := trBackup(s)
			victim := hzVictim(t)
			tc.plant(t, backup, victim)
			before := hzSnapshot(t, victim)
			// Prepare and Check use every file of the backup directory: they
			// refuse. The others may find nothing to do (no journal, say),
			// but none of them writes through the hazard.
			for op, err := range trOps(s) {
				t.Run(op, func(t *testing.T) {
					want := tc.want
					if op != "Prepare" && err == nil || tc.lenient[op] {
						want = err
					}
					trRefused(t, s, err, want, victim, before)
				})
			}
			if _, err := os.Stat(filepath.Join(victim, "pwned")); err == nil {
				t.Fatal("the planted bin/deltaup ran")
			}
		})
	}
}

// TestHazardJournalLinks: the journal copies planted as links are refused
// (never followed, never acted on).
func TestHazardJournalLinks(t *testing.T) {
	for _, name := range []string{JournalFileName, JournalBackupName} {
		t.Run(name, func(t *testing.T) {
			s := ckNewSetup(t, ckVersions[0])
			backup := trBackup(s)
			must(t, os.Mkdir(backup, 0o700))
			victim := hzVictim(t)
			must(t, os.Symlink(filepath.Join(victim, "need_update.json.go"), filepath.Join(backup, name)))
			before := hzSnapshot(t, victim)
			u := &Updater{Config: *s.cfg}
			_, err := u.Install(context.Background())
			trRefused(t, s, err, ErrUnsafeBackupDir, victim, before)
			_, err = u.Prepare(context.Background())
			trRefused(t, s, err, ErrPending, victim, before)
		})
	}
}

// TestHazardBinDirTrust: the directory the updater copies itself to before
// re-executing (backup/bin) must be a real directory of its own: a link to
// a directory elsewhere, or a bin directory another user owns, is refused
// and nothing is written there or run from there.
func TestHazardBinDirTrust(t *testing.T) {
	cases := []struct {
		name     string
		rootOnly bool
		plant    func(t *testing.T, bin, victim string)
	}{
		{"bin is a link to a directory", false, func(t *testing.T, bin, victim string) {
			must(t, os.Symlink(victim, bin))
		}},
		{"bin writable by others", false, func(t *testing.T, bin, _ string) {
			must(t, os.Mkdir(bin, 0o700))
			must(t, os.Chmod(bin, 0o777))
		}},
		{"bin owned by another user", true, func(t *testing.T, bin, _ string) {
			must(t, os.Mkdir(bin, 0o755))
			must(t, os.Lchown(bin, otherUID, otherUID))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rootOnly && os.Geteuid() != 0 {
				t.Skip("giving a file to another user needs root (CI runs the tests as root)")
			}
			backup := filepath.Join(t.TempDir(), "app.backup")
			must(t, os.Mkdir(backup, 0o700))
			victim := hzVictim(t)
			bin := filepath.Join(backup, "bin")
			tc.plant(t, bin, victim)
			before := hzSnapshot(t, victim)
			if _, err := copyExecutable(backup, "deltaup"); !errors.Is(err, ErrUnsafeBackupDir) {
				t.Fatalf("copyExecutable: %v, want ErrUnsafeBackupDir", err)
			}
			if after := hzSnapshot(t, victim); after != before {
				t.Fatalf("written through bin:\n%s", hzDiff(before, after))
			}
		})
	}
	t.Run("own bin", func(t *testing.T) {
		backup := filepath.Join(t.TempDir(), "app.backup")
		must(t, os.Mkdir(backup, 0o700))
		dst, err := copyExecutable(backup, "deltaup")
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Dir(dst))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("bin: %v %v, want a 0700 directory", fi.Mode(), err)
		}
	})
}

// TestHazardAppDirLayout: an application directory that is a link, that
// does not exist, or that other users can change under the updater, is
// refused before anything is created; --trust-shared-dirs lets a shared
// layout through; a world-writable parent with the sticky bit (/tmp) is
// fine.
func TestHazardAppDirLayout(t *testing.T) {
	root := os.Geteuid() == 0
	cases := []struct {
		name     string
		rootOnly bool
		// layout changes the setup's directories; it returns the app
		// directory to use.
		layout func(t *testing.T, s *ckSetup) string
		want   error // nil: the update goes through
		trust  bool  // Config.TrustSharedDirs
	}{
		{"app dir is a link", false, func(t *testing.T, s *ckSetup) string {
			link := filepath.Join(filepath.Dir(s.cfg.AppDir), "current")
			must(t, os.Symlink(s.cfg.AppDir, link))
			return link
		}, ErrUnsafeAppDir, false},
		{"app dir missing", false, func(t *testing.T, s *ckSetup) string {
			return filepath.Join(filepath.Dir(s.cfg.AppDir), "nonexist")
		}, ErrConfig, false},
		{"parent writable by all, no sticky bit", false, func(t *testing.T, s *ckSetup) string {
			must(t, os.Chmod(filepath.Dir(s.cfg.AppDir), 0o777))
			return s.cfg.AppDir
		}, ErrUnsafeAppDir, false},
		{"parent writable by all, trusted", false, func(t *testing.T, s *ckSetup) string {
			must(t, os.Chmod(filepath.Dir(s.cfg.AppDir), 0o777))
			return s.cfg.AppDir
		}, nil, true},
		{"parent writable by all with the sticky bit", false, func(t *testing.T, s *ckSetup) string {
			must(t, os.Chmod(filepath.Dir(s.cfg.AppDir), 0o777|os.ModeSticky))
			return s.cfg.AppDir
		}, nil, false},
		{"app dir writable by all", false, func(t *testing.T, s *ckSetup) string {
			must(t, os.Chmod(s.cfg.AppDir, 0o777))
			return s.cfg.AppDir
		}, ErrUnsafeAppDir, false},
		{"app dir owned by another user", true, func(t *testing.T, s *ckSetup) string {
			must(t, os.Lchown(s.cfg.AppDir, otherUID, otherUID))
			return s.cfg.AppDir
		}, ErrUnsafeAppDir, false},
		{"parent owned by another user", true, func(t *testing.T, s *ckSetup) string {
			must(t, os.Lchown(filepath.Dir(s.cfg.AppDir), otherUID, otherUID))
			return s.cfg.AppDir
		}, ErrUnsafeAppDir, false},
		{"parent group-writable, root", true, func(t *testing.T, s *ckSetup) string {
			must(t, os.Chmod(filepath.Dir(s.cfg.AppDir), 0o775))
			return s.cfg.AppDir
		}, ErrUnsafeAppDir, false},
		{"backup dir's parent writable by all", false, func(t *testing.T, s *ckSetup) string {
			other := filepath.Join(t.TempDir(), "shared")
			must(t, os.Mkdir(other, 0o700))
			must(t, os.Chmod(other, 0o777))
			s.cfg.BackupDir = filepath.Join(other, "app.backup")
			return s.cfg.AppDir
		}, ErrUnsafeAppDir, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rootOnly && !root {
				t.Skip("giving a file to another user needs root (CI runs the tests as root)")
			}
			s := ckNewSetup(t, ckVersions[0])
			s.cfg.AppDir = tc.layout(t, s)
			s.cfg.TrustSharedDirs = tc.trust
			backup := s.cfg.BackupDir
			if backup == "" {
				backup = s.cfg.AppDir + BackupSuffix
			}
			u := &Updater{Config: *s.cfg}
			ctx := context.Background()
			_, err := u.Prepare(ctx)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				if _, err := u.Install(ctx); err != nil {
					t.Fatalf("Install: %v", err)
				}
				if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
					t.Fatal("not the new tree")
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Prepare: %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			for op, err := range trOps(s) {
				if !errors.Is(err, tc.want) {
					t.Errorf("%s: %v, want %v", op, err, tc.want)
				}
			}
			if _, err := os.Lstat(backup); err == nil {
				t.Errorf("the backup directory %s was created for a refused layout", backup)
			}
			if fi, err := os.Lstat(s.cfg.AppDir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				real, _ := filepath.EvalSymlinks(s.cfg.AppDir)
				if ckDigest(t, real) != ckDigest(t, s.repo.trees[ckVersions[0]]) {
					t.Fatal("the link's target changed")
				}
			}
		})
	}
}

// trPlantJournal saves, in s's backup directory, a journal that swaps
// appDir from the oldest to the newest version (the newest tree staged).
func trPlantJournal(t *testing.T, s *ckSetup, appDir string, state JournalState) *Journal {
	t.Helper()
	backup := trBackup(s)
	last := ckVersionsLast()
	staged := filepath.Join(backup, stagingDir, last)
	ckCopyDir(t, s.repo.trees[last], staged)
	old, err := tree.Scan(context.Background(), appDir, appScan)
	must(t, err)
	nw, err := tree.Scan(context.Background(), staged, appScan)
	must(t, err)
	j, err := BuildJournal(appDir, backup, ckVersions[0], last, old, nw, staged, nil, nil)
	must(t, err)
	j.State = state
	must(t, j.Save())
	return j
}

// TestHazardJournalForOtherDir (issue 14, item 3): a journal, validly
// checksummed, whose app_dir names another directory is refused by Install
// (ErrJournalMismatch): the other directory is not touched.
func TestHazardJournalForOtherDir(t *testing.T) {
	for _, state := range []JournalState{JournalStaged, JournalSwapping, JournalSwapped, JournalRollingBack} {
		t.Run(string(state), func(t *testing.T) {
			s := ckNewSetup(t, ckVersions[0])
			u := &Updater{Config: *s.cfg}
			cfg := *s.cfg
			if _, err := Check(context.Background(), &cfg, s.fetcher()); err != nil { // claims the backup dir
				t.Fatal(err)
			}
			other := filepath.Join(t.TempDir(), "other")
			s.repo.install(t, ckVersions[0], other)
			before := hzSnapshot(t, other)
			trPlantJournal(t, s, other, state)
			_, err := u.Install(context.Background())
			trRefused(t, s, err, ErrJournalMismatch, other, before)
			_, err = u.RollbackNow(context.Background())
			trRefused(t, s, err, ErrJournalMismatch, other, before)
			if _, err := Resume(context.Background(), s.cfg.AppDir, trBackup(s), nil); !errors.Is(err, ErrJournalMismatch) {
				t.Fatalf("Resume: %v", err)
			}
			trRefused(t, s, ErrJournalMismatch, ErrJournalMismatch, other, before)
		})
	}
}

// TestHazardCorruptJournalOtherData (issue 14, item 4): both journal copies
// corrupt after the swap began, with --backup-dir DATA.backup beside an
// unrelated DATA/: recovery finishes the swap into the app directory the
// backup directory's claim file names (the one in use), never into DATA;
// without a claim naming it, nothing is touched at all.
func TestHazardCorruptJournalOtherData(t *testing.T) {
	for _, claimed := range []bool{true, false} {
		t.Run(map[bool]string{true: "claimed", false: "claim missing"}[claimed], func(t *testing.T) {
			s := ckNewSetup(t, ckVersions[0])
			base := t.TempDir()
			data := filepath.Join(base, "DATA")
			ckWriteFiles(t, data, map[string]string{"important.txt": "keep me\n", "bin/app": "not the app\n"})
			s.cfg.BackupDir = data + BackupSuffix
			before := hzSnapshot(t, data)
			u := &Updater{Config: *s.cfg}
			ctx := context.Background()
			if _, err := u.Prepare(ctx); err != nil {
				t.Fatal(err)
			}
			// Crash the swap half-way, then corrupt both journal copies.
			j, err := LoadJournal(s.cfg.BackupDir)
			must(t, err)
			if err := Swap(ctx, j, &crashFS{FS: OSFS{}, limit: 4, appDir: s.cfg.AppDir}); !errors.Is(err, errCrash) {
				t.Fatalf("Swap: %v", err)
			}
			corrupt(t, filepath.Join(s.cfg.BackupDir, JournalFileName), "garbage")
			corrupt(t, filepath.Join(s.cfg.BackupDir, JournalBackupName), "torn")
			if !claimed {
				must(t, os.Remove(filepath.Join(s.cfg.BackupDir, ClaimFileName)))
				_, err := Resume(ctx, s.cfg.AppDir, s.cfg.BackupDir, nil)
				if !errors.Is(err, ErrJournalCorrupt) || !strings.Contains(err.Error(), "claim") {
					t.Fatalf("Resume without a claim: %v", err)
				}
			} else if _, err := u.Install(ctx); err != nil {
				t.Fatalf("Install: %v", err)
			} else if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
				t.Fatal("the recovered swap did not end in the new tree")
			} else if kept, _ := filepath.Glob(filepath.Join(s.cfg.BackupDir, "displaced", ckVersions[0]+"-recovered-*")); len(kept) != 1 {
				// What the recovery moved away could have been the user's:
				// kept, not deleted.
				t.Fatalf("the recovered rollback area was not kept: %v", kept)
			}
			if after := hzSnapshot(t, data); after != before {
				t.Fatalf("DATA changed:\n%s", hzDiff(before, after))
			}
		})
	}
}

// TestHazardLeftoverTmpNeverBlocks (issue 14, item 5): a temporary file of
// the swap left in the app directory (a killed swap, long ago) does not
// make the version undetectable or the pre-swap check fail: Prepare removes
// it, takes the patch route, and Install completes.
func TestHazardLeftoverTmpNeverBlocks(t *testing.T) {
	for _, rel := range []string{tmpPrefix + "app", "lib/" + tmpPrefix + "x.so", tmpPrefix + "zz"} {
		t.Run(rel, func(t *testing.T) {
			s := ckNewSetup(t, ckVersions[0])
			ckWriteFiles(t, s.cfg.AppDir, map[string]string{rel: "half-written\n"})
			u := &Updater{Config: *s.cfg}
			ctx := context.Background()
			p, err := u.Prepare(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Check.Detected || p.Check.Current != ckVersions[0] || p.Stage.Route != "patches" {
				t.Fatalf("with a leftover: detected %v %q, route %q (%s)", p.Check.Detected, p.Check.Current, p.Stage.Route, p.Stage.Fallback)
			}
			if _, err := u.Install(ctx); err != nil {
				t.Fatalf("Install: %v", err)
			}
			if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
				t.Fatal("not the new tree (the leftover stayed?)")
			}
		})
	}
}

// TestHazardAppDirBecomesLink (issue 14, item 7): the app directory is
// replaced by a link while a swap is pending (before it began, and
// half-way): Install and RollbackNow refuse; the link's target and the
// real directory are not touched.
func TestHazardAppDirBecomesLink(t *testing.T) {
	for _, k := range []int{-1, 5} {
		t.Run(map[int]string{-1: "staged", 5: "half-swapped"}[k], func(t *testing.T) {
			s := ckNewSetup(t, ckVersions[0])
			u := &Updater{Config: *s.cfg}
			ctx := context.Background()
			if _, err := u.Prepare(ctx); err != nil {
				t.Fatal(err)
			}
			if k >= 0 {
				j, err := LoadJournal(trBackup(s))
				must(t, err)
				if err := Swap(ctx, j, &crashFS{FS: OSFS{}, limit: k, appDir: s.cfg.AppDir}); !errors.Is(err, errCrash) {
					t.Fatalf("Swap: %v", err)
				}
			}
			moved := s.cfg.AppDir + ".real"
			must(t, os.Rename(s.cfg.AppDir, moved))
			victim := hzVictim(t)
			must(t, os.Symlink(victim, s.cfg.AppDir))
			vBefore, mBefore := hzSnapshot(t, victim), hzSnapshot(t, moved)
			for name, f := range map[string]func(context.Context) (*Installed, error){"Install": u.Install, "RollbackNow": u.RollbackNow} {
				if _, err := f(ctx); !errors.Is(err, ErrUnsafeAppDir) {
					t.Fatalf("%s: %v, want ErrUnsafeAppDir", name, err)
				}
			}
			if _, err := Resume(ctx, s.cfg.AppDir, trBackup(s), nil); !errors.Is(err, ErrUnsafeAppDir) {
				t.Fatalf("Resume: %v", err)
			}
			if hzSnapshot(t, victim) != vBefore || hzSnapshot(t, moved) != mBefore {
				t.Fatal("the link's target or the real app directory changed")
			}
		})
	}
}

// TestHazardSharedDirUnprivileged runs the layout checks as a real second
// user (uid 65534, when the tests run as root): a backup directory root
// made is not that user's own and is refused; the user's own layout works.
func TestHazardSharedDirUnprivileged(t *testing.T) {
	if rerunUnprivileged(t) {
		return
	}
	if os.Geteuid() == 0 {
		t.Skip("needs a user other than root (rerunUnprivileged could not start one)")
	}
	s := ckNewSetup(t, ckVersions[0])
	// A backup directory of another user: /etc stands for one (owned by
	// root, not by this user).
	s.cfg.BackupDir = "/etc"
	if err := secureDirs(s.cfg, true); !errors.Is(err, ErrUnsafeBackupDir) {
		t.Fatalf("backup dir /etc: %v", err)
	}
	s.cfg.BackupDir = ""
	u := &Updater{Config: *s.cfg}
	if _, err := u.Prepare(context.Background()); err != nil {
		t.Fatalf("own layout: %v", err)
	}
	fi, err := os.Stat(trBackup(s))
	must(t, err)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uint32(os.Geteuid()) || fi.Mode().Perm() != 0o700 {
		t.Fatalf("backup dir: uid %d mode %v", st.Uid, fi.Mode())
	}
}

// TestHazardDownloadLinks (issue 14, item 2): for every artifact of the
// repository, downloads/NAME.part planted as a link to a victim file beside
// a valid sidecar naming the artifact (so that the part looks resumable),
// and links at the temporary sidecar's name: the download never writes or
// reads through them (the part is discarded, the link removed, the file
// fetched afresh) and the update ends exact.
func TestHazardDownloadLinks(t *testing.T) {
	s := ckNewSetup(t, ckVersions[0])
	backup := trBackup(s)
	downloads := filepath.Join(backup, downloadsDir)
	must(t, os.MkdirAll(downloads, 0o700))
	victim := hzVictim(t)
	target := filepath.Join(victim, "sentinel.txt")
	var arts []manifest.Artifact
	for _, r := range s.repo.manifest(t).Releases {
		for _, a := range r.Archives {
			arts = append(arts, a.Artifact)
		}
		for _, p := range r.Patches {
			arts = append(arts, p.Artifact)
		}
	}
	for _, a := range arts {
		dest := filepath.Join(downloads, path.Base(a.Path))
		sc, err := json.Marshal(fetchSidecar{URL: s.srv.URL + "/" + a.Path, Size: a.Size, SHA256: hex.EncodeToString(a.SHA256[:])})
		must(t, err)
		must(t, os.WriteFile(dest+SidecarSuffix, sc, 0o600))
		must(t, os.Symlink(target, dest+PartSuffix))
		must(t, os.Symlink(target, dest+SidecarSuffix+".tmp"))
	}
	before := hzSnapshot(t, victim)
	t.Logf("%d artifacts, %d planted links", len(arts), 2*len(arts))
	u := &Updater{Config: *s.cfg}
	ctx := context.Background()
	if _, err := u.Prepare(ctx); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := u.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	if ckDigest(t, s.cfg.AppDir) != ckDigest(t, s.repo.trees[ckVersionsLast()]) {
		t.Fatal("not the new tree")
	}
	if after := hzSnapshot(t, victim); after != before {
		t.Fatalf("written through a planted link (%d artifacts):\n%s", len(arts), hzDiff(before, after))
	}
}
