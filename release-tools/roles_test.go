package releasetools

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// v2Fixture: a repository with one release, migrated with root keys a, b
// (threshold 2), release key rel (the v1 key), timestamp key ts.
type v2Fixture struct {
	repo               string
	now                time.Time
	a, b, rel, ts      manifest.PrivateKey
	relPubFile, tsPubF []byte
}

func newV2Fixture(t *testing.T) *v2Fixture {
	t.Helper()
	f := &v2Fixture{repo: filepath.Join(t.TempDir(), "repo"), now: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	f.a, _, _ = testKey(t)
	f.b, _, _ = testKey(t)
	f.rel, _, f.relPubFile = testKey(t)
	f.ts, _, f.tsPubF = testKey(t)
	publish(t, f.repo, "1.0.0", versionTree(t, 0), f.rel, f.now)
	roles := map[string][]manifest.PrivateKey{manifest.RoleRoot: {f.a, f.b}, manifest.RoleRelease: {f.rel}, manifest.RoleTimestamp: {f.ts}}
	if _, err := Migrate(context.Background(), "demo", roles, map[string]int{manifest.RoleRoot: 2}, f.opts()); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *v2Fixture) opts(keys ...manifest.PrivateKey) RolesOptions {
	return RolesOptions{Repo: f.repo, Keys: keys, Now: func() time.Time { return f.now }}
}

func TestMigrateWritesSignedDocuments(t *testing.T) {
	f := newV2Fixture(t)
	root, err := LoadRoot(f.repo)
	if err != nil || root == nil || root.Version != 1 || root.Roles[manifest.RoleRoot].Threshold != 2 {
		t.Fatalf("LoadRoot = %+v, %v", root, err)
	}
	ts, err := currentTimestamp(f.repo)
	if err != nil || ts == nil || ts.Sequence != 1 || ts.Index.Sequence != 2 || !ts.Expires.Equal(f.now.Add(DefaultTimestampValidity)) {
		t.Fatalf("timestamp = %+v, %v", ts, err)
	}
	if _, err := Migrate(context.Background(), "demo", nil, nil, f.opts()); !errors.Is(err, ErrRepo) {
		t.Fatalf("second migrate: %v, want ErrRepo", err)
	}
	// The stock minisign CLI verifies each document with its key.
	if _, err := exec.LookPath("minisign"); err == nil {
		pub := filepath.Join(t.TempDir(), "ts.pub")
		if err := os.WriteFile(pub, f.tsPubF, 0o644); err != nil {
			t.Fatal(err)
		}
		doc := filepath.Join(f.repo, manifest.TimestampName)
		out, err := exec.Command("minisign", "-V", "-H", "-m", doc, "-x", filepath.Join(f.repo, manifest.SigPath(manifest.TimestampName, f.ts.Public().ID())), "-p", pub).CombinedOutput()
		if err != nil {
			t.Fatalf("minisign -V: %v\n%s", err, out)
		}
	}
	// Migration moved the inline file list out of the index (sequence 2).
	if m := mustManifest(t, f.repo); m.Sequence != 2 || m.Releases[0].Files != nil || m.Releases[0].FileList == nil {
		t.Fatalf("index after migrate: sequence %d, inline files %d", m.Sequence, len(m.Releases[0].Files))
	}
	rep, err := Verify(context.Background(), f.repo, f.rel.Public(), VerifyOptions{Now: func() time.Time { return f.now }})
	if err != nil || !rep.OK() || len(rep.Strays) != 0 {
		t.Fatalf("verify after migrate: %v %+v", err, rep)
	}
}

func TestChangeKeys(t *testing.T) {
	ctx := context.Background()
	f := newV2Fixture(t)
	newTS, _, _ := testKey(t)
	rotateTS := KeyChange{Role: manifest.RoleTimestamp, Add: []manifest.PublicKey{newTS.Public()}, Remove: []string{f.ts.Public().ID()}}
	tests := []struct {
		name string
		kc   KeyChange
		keys []manifest.PrivateKey
	}{
		{"one root key of two", rotateTS, []manifest.PrivateKey{f.a, newTS}},
		{"no new timestamp key to stamp with", rotateTS, []manifest.PrivateKey{f.a, f.b}},
		{"threshold above the keys", KeyChange{Role: manifest.RoleRelease, Threshold: 2}, []manifest.PrivateKey{f.a, f.b, f.rel}},
		{"revoke an unknown key", KeyChange{Role: manifest.RoleRelease, Remove: []string{"0123456789ABCDEF"}}, []manifest.PrivateKey{f.a, f.b}},
		{"revoke the last key", KeyChange{Role: manifest.RoleRelease, Remove: []string{f.rel.Public().ID()}}, []manifest.PrivateKey{f.a, f.b}},
		{"unknown role", KeyChange{Role: "snapshot"}, []manifest.PrivateKey{f.a, f.b}},
	}
	before := listAll(t, f.repo)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ChangeKeys(ctx, tc.kc, f.opts(tc.keys...)); err == nil {
				t.Fatal("accepted")
			}
			if after := listAll(t, f.repo); !slices.Equal(before, after) {
				t.Fatalf("a refused change wrote files: %v", after)
			}
		})
	}
	root, err := ChangeKeys(ctx, rotateTS, f.opts(f.a, f.b, newTS))
	if err != nil {
		t.Fatal(err)
	}
	if root.Version != 2 || !slices.Equal(root.Roles[manifest.RoleTimestamp].KeyIDs, []string{newTS.Public().ID()}) {
		t.Fatalf("root 2: %+v", root)
	}
	if _, ok := root.Keys[f.ts.Public().ID()]; ok {
		t.Fatal("the rotated-out key stays in the root")
	}
	if _, err := Refresh(ctx, f.opts(f.ts)); !errors.Is(err, ErrRepo) {
		t.Fatalf("refresh with the revoked key: %v, want ErrRepo", err)
	}
	ts, err := Refresh(ctx, f.opts(newTS))
	if err != nil || ts.Sequence != 2 {
		t.Fatalf("refresh: %+v, %v", ts, err)
	}
	// Verify reports a timestamp that names an older index, and one that
	// has expired.
	if _, err := Publish(ctx, versionTree(t, 2), PublishOptions{Repo: f.repo, App: "demo", Version: "1.0.5", Key: f.rel, Now: func() time.Time { return f.now }}); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{f.now, f.now.Add(2 * DefaultTimestampValidity)} {
		rep, err := Verify(ctx, f.repo, f.rel.Public(), VerifyOptions{Now: func() time.Time { return at }})
		if err != nil || rep.OK() || rep.Faults[0].Path != manifest.TimestampName {
			t.Fatalf("verify with a stale timestamp at %s: %v %v", at, err, rep.Faults)
		}
	}
	if _, err := Refresh(ctx, f.opts(newTS)); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadRoot(f.repo); err != nil || got.Version != 2 {
		t.Fatalf("LoadRoot after rotation: %v", err)
	}
	// 2 of 3 release keys; publish needs two of them.
	rel2, _, _ := testKey(t)
	if _, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleRelease, Add: []manifest.PublicKey{rel2.Public()}, Threshold: 2}, f.opts(f.a, f.b, f.rel, rel2)); err != nil {
		t.Fatal(err)
	}
	_, err = Publish(ctx, versionTree(t, 1), PublishOptions{Repo: f.repo, App: "demo", Version: "1.1.0", Key: f.rel, Now: func() time.Time { return f.now }})
	if !errors.Is(err, ErrRepo) {
		t.Fatalf("publish with one release key of a threshold of 2: %v, want ErrRepo", err)
	}
	if _, err := Publish(ctx, versionTree(t, 1), PublishOptions{Repo: f.repo, App: "demo", Version: "1.1.0", Key: f.rel, ExtraKeys: []manifest.PrivateKey{rel2},
		TimestampKeys: []manifest.PrivateKey{newTS}, Now: func() time.Time { return f.now }}); err != nil {
		t.Fatal(err)
	}
	if ts, _ := currentTimestamp(f.repo); ts.Index.Sequence != 4 {
		t.Fatalf("the timestamp names index %d, want 4", ts.Index.Sequence)
	}
}
