package releasetools

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// tinyTree is a small release tree (cheap to archive and diff).
func tinyTree(t testing.TB, n int) string {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"bin/app":   "x:" + strings.Repeat("code ", 40) + strings.Repeat("v", n+1),
		"README.md": "read me\n",
	})
	return dir
}

func publishPlatform(t testing.TB, repo, platform, version, dir string, key manifest.PrivateKey, now time.Time, tsKeys ...manifest.PrivateKey) *PublishResult {
	t.Helper()
	res, err := Publish(context.Background(), dir, PublishOptions{
		Repo: repo, App: "demo", Version: version, Key: key, Platform: platform, TimestampKeys: tsKeys, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("publish %s %s: %v", platform, version, err)
	}
	return res
}

// platformRef is what the timestamp should name for a platform's index.
func platformRef(t testing.TB, repo, platform string) manifest.IndexRef {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, platform, manifest.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		t.Fatal(err)
	}
	return manifest.IndexRef{Sequence: m.Sequence, Size: int64(len(raw)), SHA256: sha256.Sum256(raw)}
}

func TestPublishPlatforms(t *testing.T) {
	ctx := context.Background()
	f := newV2Fixture(t) // 1.0.0 without a platform, migrated
	v0, v1 := tinyTree(t, 0), tinyTree(t, 1)
	for _, p := range []string{"linux-amd64", "windows-amd64"} {
		publishPlatform(t, f.repo, p, "1.0.0", v0, f.rel, f.now, f.ts)
	}
	publishPlatform(t, f.repo, "linux-amd64", "1.1.0", v1, f.rel, f.now, f.ts)
	linuxBefore := listAll(t, filepath.Join(f.repo, "linux-amd64"))
	tsBefore, err := currentTimestamp(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	topBefore, _ := os.ReadFile(filepath.Join(f.repo, manifest.ManifestName))

	res := publishPlatform(t, f.repo, "windows-amd64", "1.1.0", v1, f.rel, f.now, f.ts)
	if len(res.Release.Patches) != 1 || res.Release.Patches[0].From != "1.0.0" {
		t.Fatalf("windows 1.1.0 patches: %+v", res.Release.Patches)
	}
	// The other platform's index and artifacts, and the platform-less
	// index, are untouched; the timestamp keeps their entries.
	if after := listAll(t, filepath.Join(f.repo, "linux-amd64")); !slices.Equal(linuxBefore, after) {
		t.Fatalf("publishing windows-amd64 changed linux-amd64:\n%v\n%v", linuxBefore, after)
	}
	if topAfter, _ := os.ReadFile(filepath.Join(f.repo, manifest.ManifestName)); string(topAfter) != string(topBefore) {
		t.Fatal("publishing a platform changed the platform-less index")
	}
	ts, err := currentTimestamp(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Sequence != tsBefore.Sequence+1 || ts.Index != tsBefore.Index || ts.Platforms["linux-amd64"] != tsBefore.Platforms["linux-amd64"] {
		t.Fatalf("timestamp after the windows publish: %+v, before %+v", ts, tsBefore)
	}
	for _, p := range []string{"linux-amd64", "windows-amd64"} {
		if got, want := ts.Platforms[p], platformRef(t, f.repo, p); got != want {
			t.Fatalf("timestamp names %s %+v, the index is %+v", p, got, want)
		}
		m := mustManifest(t, filepath.Join(f.repo, p))
		if len(m.Releases) != 2 || m.Sequence != 2 {
			t.Fatalf("%s: sequence %d, %d releases", p, m.Sequence, len(m.Releases))
		}
		r, _ := m.Release("1.1.0")
		if len(r.Patches) != 1 {
			t.Fatalf("%s 1.1.0 has %d patches", p, len(r.Patches))
		}
		// Windows builds are published with portable modes, others not.
		es, err := releaseEntries(filepath.Join(f.repo, p), r)
		if err != nil {
			t.Fatal(err)
		}
		if portable := tree.NotPortable(es) == ""; portable != (p == "windows-amd64") {
			t.Fatalf("%s: portable modes = %v", p, portable)
		}
		rep, err := Verify(ctx, f.repo, f.rel.Public(), VerifyOptions{Platform: p, Now: func() time.Time { return f.now }})
		if err != nil || !rep.OK() || len(rep.Strays) != 0 || len(rep.Orphans) != 0 || rep.Patches != 1 {
			t.Fatalf("verify %s: %v %+v", p, err, rep)
		}
	}
	rep, err := Verify(ctx, f.repo, f.rel.Public(), VerifyOptions{Now: func() time.Time { return f.now }})
	if err != nil || !rep.OK() || len(rep.Strays) != 0 {
		t.Fatalf("verify without a platform: %v %+v", err, rep)
	}

	// Refresh re-stamps every platform.
	f.now = f.now.Add(time.Hour)
	ts2, err := Refresh(ctx, f.opts(f.ts))
	if err != nil {
		t.Fatal(err)
	}
	if ts2.Sequence != ts.Sequence+1 || ts2.Index != ts.Index || len(ts2.Platforms) != 2 || ts2.Platforms["linux-amd64"] != ts.Platforms["linux-amd64"] || ts2.Platforms["windows-amd64"] != ts.Platforms["windows-amd64"] {
		t.Fatalf("refresh: %+v, before %+v", ts2, ts)
	}

	// A new release key signs every platform's index.
	rel2, _, _ := testKey(t)
	if _, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleRelease, Add: []manifest.PublicKey{rel2.Public()}, Threshold: 2}, f.opts(f.a, f.b, f.rel, rel2)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "linux-amd64", "windows-amd64"} {
		seq := ts2.Index.Sequence
		if p != "" {
			seq = ts2.Platforms[p].Sequence
		}
		if _, err := os.Stat(filepath.Join(f.repo, p, manifest.SigPath(manifest.IndexPath(seq), rel2.Public().ID()))); err != nil {
			t.Fatalf("%q: the index is not signed by the new release key: %v", p, err)
		}
	}

	// A bad platform name is refused before anything is written.
	before := listAll(t, f.repo)
	for _, bad := range []string{"Linux-amd64", "linux", "../x-y", "linux-amd64-v3"} {
		_, err := Publish(ctx, v1, PublishOptions{Repo: f.repo, App: "demo", Version: "1.2.0", Key: f.rel, Platform: bad})
		if err == nil || !strings.Contains(err.Error(), "--platform") {
			t.Fatalf("platform %q: %v", bad, err)
		}
	}
	if after := listAll(t, f.repo); !slices.Equal(before, after) {
		t.Fatal("a refused publish wrote files")
	}
}

