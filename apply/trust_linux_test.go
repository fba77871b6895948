package apply

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHazardCrossDevice (issue 14, item 6): the app directory is its own
// mount point (a real tmpfs), so no rename reaches the backup directory
// beside it. Prepare refuses before anything is created; a pending update
// made before (by an older updater: staged, or swapping with nothing
// moved yet) is dropped by Install, never left stuck, the app directory
// exactly old. Needs mount(2); skipped otherwise.
func TestHazardCrossDevice(t *testing.T) {
	for _, state := range []JournalState{"", JournalStaged, JournalSwapping} {
		t.Run("pending "+string(state), func(t *testing.T) {
			mnt, err := dfMount(t, 64<<20)
			if err != nil {
				t.Skipf("the app directory as a mount point needs a tmpfs mount (root or CAP_SYS_ADMIN): %v", err)
			}
			s := ckNewSetup(t, ckVersions[0])
			// The app directory is the mount point itself.
			if out, err := exec.Command("cp", "-a", s.cfg.AppDir+"/.", mnt).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			must(t, os.Chmod(mnt, 0o755))
			s.cfg.AppDir = mnt
			backup := trBackup(s)
			u := &Updater{Config: *s.cfg}
			ctx := context.Background()
			oldD := ckDigest(t, s.repo.trees[ckVersions[0]])
			if state == "" {
				_, err := u.Prepare(ctx)
				if !errors.Is(err, ErrUnsafeAppDir) || !strings.Contains(err.Error(), "file system") {
					t.Fatalf("Prepare: %v", err)
				}
				t.Logf("refused: %v", err)
				if _, err := os.Lstat(backup); err == nil {
					t.Fatal("Prepare created the backup directory of a refused layout")
				}
				return
			}
			must(t, os.Mkdir(backup, 0o700))
			must(t, claim(backup, mnt, true))
			j := trPlantJournal(t, s, mnt, state)
			if state == JournalSwapping {
				must(t, os.MkdirAll(j.Rollback, 0o700))
			}
			_, err = u.Install(ctx)
			if !errors.Is(err, ErrUnsafeAppDir) || !strings.Contains(err.Error(), "dropped") {
				t.Fatalf("Install: %v", err)
			}
			t.Logf("Install: %v", err)
			if _, err := LoadJournal(backup); err == nil {
				t.Fatal("the journal is still pending")
			}
			if ckDigest(t, mnt) != oldD {
				t.Fatal("the app directory is not exactly the old tree")
			}
		})
	}
}
