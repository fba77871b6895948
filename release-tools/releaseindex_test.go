package releasetools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// compactView is what a v2 client of the compact index reads: the
// timestamp, the compact index it implies (index/SEQ.json, which must
// name the full index the timestamp pins) and every release document. It
// returns the index sequence.
func compactView(repo string, root *manifest.Root, now time.Time) (uint64, error) {
	tsRaw, err := readFile(repo, manifest.TimestampName, manifest.MaxTimestampSize)
	if err != nil {
		return 0, err
	}
	ts, err := manifest.OpenTimestamp(tsRaw, readSigs(repo, manifest.TimestampName, root.Roles[manifest.RoleTimestamp].KeyIDs), root, manifest.TimestampOptions{App: root.App, Now: now})
	if err != nil {
		return 0, err
	}
	p := manifest.ReleaseIndexPath(ts.Index.Sequence)
	enc, err := readFile(repo, p, manifest.MaxReleaseIndexSize)
	if err != nil {
		return 0, err
	}
	x, err := manifest.OpenReleaseIndex(enc, readSigs(repo, p, root.Roles[manifest.RoleRelease].KeyIDs), root, ts.Index, manifest.OpenOptions{App: root.App, Now: now})
	if err != nil {
		return 0, err
	}
	for _, e := range x.Releases {
		b, err := readFile(repo, manifest.ReleaseDocPath(e.Version, e.Doc.SHA256), manifest.MaxReleaseDocSize)
		if err != nil {
			return 0, err
		}
		if _, err := manifest.OpenReleaseDoc(b, &e, root.App); err != nil {
			return 0, err
		}
	}
	return x.Sequence, nil
}

// TestBucketPublishKilledCompactIndex: a v2 publish (with a timestamp key)
// on a bucket, stopped after any number of writes, leaves clients of the
// compact index the previous index or the new one, complete (release
// documents before the compact index, before the full index, before the
// timestamp); the same publish run again completes, and verify checks
// the compact index and its documents.
func TestBucketPublishKilledCompactIndex(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	k := newV2Keys(t)
	v := []string{versionTree(t, 0), versionTree(t, 1), versionTree(t, 2)}
	opts := func(repo string) PublishOptions {
		return PublishOptions{Repo: repo, App: "demo", Version: "1.2.0", Key: k.rel, TimestampKeys: []manifest.PrivateKey{k.ts}, Now: clock}
	}
	baseRepo, base, _ := memRepo(t, "cx-base")
	publish(t, baseRepo, "1.0.0", v[0], k.rel, now)
	publish(t, baseRepo, "1.1.0", v[1], k.rel, now)
	root, err := k.migrate(ctx, baseRepo, now)
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := compactView(baseRepo, root, now); err != nil || seq != 3 {
		t.Fatalf("after migrate (its file lists outlined: sequence 3): %d, %v", seq, err)
	}
	count := func() int {
		repo := "mem://cx-count/repo"
		st := newBlobStore(repo, cloneBucket(t, base), "repo/")
		registerStore(t, repo, st)
		cs := &crashStore{Store: st, n: -1}
		stores.m[repo].st = cs
		if _, err := Publish(ctx, v[2], opts(repo)); err != nil {
			t.Fatal(err)
		}
		if seq, err := compactView(repo, root, now); err != nil || seq != 4 {
			t.Fatalf("after the publish: %d, %v", seq, err)
		}
		return cs.writes
	}()
	windows := 0
	for n := 0; n < count; n++ {
		repo := fmt.Sprintf("mem://cx-kill%d/repo", n)
		st := newBlobStore(repo, cloneBucket(t, base), "repo/")
		registerStore(t, repo, st)
		cs := &crashStore{Store: st, n: n}
		stores.m[repo].st = cs
		if _, err := Publish(ctx, v[2], opts(repo)); !errors.Is(err, errCrash) {
			t.Fatalf("publish killed after %d of %d writes: %v", n, count, err)
		}
		// Between the timestamp's signature and the timestamp, clients
		// refuse the timestamp until the rerun (a pair of objects; as for
		// refresh): no other kill point may fail them.
		if seq, err := compactView(repo, root, now); err != nil && strings.Contains(err.Error(), manifest.TimestampName) {
			windows++
		} else if err != nil || (seq != 3 && seq != 4) {
			t.Fatalf("compact-index client after a kill at write %d of %d: %d, %v", n, count, seq, err)
		}
		cs.mu.Lock()
		cs.n = -1
		cs.mu.Unlock()
		if _, err := Publish(ctx, v[2], opts(repo)); err != nil {
			t.Fatalf("rerun after a kill at write %d: %v", n, err)
		}
		// A kill after manifest.json leaves the timestamp to the next
		// refresh (the rerun finds the release published: nothing to do).
		if _, err := Refresh(ctx, RolesOptions{Repo: repo, Keys: []manifest.PrivateKey{k.ts}, Now: clock}); err != nil {
			t.Fatalf("refresh after the rerun (kill at %d): %v", n, err)
		}
		if seq, err := compactView(repo, root, now); err != nil || seq != 4 {
			t.Fatalf("after the rerun (kill at %d): %d, %v", n, seq, err)
		}
		rep, err := Verify(ctx, repo, k.rel.Public(), VerifyOptions{Now: clock})
		if err != nil || !rep.OK() || len(rep.Strays) != 0 {
			t.Fatalf("verify after the rerun (kill at %d): %v %+v", n, err, rep)
		}
	}
	t.Logf("%d writes per publish, each a kill point; %d leave a timestamp clients refuse until the rerun", count, windows)
	if windows > 2 {
		t.Errorf("%d kill points leave a timestamp clients refuse; at most 2 expected", windows)
	}
}

// TestVerifyCompactIndex: verify reports a release document or compact
// index that is damaged or missing.
func TestVerifyCompactIndex(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	k := newV2Keys(t)
	repo := t.TempDir() + "/repo"
	publish(t, repo, "1.0.0", versionTree(t, 0), k.rel, now)
	if _, err := k.migrate(ctx, repo, now); err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, versionTree(t, 1), PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: k.rel, TimestampKeys: []manifest.PrivateKey{k.ts}, Now: clock}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, repo, k.rel.Public(), VerifyOptions{Now: clock})
	if err != nil || !rep.OK() || len(rep.Strays) != 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	m := mustManifest(t, repo)
	raw, _ := readFile(repo, manifest.ReleaseIndexPath(m.Sequence), manifest.MaxReleaseIndexSize)
	x, err := manifest.ParseReleaseIndex(raw)
	if err != nil {
		t.Fatal(err)
	}
	doc := manifest.ReleaseDocPath(x.Releases[1].Version, x.Releases[1].Doc.SHA256)
	for _, tc := range []struct{ name, path, want string }{
		{"damaged release document", doc, "SHA-256"},
		{"damaged compact index", manifest.ReleaseIndexPath(m.Sequence), "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flip(t, repo+"/"+tc.path)
			defer flip(t, repo+"/"+tc.path)
			rep, err := Verify(ctx, repo, k.rel.Public(), VerifyOptions{Now: clock})
			if err != nil || rep.OK() {
				t.Fatalf("verify of a %s: %v, %+v", tc.name, err, rep)
			}
			found := false
			for _, f := range rep.Faults {
				found = found || f.Path == tc.path && strings.Contains(f.Err.Error(), tc.want)
			}
			if !found {
				t.Fatalf("no fault at %s naming %q: %v", tc.path, tc.want, rep.Faults)
			}
		})
	}
}
