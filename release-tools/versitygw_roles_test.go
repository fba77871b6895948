package releasetools

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// TestVersityRoles: the v2 commands on an s3:// repository served by a
// real S3-compatible server: migrate, key rotate (release, timestamp),
// refresh, each also killed between two writes and run again, refused
// while another holds the lease; a v2 client follows every step. (The
// update of an installed application through the bucket by the deltaup
// client is in e2e/run.sh, section 4.)
func TestVersityRoles(t *testing.T) {
	repo := versityGW(t, "v2")
	ctx := context.Background()
	now := time.Now().UTC()
	k := newV2Keys(t)
	publish(t, repo, "1.0.0", versionTree(t, 0), k.rel, now)
	publish(t, repo, "1.1.0", versionTree(t, 1), k.rel, now)
	st, done, err := useStore(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	view := notFound{st}
	root1, err := k.migrate(ctx, repo, now)
	if err != nil {
		t.Fatal(err)
	}
	c := &v2Client{root: root1}
	if seq, err := c.check(ctx, view, now); err != nil || seq != 3 {
		t.Fatalf("client after migrate: %d, %v", seq, err)
	}
	opts := func(keys ...manifest.PrivateKey) RolesOptions {
		return RolesOptions{Repo: repo, Keys: keys, Now: func() time.Time { return now }}
	}
	cs := &crashStore{Store: st, n: -1}
	stores.Lock()
	stores.m[repo].st = cs
	stores.Unlock()
	kill := func(n int) {
		cs.mu.Lock()
		cs.n, cs.writes = n, 0
		cs.mu.Unlock()
	}

	// Rotate the release key, killed after the index signature: clients
	// keep root 1; run again, it completes.
	rel2, _, _ := testKey(t)
	rotRel := KeyChange{Role: manifest.RoleRelease, Add: []manifest.PublicKey{rel2.Public()}, Remove: []string{k.rel.Public().ID()}}
	kill(1)
	if _, err := ChangeKeys(ctx, rotRel, opts(k.a, k.b, rel2)); !errors.Is(err, errCrash) {
		t.Fatalf("killed rotation: %v", err)
	}
	if _, err := c.check(ctx, view, now); err != nil || c.root.Version != 1 {
		t.Fatalf("client after the killed rotation: root %d, %v", c.root.Version, err)
	}
	kill(-1)
	if r, err := ChangeKeys(ctx, rotRel, opts(k.a, k.b, rel2)); err != nil || r.Version != 2 {
		t.Fatalf("rotation run again: %v", err)
	}
	if _, err := c.check(ctx, view, now); err != nil || c.root.Version != 2 {
		t.Fatalf("client after the rotation: root %d, %v", c.root.Version, err)
	}

	// Rotate the timestamp key, killed between root 3 and the timestamp:
	// clients refuse the old timestamp until the same command, run again,
	// issues it.
	ts2, _, _ := testKey(t)
	rotTS := KeyChange{Role: manifest.RoleTimestamp, Add: []manifest.PublicKey{ts2.Public()}, Remove: []string{k.ts.Public().ID()}}
	kill(3) // root 3's two signatures and root 3
	if _, err := ChangeKeys(ctx, rotTS, opts(k.a, k.b, ts2)); !errors.Is(err, errCrash) {
		t.Fatalf("killed rotation: %v", err)
	}
	if _, err := c.check(ctx, view, now); err == nil || !strings.Contains(err.Error(), manifest.TimestampName) {
		t.Fatalf("client between root 3 and its timestamp: %v, want the timestamp refused", err)
	}
	kill(-1)
	if r, err := ChangeKeys(ctx, rotTS, opts(k.a, k.b, ts2)); err != nil || r.Version != 3 {
		t.Fatalf("timestamp rotation run again: %v", err)
	}
	if _, err := c.check(ctx, view, now); err != nil || c.root.Version != 3 {
		t.Fatalf("client after the timestamp rotation: root %d, %v", c.root.Version, err)
	}

	// Refresh, then a release published with the new keys.
	if _, err := Refresh(ctx, opts(k.ts)); !errors.Is(err, ErrRepo) {
		t.Fatalf("refresh with the rotated-out key: %v", err)
	}
	if _, err := Refresh(ctx, opts(ts2)); err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, versionTree(t, 2), PublishOptions{Repo: repo, App: "demo", Version: "1.2.0", Key: rel2, TimestampKeys: []manifest.PrivateKey{ts2}, Now: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	if seq, err := c.check(ctx, view, now); err != nil || seq != 4 {
		t.Fatalf("client after the publish: index %d, %v", seq, err)
	}

	// Headers, and the lease shared with publish.
	bs := st.(*blobStore)
	for _, rel := range []string{"root/3.json", manifest.SigPath("root/3.json", k.a.Public().ID()), manifest.TimestampName, manifest.SigPath(manifest.TimestampName, ts2.Public().ID())} {
		a, err := bs.b.Attributes(ctx, bs.key(rel))
		if err != nil {
			t.Fatal(err)
		}
		if a.CacheControl != CacheControlFor(rel) {
			t.Errorf("%s: Cache-Control %q, want %q", rel, a.CacheControl, CacheControlFor(rel))
		}
	}
	other, err := OpenStore(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	release, err := other.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Refresh(ctx, opts(ts2)); !errors.Is(err, ErrRepo) || !strings.Contains(err.Error(), "holds the lease") {
		t.Errorf("refresh during a publish: %v", err)
	}
	release()
	rep, err := Verify(ctx, repo, rel2.Public(), VerifyOptions{Now: func() time.Time { return now }})
	if err != nil || len(rep.Strays) != 0 || len(rep.Orphans) != 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	for _, f := range rep.Faults { // frame indexes signed by the rotated-out key: see TestRolesOnStores
		if !strings.HasSuffix(f.Path, ".index.json") {
			t.Errorf("verify: %s: %v", f.Path, f.Err)
		}
	}
}
