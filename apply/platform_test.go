package apply

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// platRepo: a v2 repository with two platforms and no platform-less
// build: this program's platform (DefaultPlatform) and windows-amd64
// (or linux-amd64 when this program runs on windows-amd64), each with
// 1.0.0 and 1.1.0 (a patch from 1.0.0).
type platRepo struct {
	dir, own, other string
	now             time.Time
	rel, ts         manifest.PrivateKey
	root1           []byte
	trees           map[string]string // PLATFORM/VERSION -> tree
}

func platTree(t testing.TB, platform, version string) string {
	dir := t.TempDir()
	for p, c := range map[string]string{
		"bin/app":   strings.Repeat("code of "+platform+" ", 30) + version,
		"README.md": "read me " + version + "\n",
	} {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newPlatRepo(t testing.TB) *platRepo {
	t.Helper()
	r := &platRepo{dir: filepath.Join(t.TempDir(), "repo"), own: DefaultPlatform(), other: "windows-amd64",
		now: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), rel: v2Key(t), ts: v2Key(t), trees: map[string]string{}}
	if r.own == r.other {
		r.other = "linux-amd64"
	}
	ctx := context.Background()
	publish := func(platform, version string, tsKeys ...manifest.PrivateKey) {
		tr := platTree(t, platform, version)
		r.trees[platform+"/"+version] = tr
		if _, err := releasetools.Publish(ctx, tr, releasetools.PublishOptions{Repo: r.dir, App: "demo", Version: version, Key: r.rel,
			Platform: platform, TimestampKeys: tsKeys, Now: func() time.Time { return r.now }}); err != nil {
			t.Fatal(err)
		}
	}
	publish(r.own, "1.0.0")
	publish(r.other, "1.0.0")
	roles := map[string][]manifest.PrivateKey{manifest.RoleRoot: {r.rel}, manifest.RoleRelease: {r.rel}, manifest.RoleTimestamp: {r.ts}}
	if _, err := releasetools.Migrate(ctx, "demo", roles, nil, releasetools.RolesOptions{Repo: r.dir, Now: func() time.Time { return r.now }}); err != nil {
		t.Fatal(err)
	}
	publish(r.own, "1.1.0", r.ts)
	publish(r.other, "1.1.0", r.ts)
	var err error
	if r.root1, err = os.ReadFile(filepath.Join(r.dir, "root", "1.json")); err != nil {
		t.Fatal(err)
	}
	return r
}

// client installs PLATFORM's 1.0.0 and follows the repository at url.
func (r *platRepo) client(t testing.TB, url, installed, platform string) *Config {
	t.Helper()
	appDir := filepath.Join(t.TempDir(), "app")
	ckCopyDir(t, r.trees[installed+"/1.0.0"], appDir)
	return &Config{AppDir: appDir, Servers: []string{url}, Root: r.root1, App: "demo", Platform: platform,
		Now: func() time.Time { return r.now.Add(time.Hour) }}
}

func TestPlatformsClient(t *testing.T) {
	ctx := context.Background()
	r := newPlatRepo(t)
	srv := ckServe(t, r.dir)

	// By default the client follows its own platform, and updates from it
	// (the patch and file list lie in the platform's directory).
	cfg := r.client(t, srv.URL, r.own, "")
	u := &Updater{Config: *cfg}
	p, err := u.Prepare(ctx)
	if err != nil || p.Check.Current != "1.0.0" || p.Check.Target != "1.1.0" || len(p.Check.Route.Steps) != 1 {
		t.Fatalf("Prepare (default platform): %+v, %v", p, err)
	}
	if a := p.Check.Route.Steps[0].Artifact.Path; !strings.HasPrefix(a, r.own+"/") {
		t.Fatalf("the artifact fetched is %s, not in %s/", a, r.own)
	}
	if _, err := u.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if ckDigest(t, cfg.AppDir) != ckDigest(t, r.trees[r.own+"/1.1.0"]) {
		t.Fatal("the app directory is not its platform's 1.1.0")
	}
	st, err := LoadState(cfg.AppDir + BackupSuffix)
	if err != nil || st.IndexPlatform != r.own || st.Sequence != 3 {
		t.Fatalf("state: %+v, %v", st, err)
	}

	// Each platform's index has its own sequence: the other platform's
	// index 3 (other bytes than this one's index 3) is no replay.
	swapped := *cfg
	swapped.Platform, swapped.Current = r.other, "1.1.0"
	if res, err := Check(ctx, &swapped, &Downloader{Mirrors: cfg.Servers}); err != nil || !res.UpToDate {
		t.Fatalf("the same client, now following %s: %+v, %v", r.other, res, err)
	}
	if st, err := LoadState(cfg.AppDir + BackupSuffix); err != nil || st.IndexPlatform != r.other || st.Sequence != 3 {
		t.Fatalf("state: %+v, %v", st, err)
	}

	// --platform: the other platform's build (Windows: published with
	// portable modes).
	cfg = r.client(t, srv.URL, r.other, r.other)
	u = &Updater{Config: *cfg}
	if p, err = u.Prepare(ctx); err != nil || p.Check.Target != "1.1.0" {
		t.Fatalf("Prepare (--platform %s): %+v, %v", r.other, p, err)
	}
	if _, err := u.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if ckDigest(t, cfg.AppDir) != ckDigest(t, r.trees[r.other+"/1.1.0"]) {
		t.Fatal("the app directory is not the other platform's 1.1.0")
	}

	// A v1 client (one key, no root) with an explicit platform reads the
	// platform's directory as a repository.
	cfg = r.client(t, srv.URL, r.other, r.other)
	cfg.Root, cfg.PublicKey = nil, r.rel.Public()
	if res, err := Check(ctx, cfg, &Downloader{Mirrors: cfg.Servers}); err != nil || res.Target != "1.1.0" || res.Current != "1.0.0" {
		t.Fatalf("v1 client, --platform %s: %+v, %v", r.other, res, err)
	}

	// A platform the repository does not publish: a clear, typed error,
	// nothing recorded.
	cfg = r.client(t, srv.URL, r.own, "plan9-mips")
	_, err = Check(ctx, cfg, &Downloader{Mirrors: cfg.Servers})
	if !errors.Is(err, ErrPlatform) || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), r.own) || !strings.Contains(err.Error(), "--platform") {
		t.Fatalf("absent platform: %v", err)
	}
	if _, err := os.Stat(StatePath(cfg.AppDir + BackupSuffix)); err == nil {
		t.Fatal("a refused check recorded a state")
	}
	cfg.Platform = "Plan9"
	if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("invalid platform: %v", err)
	}

	// Mix and match: a mirror serves the other platform's index (validly
	// signed) as this platform's: refused by the timestamp's hash.
	ts := mustTimestamp(t, r.dir)
	mix := filepath.Join(t.TempDir(), "mirror")
	ckCopyDir(t, r.dir, mix)
	own, other := ts.Platforms[r.own], ts.Platforms[r.other]
	otherIdx, err := os.ReadFile(filepath.Join(r.dir, r.other, filepath.FromSlash(manifest.IndexPath(other.Sequence))))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mix, r.own, filepath.FromSlash(manifest.IndexPath(own.Sequence))), otherIdx, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{manifest.DeltaDir} {
		os.RemoveAll(filepath.Join(mix, r.own, d))
	}
	cfg = r.client(t, ckServe(t, mix).URL, r.own, "")
	if _, err := Check(ctx, cfg, &Downloader{Mirrors: cfg.Servers}); !errors.Is(err, manifest.ErrHashMismatch) || !errors.Is(err, ErrRefused) {
		t.Fatalf("another platform's index: %v, want ErrHashMismatch", err)
	}
}