// TestPlatformsV1PruneMigrate: platforms in a v1 repository (no
// platform-less build): pruning one leaves the other alone; migrate
// stamps both.
func TestPlatformsV1PruneMigrate(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	repo := filepath.Join(t.TempDir(), "repo")
	rel, _, _ := testKey(t)
	v0, v1 := tinyTree(t, 0), tinyTree(t, 1)
	for _, p := range []string{"darwin-arm64", "linux-arm64"} {
		publishPlatform(t, repo, p, "1.0.0", v0, rel, now)
		publishPlatform(t, repo, p, "1.1.0", v1, rel, now)
	}
	linux := listAll(t, filepath.Join(repo, "linux-arm64"))
	pr, err := Prune(ctx, PruneOptions{Repo: repo, Key: rel, Keep: 1, Platform: "darwin-arm64", Now: func() time.Time { return now }})
	if err != nil || !slices.Equal(pr.Dropped, []string{"1.0.0"}) {
		t.Fatalf("prune darwin-arm64: %v %+v", err, pr)
	}
	if after := listAll(t, filepath.Join(repo, "linux-arm64")); !slices.Equal(linux, after) {
		t.Fatal("pruning darwin-arm64 changed linux-arm64")
	}
	if _, err := Prune(ctx, PruneOptions{Repo: repo, Key: rel, Keep: 1, Now: func() time.Time { return now }}); err == nil {
		t.Fatal("pruned a repository without a platform-less build")
	}
	if note := PlatformsNote(ctx, repo); !strings.Contains(note, "darwin-arm64, linux-arm64") {
		t.Fatalf("PlatformsNote = %q", note)
	}
	a, _, _ := testKey(t)
	tsKey, _, _ := testKey(t)
	roles := map[string][]manifest.PrivateKey{manifest.RoleRoot: {a}, manifest.RoleRelease: {rel}, manifest.RoleTimestamp: {tsKey}}
	if _, err := Migrate(ctx, "demo", roles, nil, RolesOptions{Repo: repo, Now: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	ts, err := currentTimestamp(repo)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Index != (manifest.IndexRef{}) || len(ts.Platforms) != 2 {
		t.Fatalf("timestamp after migrate: %+v", ts)
	}
	for _, p := range []string{"darwin-arm64", "linux-arm64"} {
		if ts.Platforms[p] != platformRef(t, repo, p) {
			t.Fatalf("%s: timestamp %+v, index %+v", p, ts.Platforms[p], platformRef(t, repo, p))
		}
		rep, err := Verify(ctx, repo, rel.Public(), VerifyOptions{Platform: p, Now: func() time.Time { return now }})
		if err != nil || !rep.OK() {
			t.Fatalf("verify %s: %v %+v", p, err, rep)
		}
	}
	if _, err := Verify(ctx, repo, rel.Public(), VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "--platform") {
		t.Fatalf("verify without a platform of a platforms-only repository: %v", err)
	}
}

// TestPlatformsOnBucket: platforms on an object store: each in
// PREFIX/PLATFORM/, under the repository's lease, with the same headers.
func TestPlatformsOnBucket(t *testing.T) {
	ctx := context.Background()
	rel, _, _ := testKey(t)
	now := time.Now().UTC()
	repo, root, st := memRepo(t, "platforms")
	v0, v1 := tinyTree(t, 0), tinyTree(t, 1)
	for _, p := range []string{"linux-amd64", "windows-amd64"} {
		publishPlatform(t, repo, p, "1.0.0", v0, rel, now)
		publishPlatform(t, repo, p, "1.1.0", v1, rel, now)
	}
	for _, p := range []string{"linux-amd64", "windows-amd64"} {
		rep, err := Verify(ctx, repo, rel.Public(), VerifyOptions{Platform: p})
		if err != nil || !rep.OK() || rep.Patches != 1 || len(rep.Orphans) != 0 || len(rep.Strays) != 0 {
			t.Fatalf("verify %s: %v %+v", p, err, rep)
		}
		for rel, want := range map[string]string{manifest.ManifestName: CacheMutable, "manifests/2.json": CacheImmutable} {
			a, err := root.Attributes(ctx, st.key(p+"/"+rel))
			if err != nil || a.CacheControl != want {
				t.Fatalf("%s/%s: %v, Cache-Control %q", p, rel, err, a.CacheControl)
			}
		}
	}
	if ls, _ := st.leases(ctx); len(ls) != 0 {
		t.Errorf("leases left: %v", ls)
	}
	if _, err := Verify(ctx, repo, rel.Public(), VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "linux-amd64, windows-amd64") {
		t.Fatalf("verify without a platform: %v", err)
	}
	before, _ := st.List(ctx)
	res, err := Prune(ctx, PruneOptions{Repo: repo, Key: rel, Keep: 1, Platform: "windows-amd64"})
	if err != nil || !slices.Equal(res.Dropped, []string{"1.0.0"}) {
		t.Fatalf("prune: %v %+v", err, res)
	}
	after, _ := st.List(ctx)
	for _, o := range before {
		if strings.HasPrefix(o.Path, "linux-amd64/") && !slices.ContainsFunc(after, func(a Object) bool { return a.Path == o.Path }) {
			t.Fatalf("pruning windows-amd64 deleted %s", o.Path)
		}
	}
}
