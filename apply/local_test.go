package apply

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestUnmarkBad: UnmarkBad removes the versions asked for (by semver
// precedence) or all, keeps the others, treats a version not marked as
// nothing to do, creates nothing without a backup directory, waits for no
// one (a held lock is ErrLocked) and refuses a backup directory that serves
// another app directory; ReadLocalStatus then reports what is left, with
// the backup directory taken from deltaup.json.
func TestUnmarkBad(t *testing.T) {
	tests := []struct {
		name     string
		versions []string
		removed  []string
		left     []string
	}{
		{"one", []string{"2.0.0"}, []string{"2.0.0"}, []string{"1.5.0", "3.0.0-rc.1"}},
		{"by precedence", []string{"2.0.0+build.7"}, []string{"2.0.0"}, []string{"1.5.0", "3.0.0-rc.1"}},
		{"two", []string{"3.0.0-rc.1", "1.5.0"}, []string{"1.5.0", "3.0.0-rc.1"}, []string{"2.0.0"}},
		{"not marked", []string{"2.0.1"}, nil, []string{"1.5.0", "2.0.0", "3.0.0-rc.1"}},
		{"all", nil, []string{"1.5.0", "2.0.0", "3.0.0-rc.1"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			app, back := filepath.Join(root, "app"), filepath.Join(root, "state", "b")
			if err := os.MkdirAll(app, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(app, ConfigFileName), []byte(`{"backup_dir":"state/b","version":"1.0.0"}`), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(back, 0o700); err != nil {
				t.Fatal(err)
			}
			st := &State{Installed: "1.0.0", Bad: []string{"1.5.0", "2.0.0", "3.0.0-rc.1"}}
			if err := st.Save(back); err != nil {
				t.Fatal(err)
			}
			removed, err := UnmarkBad(app, "", tc.versions...)
			if err != nil || !slices.Equal(removed, tc.removed) {
				t.Fatalf("UnmarkBad(%q) = %q, %v; want %q", tc.versions, removed, err, tc.removed)
			}
			ls, err := ReadLocalStatus(app, "")
			if err != nil {
				t.Fatal(err)
			}
			if ls.BackupDir != back || ls.Installed != "1.0.0" || ls.Recorded != "1.0.0" || !slices.Equal(ls.Bad, tc.left) || ls.Pending != nil {
				t.Fatalf("ReadLocalStatus: %+v, want bad %q", ls, tc.left)
			}
		})
	}

	t.Run("no backup directory", func(t *testing.T) {
		app := filepath.Join(t.TempDir(), "app")
		if err := os.Mkdir(app, 0o755); err != nil {
			t.Fatal(err)
		}
		if removed, err := UnmarkBad(app, ""); err != nil || removed != nil {
			t.Fatalf("UnmarkBad: %q %v", removed, err)
		}
		if ls, err := ReadLocalStatus(app, ""); err != nil || ls.Installed != "" || len(ls.Bad) != 0 {
			t.Fatalf("ReadLocalStatus: %+v %v", ls, err)
		}
		if _, err := os.Lstat(app + BackupSuffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the backup directory was created: %v", err)
		}
	})

	t.Run("locked, or another app's", func(t *testing.T) {
		app := filepath.Join(t.TempDir(), "app")
		back := app + BackupSuffix
		if err := os.Mkdir(app, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := (&State{Bad: []string{"2.0.0"}}).Save(back); err != nil {
			t.Fatal(err)
		}
		lock, err := AcquireLock(app, back)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarkBad(app, "", "2.0.0"); !errors.Is(err, ErrLocked) {
			t.Fatalf("UnmarkBad under another's lock: %v", err)
		}
		lock.Unlock()
		if err := os.WriteFile(filepath.Join(back, ClaimFileName), []byte(filepath.Join(filepath.Dir(app), "other")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarkBad(app, "", "2.0.0"); !errors.Is(err, ErrUnsafeBackupDir) {
			t.Fatalf("UnmarkBad in another app's backup directory: %v", err)
		}
		if _, err := ReadLocalStatus(app, ""); !errors.Is(err, ErrUnsafeBackupDir) {
			t.Fatalf("ReadLocalStatus of another app's backup directory: %v", err)
		}
		if st, err := LoadState(back); err != nil || !slices.Equal(st.Bad, []string{"2.0.0"}) {
			t.Fatalf("state changed: %+v %v", st, err)
		}
	})
}
