package apply

// A real full disk: the app and backup directories live on a small tmpfs,
// and the update runs once for every size of that file system from "just
// the old version" up to "enough", one page-multiple step at a time, so
// ENOSPC strikes in the middle of every kind of write the updater makes
// (the download's .part and its sidecar, state.json, each staged file of a
// bundle or an archive, the journal, the swap's temporary files). Needs
// mount(2) (root or CAP_SYS_ADMIN); skipped otherwise.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dfTrees writes the two releases of the disk-full fixture: about 210 KiB
// of files, where 1.1.0 patches the executable and a text file, keeps one
// file, adds a 48 KiB incompressible one and removes another. (Each file
// still spans several 8 KiB steps of the sweep, so every write is hit.)
func dfTrees(t *testing.T, pubFile []byte) (oldDir, newDir string) {
	oldDir, newDir = t.TempDir(), t.TempDir()
	app := ckNoiseSeed(1, 96<<10)
	text := strings.Repeat("the quick brown fox jumps over the lazy dog 0123456789\n", 600)
	ckWriteFiles(t, oldDir, map[string]string{
		"bin/app":           "x:" + string(app),
		"lib/data.bin":      string(ckNoiseSeed(2, 64<<10)),
		"share/text.txt":    text,
		"share/old.txt":     "only in 1.0.0\n",
		"deltaup.pub":       string(pubFile),
		"share/empty/.keep": "",
	})
	app2 := append([]byte{}, app...)
	for i := 1000; i < len(app2); i += 9000 {
		copy(app2[i:], "patched!")
	}
	ckWriteFiles(t, newDir, map[string]string{
		"bin/app":           "x:" + string(app2),
		"lib/data.bin":      string(ckNoiseSeed(2, 64<<10)),
		"lib/new.bin":       string(ckNoiseSeed(3, 48<<10)),
		"share/text.txt":    strings.ReplaceAll(text, "lazy", "sleepy"),
		"deltaup.pub":       string(pubFile),
		"share/empty/.keep": "",
	})
	return oldDir, newDir
}

// dfMount mounts a tmpfs of size bytes at a new directory and unmounts it
// when the test ends.
func dfMount(t *testing.T, size int64) (string, error) {
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, nil
}

func dfResize(t *testing.T, dir string, size int64) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("resize tmpfs: %v", err)
	}
}

func dfUsed(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * int64(st.Bsize) // Bsize is int32 on 386
}

func TestHazardRealDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the tmpfs sweep")
	}
	if _, err := dfMount(t, 1<<20); err != nil {
		t.Skipf("a real full disk needs a tmpfs mount (root or CAP_SYS_ADMIN): %v", err)
	}
	ctx := context.Background()
	repo := ckEmptyRepo(t)
	repo.trees["1.0.0"], repo.trees["1.1.0"] = dfTrees(t, repo.pubFile)
	repo.publish(t, "1.0.0", repo.trees["1.0.0"])
	repo.publish(t, "1.1.0", repo.trees["1.1.0"])
	newD := ckDigest(t, repo.trees["1.1.0"])
	const page = 4096
	const roomy = 64 << 20

	for _, route := range []string{"patches", "repair", "archive"} {
		t.Run(route, func(t *testing.T) {
			served := repo.dir
			if route == "archive" { // without frame indexes a user-edited file takes the archive
				served = filepath.Join(t.TempDir(), "site")
				ckCopyDir(t, repo.dir, served)
				ckRemoveFrameIndexes(t, served)
			}
			// run updates an app on a tmpfs of the old tree's size plus extra
			// bytes; it returns where the first failure was ("" if none).
			run := func(t *testing.T, extra int64, rollbackFirst bool) string {
				srv := ckServe(t, served)
				// Measure the old tree's footprint on a roomy tmpfs first.
				mnt, err := dfMount(t, roomy)
				if err != nil {
					t.Fatal(err)
				}
				appDir := filepath.Join(mnt, "app")
				repo.install(t, "1.0.0", appDir)
				if route != "patches" { // a user-edited file: the bundle cannot apply
					if err := os.WriteFile(filepath.Join(appDir, "share", "text.txt"), []byte("edited by the user\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				oldD := ckDigest(t, appDir)
				dfResize(t, mnt, (dfUsed(t, mnt)+extra+page-1)/page*page)
				cfg := Config{AppDir: appDir, Servers: []string{srv.URL + "/"}, PublicKey: repo.pub, App: "demo",
					Now: func() time.Time { return repo.now.Add(time.Hour) }}
				u := &Updater{Config: cfg}
				requireFull := func(what string, err error) {
					t.Helper()
					if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrLocalIO) {
						t.Fatalf("extra %d: %s: want ErrLocalIO wrapping ENOSPC, got %v", extra, what, err)
					}
				}
				grow := func() { dfResize(t, mnt, roomy) }

				p, err := u.Prepare(ctx)
				if err != nil {
					requireFull("Prepare", err)
					if ckDigest(t, appDir) != oldD {
						t.Fatalf("extra %d: a failed Prepare changed the app directory", extra)
					}
					if _, jerr := LoadJournal(cfg.AppDir + BackupSuffix); !errors.Is(jerr, fs.ErrNotExist) {
						t.Fatalf("extra %d: a failed Prepare left a journal (%v)", extra, jerr)
					}
					bundleHits := srv.count(".dupb")
					archHits := srv.count(".tar.zst")
					if route == "patches" && archHits > 0 || route == "repair" && srv.count("demo-1.1.0.tar.zst") > 0 {
						t.Fatalf("extra %d: a full disk during the %s route fell back to the archive", extra, route)
					}
					grow()
					if p, err = u.Prepare(ctx); err != nil {
						t.Fatalf("extra %d: Prepare after freeing space: %v", extra, err)
					}
					// A partial download is resumed, not fetched again from zero.
					b2 := srv.count(".dupb")
					a2 := srv.count(".tar.zst")
					if route != "archive" && b2 > bundleHits+1 || route != "patches" && a2 > archHits+1 {
						t.Fatalf("extra %d: artifact fetched %d/%d times after freeing space", extra, b2-bundleHits, a2-archHits)
					}
					if p.Stage.Route != route {
						t.Fatalf("extra %d: route %s, want %s (%s)", extra, p.Stage.Route, route, p.Stage.Fallback)
					}
					if in, err := u.Install(ctx); err != nil || !in.Confirmed {
						t.Fatalf("extra %d: Install after freeing space: %+v %v", extra, in, err)
					}
					if ckDigest(t, appDir) != newD {
						t.Fatalf("extra %d: app directory is not the new tree", extra)
					}
					return "prepare"
				}
				if p.Stage.Route != route {
					t.Fatalf("extra %d: route %s, want %s (%s)", extra, p.Stage.Route, route, p.Stage.Fallback)
				}
				in, err := u.Install(ctx)
				if err == nil {
					if !in.Confirmed || ckDigest(t, appDir) != newD {
						t.Fatalf("extra %d: Install: %+v, new tree %v", extra, in, ckDigest(t, appDir) == newD)
					}
					return ""
				}
				requireFull("Install", err)
				if rollbackFirst {
					// Rolling back moves entries back by rename; try it on
					// the full disk first, then with room.
					where := "install, rolled back on the full disk"
					if _, rerr := u.RollbackNow(ctx); rerr != nil {
						requireFull("RollbackNow on a full disk", rerr)
						grow()
						if _, rerr = u.RollbackNow(ctx); rerr != nil {
							t.Fatalf("extra %d: RollbackNow after freeing space: %v", extra, rerr)
						}
						where = "install, rolled back after freeing space"
					}
					if ckDigest(t, appDir) != oldD {
						t.Fatalf("extra %d: app directory after rollback is not exactly the old tree", extra)
					}
					return where
				}
				grow()
				if in, err := u.Install(ctx); err != nil || !in.Confirmed {
					t.Fatalf("extra %d: Install after freeing space: %+v %v", extra, in, err)
				}
				if ckDigest(t, appDir) != newD {
					t.Fatalf("extra %d: app directory is not the new tree", extra)
				}
				return "install, resumed after freeing space"
			}

			// 8 KiB steps while Prepare fails, 4 KiB once it fits (Install
			// writes less, in smaller pieces: the journal, copies).
			failed := map[string]int{}
			successes := 0
			step := int64(2 * page)
			for extra, i := int64(0), 0; successes < 2; extra, i = extra+step, i+1 {
				if extra > 8<<20 {
					t.Fatal("the update never fit")
				}
				var where string
				t.Run(fmt.Sprint(extra), func(t *testing.T) { where = run(t, extra, i%2 == 1) })
				if t.Failed() {
					return
				}
				if where == "" {
					successes++
				} else {
					failed[where]++
				}
				if where != "prepare" {
					step = page
				}
			}
			total := 0
			for _, n := range failed {
				total += n
			}
			t.Logf("%s route: %d disk sizes failed with ENOSPC, each ended exactly old or exactly new: %v", route, total, failed)
			if failed["prepare"] == 0 || total == failed["prepare"] {
				t.Errorf("the sweep did not reach both Prepare and Install: %v", failed)
			}
		})
	}
}
