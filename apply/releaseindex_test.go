package apply

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

func fetchedFull(reqs []string) bool {
	return slices.ContainsFunc(reqs, func(p string) bool {
		return strings.HasPrefix(p, "/manifests/") || strings.HasPrefix(p, "/"+manifest.DeltaDir+"/")
	})
}

// TestCompactIndexInstall: a client one release behind updates through
// the compact index: its delta (carrying the new release's document),
// nothing of the full index; the update installs the new tree; the documents it
// holds are cached (a second check fetches no document).
func TestCompactIndexInstall(t *testing.T) {
	ctx := context.Background()
	v := newV2Repo(t, nil)
	srv := ckServe(t, v.dir)
	c := v.client(t, srv.URL)
	// The first check knows no installed version (every release may be
	// it): the full index costs less than every release document, and the
	// compact index is derived from it (only its signature fetched).
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	if reqs := srv.requests(); slices.Contains(reqs, "/"+manifest.ReleaseIndexPath(4)) || !fetchedFull(reqs) ||
		!slices.ContainsFunc(reqs, func(p string) bool { return strings.HasPrefix(p, "/"+manifest.ReleaseIndexPath(4)+".") }) {
		t.Fatalf("first check: %v", reqs)
	}
	v.base.trees["1.3.0"] = ckTree(t, 7, v.base.pubFile)
	if _, err := releasetools.Publish(ctx, v.base.trees["1.3.0"], releasetools.PublishOptions{Repo: v.dir, App: "demo", Version: "1.3.0",
		Key: v.rel1, TimestampKeys: []manifest.PrivateKey{v.ts}, Now: func() time.Time { return v.now }}); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	before := len(srv.requests())
	u := &Updater{Config: *c.cfg}
	p, err := u.Prepare(ctx)
	if err != nil || p.Check.Target != "1.3.0" {
		t.Fatalf("Prepare: %+v, %v", p, err)
	}
	if _, err := u.Install(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()[before:]
	if fetchedFull(reqs) || !slices.Contains(reqs, "/"+manifest.ReleaseDeltaPath(4, 5)) {
		t.Fatalf("the update did not go through the compact index: %v", reqs)
	}
	if ckDigest(t, c.cfg.AppDir) != ckDigest(t, v.base.trees["1.3.0"]) {
		t.Fatal("the app directory is not 1.3.0")
	}
	st := c.state(t)
	if st.Sequence != 5 || st.Installed != "1.3.0" {
		t.Fatalf("state: sequence %d, installed %q", st.Sequence, st.Installed)
	}
	// The next check: nothing but the root probe and the timestamp.
	before = len(srv.requests())
	if res, err := c.check(t); err != nil || !res.UpToDate {
		t.Fatalf("check after the update: %+v, %v", res, err)
	}
	if reqs := srv.requests()[before:]; slices.ContainsFunc(reqs, func(p string) bool { return strings.HasPrefix(p, "/releases/") || strings.HasPrefix(p, "/index/") }) {
		t.Fatalf("a check with nothing new fetched documents: %v", reqs)
	}
}

// TestCompactIndexFallback: whatever is wrong with the compact index or a
// release document, the client falls back to the full index, checked as
// before, and finds the new release; a delta that does not rebuild the
// signed compact index is ignored (the compact index is fetched whole).
func TestCompactIndexFallback(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		// want: the request that shows the fallback ("" = the full index).
		want string
	}{
		{"no compact index (published before compact indexes)", func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, manifest.ReleaseIndexDir))
		}, ""},
		{"a release document altered", func(t *testing.T, dir string) {
			docs, _ := filepath.Glob(filepath.Join(dir, manifest.ReleaseDocDir, "1.3.0", "*.json"))
			if len(docs) != 1 {
				t.Fatalf("release documents of 1.3.0: %v", docs)
			}
			b, _ := os.ReadFile(docs[0])
			os.WriteFile(docs[0], []byte(strings.Replace(string(b), `"channel":"stable"`, `"channel":"beta"`, 1)), 0o644)
			os.Remove(filepath.Join(dir, filepath.FromSlash(manifest.ReleaseDeltaPath(4, 5))))
		}, ""},
		{"a delta carrying an altered document", func(t *testing.T, dir string) {
			p := filepath.Join(dir, filepath.FromSlash(manifest.ReleaseDeltaPath(4, 5)))
			b, _ := os.ReadFile(p)
			if !strings.Contains(string(b), `.tar.gz"`) {
				t.Fatal("the delta carries no document")
			}
			os.WriteFile(p, []byte(strings.Replace(string(b), `"format":"tar.gz"`, `"format":"tar.zst"`, 1)), 0o644)
		}, "/" + manifest.ReleaseIndexPath(5)},
		{"an older compact index served under the new name", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(manifest.ReleaseIndexPath(4))))
			os.WriteFile(filepath.Join(dir, filepath.FromSlash(manifest.ReleaseIndexPath(5))), b, 0o644)
			os.Remove(filepath.Join(dir, filepath.FromSlash(manifest.ReleaseDeltaPath(4, 5))))
		}, ""},
		{"a compact delta that does not apply", func(t *testing.T, dir string) {
			p := filepath.Join(dir, filepath.FromSlash(manifest.ReleaseDeltaPath(4, 5)))
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"keep":`, `"keep":9`, 1)), 0o644)
			os.Remove(filepath.Join(dir, filepath.FromSlash(manifest.ReleaseIndexPath(5))))
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newV2Repo(t, nil)
			srv := ckServe(t, v.dir)
			c := v.client(t, srv.URL)
			if _, err := c.check(t); err != nil {
				t.Fatal(err)
			}
			v.base.trees["1.3.0"] = ckTree(t, 7, v.base.pubFile)
			if _, err := releasetools.Publish(ctx, v.base.trees["1.3.0"], releasetools.PublishOptions{Repo: v.dir, App: "demo", Version: "1.3.0",
				Key: v.rel1, TimestampKeys: []manifest.PrivateKey{v.ts}, Now: func() time.Time { return v.now }}); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, v.dir)
			v.touch(t)
			before := len(srv.requests())
			res, err := c.check(t)
			if err != nil || res.Target != "1.3.0" {
				t.Fatalf("check: %+v, %v", res, err)
			}
			reqs := srv.requests()[before:]
			if tc.want == "" && !fetchedFull(reqs) {
				t.Fatalf("the full index was not fetched: %v", reqs)
			}
			if tc.want != "" && (!slices.Contains(reqs, tc.want) || fetchedFull(reqs)) {
				t.Fatalf("%s was not fetched, or the full index was: %v", tc.want, reqs)
			}
			if st := c.state(t); st.Sequence != 5 {
				t.Fatalf("state sequence %d", st.Sequence)
			}
		})
	}
}

// TestCompactIndexPlatform: a client of a platform follows its platform's
// compact index (PLATFORM/index/...), and updates from the artifacts in
// the platform's directory.
func TestCompactIndexPlatform(t *testing.T) {
	ctx := context.Background()
	r := newPlatRepo(t)
	srv := ckServe(t, r.dir)
	cfg := r.client(t, srv.URL, r.own, "")
	cfg.Current = "1.0.0" // known: the compact index from the first check
	if res, err := Check(ctx, cfg, &Downloader{Mirrors: cfg.Servers}); err != nil || res.Target != "1.1.0" {
		t.Fatalf("first check: %+v, %v", res, err)
	}
	// The compact index of the platform is read; its two release
	// documents would cost more than this tiny full index, which is read
	// instead (and the documents derived from it cached).
	reqs := srv.requests()
	if !slices.Contains(reqs, "/"+r.own+"/"+manifest.ReleaseIndexPath(3)) {
		t.Fatalf("first check with the installed version known: %v", reqs)
	}
	tr := platTree(t, r.own, "1.2.0")
	if _, err := releasetools.Publish(ctx, tr, releasetools.PublishOptions{Repo: r.dir, App: "demo", Version: "1.2.0", Key: r.rel,
		Platform: r.own, TimestampKeys: []manifest.PrivateKey{r.ts}, Now: func() time.Time { return r.now }}); err != nil {
		t.Fatal(err)
	}
	before := len(srv.requests())
	u := &Updater{Config: *cfg}
	p, err := u.Prepare(ctx)
	if err != nil || p.Check.Target != "1.2.0" {
		t.Fatalf("Prepare: %+v, %v", p, err)
	}
	reqs = srv.requests()[before:]
	if !slices.Contains(reqs, "/"+r.own+"/"+manifest.ReleaseDeltaPath(3, 4)) || slices.ContainsFunc(reqs, func(q string) bool { return strings.Contains(q, "/manifests/") }) {
		t.Fatalf("update check: %v", reqs)
	}
	for _, s := range p.Check.Route.Steps {
		if !strings.HasPrefix(s.Artifact.Path, r.own+"/") {
			t.Fatalf("artifact %s is not in %s/", s.Artifact.Path, r.own)
		}
	}
	if _, err := u.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if ckDigest(t, cfg.AppDir) != ckDigest(t, tr) {
		t.Fatal("the app directory is not the platform's 1.2.0")
	}
}
