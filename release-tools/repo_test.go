package releasetools

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// listAll lists every path under dir (relative, slash-separated, with a
// trailing slash for directories, the SHA-256 of a file's contents after
// it), for "nothing changed" checks.
func listAll(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			rel += "/"
		} else {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel += fmt.Sprintf(" %x", sha256.Sum256(b))[:9]
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPublishVersionRules: which versions Publish takes into a channel that
// holds 5.7.2, and that a refusal writes nothing, in the repository or
// beside it.
func TestPublishVersionRules(t *testing.T) {
	priv, _, _ := testKey(t)
	now := time.Now().UTC()
	for _, c := range []struct {
		name, version, channel string
		allowOlder             bool
		want                   error  // nil: published
		recorded               string // the version the manifest records
	}{
		{"newer", "5.8.0", "", false, nil, "5.8.0"},
		{"v prefix", "v5.8.0", "", false, nil, "5.8.0"},
		{"V prefix", "V5.8.0-rc.1", "", false, nil, "5.8.0-rc.1"},
		{"older", "5.6.0", "", false, ErrOlder, ""},
		{"older prerelease of the newest", "5.7.2-rc.1", "", false, ErrOlder, ""},
		{"older, v prefix", "v5.6.0", "", false, ErrOlder, ""},
		{"older allowed", "5.6.0", "", true, nil, "5.6.0"},
		{"older in another channel", "5.6.0", "lts", false, nil, "5.6.0"},
		{"same version, other tree", "5.7.2", "", false, ErrVersionExists, ""},
		{"same version, other tree, v prefix", "v5.7.2", "", true, ErrVersionExists, ""},
		{"same version, other channel", "5.7.2", "lts", false, ErrVersionExists, ""},
		{"not semver", "5.8", "", false, errNotSemver, ""},
		{"double v", "vv5.8.0", "", false, errNotSemver, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			repo := filepath.Join(parent, "repo")
			publish(t, repo, "5.7.2", versionTree(t, 0), priv, now)
			before := listAll(t, parent)
			res, err := Publish(context.Background(), versionTree(t, 1), PublishOptions{
				Repo: repo, App: "demo", Version: c.version, Channel: c.channel, AllowOlder: c.allowOlder, Key: priv,
			})
			if c.want == nil {
				if err != nil {
					t.Fatalf("Publish %s: %v", c.version, err)
				}
				if res.Release.Version != c.recorded {
					t.Fatalf("recorded as %q, want %q", res.Release.Version, c.recorded)
				}
				if _, err := mustManifest(t, repo).Release(c.recorded); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(repo, ArchivePath("demo", c.recorded, "tar.zst"))); err != nil {
					t.Fatal(err)
				}
				return
			}
			if c.want == errNotSemver {
				if err == nil || !strings.Contains(err.Error(), "is not a strict semantic version") || !strings.Contains(err.Error(), c.version) {
					t.Fatalf("Publish %s: %v, want a version error naming it", c.version, err)
				}
			} else if !errors.Is(err, c.want) {
				t.Fatalf("Publish %s: %v, want %v", c.version, err, c.want)
			}
			if after := listAll(t, parent); !slices.Equal(before, after) {
				t.Errorf("a refused publish changed the files:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// errNotSemver marks the cases above that the version syntax refuses.
var errNotSemver = errors.New("not semver")

// TestPublishLock: the lock lives beside the repository, never inside; it
// is gone after a publish; a held lock refuses a second publish; the lock
// of older versions inside the repository is removed.
func TestPublishLock(t *testing.T) {
	priv, pub, _ := testKey(t)
	now := time.Now().UTC()
	parent := t.TempDir()
	repo := filepath.Join(parent, "site")
	publish(t, repo, "1.0.0", versionTree(t, 0), priv, now)

	lock, err := LockPath(repo)
	if err != nil {
		t.Fatal(err)
	}
	realParent, _ := filepath.EvalSymlinks(parent)
	if want := filepath.Join(realParent, "site"+LockSuffix); lock != want {
		t.Fatalf("LockPath = %s, want %s", lock, want)
	}
	if got := listAll(t, parent); slices.ContainsFunc(got, func(p string) bool {
		return !strings.HasPrefix(p, "site/") && p != "./"
	}) {
		t.Fatalf("publish left files beside the repository: %q", got)
	}

	// A symbolic link to the repository finds the same lock.
	if runtime.GOOS != "windows" {
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(repo, link); err != nil {
			t.Fatal(err)
		}
		if l, err := LockPath(link); err != nil || l != lock {
			t.Errorf("LockPath(link) = %s, %v; want %s", l, err, lock)
		}
	}

	// Held: a second publish is refused, naming the lock, and writes nothing.
	release, err := lockFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	before := listAll(t, repo)
	_, err = Publish(context.Background(), versionTree(t, 1), PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: priv})
	if !errors.Is(err, ErrRepo) || !strings.Contains(err.Error(), lock) {
		t.Errorf("publish under a held lock: %v", err)
	}
	if after := listAll(t, repo); !slices.Equal(before, after) {
		t.Errorf("a refused publish changed the repository")
	}
	release()
	if _, err := os.Lstat(lock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("released lock still there: %v", err)
	}

	// An old lock inside the repository is reported by Verify (not a
	// fault) and removed by the next publish.
	legacy := filepath.Join(repo, LegacyLockName)
	if err := os.WriteFile(legacy, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), repo, pub, VerifyOptions{})
	if err != nil || !rep.OK() || !slices.Equal(rep.Strays, []string{LegacyLockName}) {
		t.Fatalf("verify with an old lock: %v %+v", err, rep)
	}
	publish(t, repo, "1.1.0", versionTree(t, 1), priv, now)
	if _, err := os.Lstat(legacy); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old lock not removed: %v", err)
	}
	if _, err := os.Lstat(lock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock left after publish: %v", err)
	}
}

// TestVerifyStrays: what lies outside the layout is listed; a secret key is
// a fault.
func TestVerifyStrays(t *testing.T) {
	priv, pub, _ := testKey(t)
	now := time.Now().UTC()
	repo := filepath.Join(t.TempDir(), "repo")
	publish(t, repo, "1.0.0", versionTree(t, 0), priv, now)
	_, keyFile, err := manifest.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, repo, map[string]string{
		".publish-123/1.0.0/README.md": "left by a crash",
		"notes.txt":                    "hello",
		"manifests/.7.json.tmp-1":      "",
		"manifests/8.json.bak":         "",
		"archives/extra.tar.zst":       "orphan, not a stray",
	})
	if err := os.WriteFile(filepath.Join(repo, "release.key"), keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), repo, pub, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".publish-123/", "manifests/.7.json.tmp-1", "manifests/8.json.bak", "notes.txt", "release.key"}
	if !slices.Equal(rep.Strays, want) {
		t.Errorf("Strays = %q, want %q", rep.Strays, want)
	}
	if !slices.Equal(rep.Orphans, []string{"archives/extra.tar.zst"}) {
		t.Errorf("Orphans = %q", rep.Orphans)
	}
	if len(rep.Faults) != 1 || rep.Faults[0].Path != "release.key" || !strings.Contains(rep.Faults[0].Err.Error(), "secret key") {
		t.Errorf("Faults = %v, want one for release.key", rep.Faults)
	}
}