// TestPlatformWindowsNotPortable: a windows-… platform's release that
// records permission bits (published by hand into the platform's
// directory, without mkdelta's automatic portable modes) is refused up
// front by a client following that platform, on any system.
func TestPlatformWindowsNotPortable(t *testing.T) {
	ctx := context.Background()
	r := newPlatRepo(t)
	win := "windows-arm64"
	tr := platTree(t, win, "1.0.0")
	if err := os.Chmod(filepath.Join(tr, "bin", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Straight into the directory, as an older mkdelta would.
	if _, err := releasetools.Publish(ctx, tr, releasetools.PublishOptions{Repo: filepath.Join(r.dir, win), App: "demo", Version: "1.0.0", Key: r.rel,
		Now: func() time.Time { return r.now }}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(r.dir, win, manifest.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := manifest.SignIndex(r.rel, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, win, filepath.FromSlash(manifest.SigPath(manifest.IndexPath(1), r.rel.Public().ID()))), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := releasetools.Refresh(ctx, releasetools.RolesOptions{Repo: r.dir, Keys: []manifest.PrivateKey{r.ts}, Now: func() time.Time { return r.now }}); err != nil {
		t.Fatal(err)
	}
	cfg := r.client(t, ckServe(t, r.dir).URL, r.own, win)
	if err := os.RemoveAll(cfg.AppDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.AppDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.Current = "0.0.1"
	_, err = (&Updater{Config: *cfg}).Prepare(ctx)
	if !errors.Is(err, ErrNotPortable) {
		t.Fatalf("Prepare of a non-portable %s release: %v, want ErrNotPortable", win, err)
	}
}

func TestPickIndex(t *testing.T) {
	ref := func(n uint64) manifest.IndexRef {
		return manifest.IndexRef{Sequence: n, Size: 1, SHA256: [32]byte{byte(n)}}
	}
	own := DefaultPlatform()
	other := "plan9-mips"
	tests := []struct {
		name     string
		platform string
		ts       manifest.Timestamp
		want     string
		err      bool
	}{
		{"own platform", "", manifest.Timestamp{Index: ref(1), Platforms: map[string]manifest.IndexRef{own: ref(2)}}, own, false},
		{"own absent: the platform-less build", "", manifest.Timestamp{Index: ref(1), Platforms: map[string]manifest.IndexRef{other: ref(2)}}, "", false},
		{"no platforms at all", "", manifest.Timestamp{Index: ref(1)}, "", false},
		{"own absent, no platform-less build", "", manifest.Timestamp{Platforms: map[string]manifest.IndexRef{other: ref(2)}}, "", true},
		{"explicit", other, manifest.Timestamp{Index: ref(1), Platforms: map[string]manifest.IndexRef{other: ref(2), own: ref(3)}}, other, false},
		{"explicit absent", "darwin-riscv", manifest.Timestamp{Index: ref(1), Platforms: map[string]manifest.IndexRef{other: ref(2)}}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Platform: tc.platform}
			got, _, err := c.pickIndex(&tc.ts)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("pickIndex = %q, %v", got, err)
			}
			if err != nil && (!errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "--platform")) {
				t.Fatalf("error %v", err)
			}
		})
	}
}

func mustTimestamp(t testing.TB, repo string) *manifest.Timestamp {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, manifest.TimestampName))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := manifest.ParseTimestamp(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}
