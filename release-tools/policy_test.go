package releasetools

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// snapshot maps every file of dir to its content.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, ".lock") {
			return nil
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSetPolicy(t *testing.T) {
	ctx := context.Background()
	f := newV2Fixture(t)
	po := func(keys ...manifest.PrivateKey) PolicyOptions {
		return PolicyOptions{Repo: f.repo, Keys: keys, TimestampKeys: []manifest.PrivateKey{f.ts}, Now: func() time.Time { return f.now }}
	}
	n := func(i int) *int { return &i }
	s := func(v string) *string { return &v }

	// Refusals write nothing.
	before := snapshot(t, f.repo)
	for _, tc := range []struct {
		name string
		ch   PolicyChange
		keys []manifest.PrivateKey
		want string
	}{
		{"nothing", PolicyChange{Version: "1.0.0"}, []manifest.PrivateKey{f.rel}, "changes nothing"},
		{"no version", PolicyChange{Halt: true}, []manifest.PrivateKey{f.rel}, "needs a version"},
		{"percent 101", PolicyChange{Version: "1.0.0", Percent: n(101)}, []manifest.PrivateKey{f.rel}, "outside 0..100"},
		{"halt and resume", PolicyChange{Version: "1.0.0", Halt: true, Resume: true}, []manifest.PrivateKey{f.rel}, "both sets and clears"},
		{"pulled and critical", PolicyChange{Version: "1.0.0", Pull: true, Critical: true}, []manifest.PrivateKey{f.rel}, "pulled and critical"},
		{"notes with an escape", PolicyChange{Version: "1.0.0", Notes: s("\x1b[2J")}, []manifest.PrivateKey{f.rel}, "control character"},
		{"notes URL over http", PolicyChange{Version: "1.0.0", NotesURL: s("http://example.com")}, []manifest.PrivateKey{f.rel}, "https"},
		{"not a release", PolicyChange{Version: "2.0.0", Halt: true}, []manifest.PrivateKey{f.rel}, "not a release of index"},
		{"minimum not a release", PolicyChange{MinimumVersion: s("0.9.0")}, []manifest.PrivateKey{f.rel}, "not a release of index"},
		{"timestamp key signs", PolicyChange{Version: "1.0.0", Halt: true}, []manifest.PrivateKey{f.ts}, "needs 1 signature"},
	} {
		if _, err := SetPolicy(ctx, tc.ch, po(tc.keys...)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if after := snapshot(t, f.repo); len(after) != len(before) {
		t.Fatalf("a refused change wrote %d files", len(after)-len(before))
	}

	p, err := SetPolicy(ctx, PolicyChange{Version: "v1.0.0", Percent: n(10), Notes: s("first")}, po(f.rel))
	if err != nil || p.Sequence != 1 || len(p.Releases) != 1 || p.Releases[0].Rollout != 10 || p.Releases[0].Notes != "first" {
		t.Fatalf("SetPolicy = %+v, %v", p, err)
	}
	ts, _ := currentTimestamp(f.repo)
	if ts.Policy == nil || ts.Policy.Sequence != 1 {
		t.Fatalf("the timestamp does not name policy 1: %+v", ts.Policy)
	}
	// Raising to 100 with the notes cleared drops the entry; the policy
	// keeps its sequence going.
	if p, err = SetPolicy(ctx, PolicyChange{Version: "1.0.0", Percent: n(100), Notes: s("")}, po(f.rel)); err != nil || p.Sequence != 2 || len(p.Releases) != 0 {
		t.Fatalf("raise to 100: %+v, %v", p, err)
	}
	if p, err = SetPolicy(ctx, PolicyChange{MinimumVersion: s("v1.0.0")}, PolicyOptions{Repo: f.repo, Keys: []manifest.PrivateKey{f.rel}, Validity: 2 * time.Hour, Now: func() time.Time { return f.now }}); err != nil || p.MinimumVersion != "1.0.0" {
		t.Fatalf("minimum version: %+v, %v", p, err)
	}
	// Without the timestamp key, the timestamp still names policy 2;
	// refresh names policy 3, and verify is then clean.
	rep, err := Verify(ctx, f.repo, f.rel.Public(), VerifyOptions{Now: func() time.Time { return f.now }})
	if err != nil || rep.OK() {
		t.Fatalf("verify before refresh: %v, faults %v: want a fault (timestamp names an older policy)", err, rep.Faults)
	}
	if ts, err := Refresh(ctx, f.opts(f.ts)); err != nil || ts.Policy == nil || ts.Policy.Sequence != 3 {
		t.Fatalf("refresh: %+v, %v", ts, err)
	}
	rep, err = Verify(ctx, f.repo, f.rel.Public(), VerifyOptions{Now: func() time.Time { return f.now }})
	if err != nil || !rep.OK() || len(rep.Strays) != 0 {
		t.Fatalf("verify after refresh: %v %+v", err, rep)
	}
	// An expired policy is a fault (its validity, 2 hours, is shorter than
	// the timestamp's).
	rep, _ = Verify(ctx, f.repo, f.rel.Public(), VerifyOptions{Now: func() time.Time { return p.Expires }})
	found := false
	for _, fl := range rep.Faults {
		found = found || (fl.Path == manifest.PolicyPath(3) && errors.Is(fl.Err, manifest.ErrExpired))
	}
	if !found {
		t.Fatalf("verify after the policy expired: %v", rep.Faults)
	}
	// A release key rotation signs the policy with the new key too:
	// refresh and verify stay clean under root 2.
	rel2, _, _ := testKey(t)
	if _, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleRelease, Add: []manifest.PublicKey{rel2.Public()}, Remove: []string{f.rel.Public().ID()}},
		RolesOptions{Repo: f.repo, Keys: []manifest.PrivateKey{f.a, f.b, rel2}, Now: func() time.Time { return f.now }}); err != nil {
		t.Fatal(err)
	}
	if _, err := Refresh(ctx, f.opts(f.ts)); err != nil {
		t.Fatalf("refresh after the release key rotation: %v", err)
	}
	if rep, err := Verify(ctx, f.repo, f.rel.Public(), VerifyOptions{Now: func() time.Time { return f.now }}); err != nil || !rep.OK() {
		t.Fatalf("verify after the release key rotation: %v %v", err, rep.Faults)
	}
	if _, err := SetPolicy(ctx, PolicyChange{Version: "1.0.0", Halt: true}, po(rel2)); err != nil {
		t.Fatalf("SetPolicy with the new release key: %v", err)
	}
	f.rel = rel2
	// A policy.json the release keys did not sign stops refresh.
	if err := os.WriteFile(filepath.Join(f.repo, manifest.SigPath(manifest.PolicyPath(4), f.rel.Public().ID())), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Refresh(ctx, f.opts(f.ts)); !errors.Is(err, ErrRepo) || !strings.Contains(err.Error(), "policy.json") {
		t.Fatalf("refresh with an unsigned policy: %v", err)
	}
}

func TestPublishPolicy(t *testing.T) {
	ctx := context.Background()
	// A v1 repository refuses policy settings before writing anything.
	priv, _, _ := testKey(t)
	repo := filepath.Join(t.TempDir(), "v1")
	publish(t, repo, "1.0.0", versionTree(t, 0), priv, time.Now())
	before := snapshot(t, repo)
	ten := 10
	_, err := Publish(ctx, versionTree(t, 1), PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: priv, Policy: &PolicyChange{Percent: &ten}})
	if !errors.Is(err, ErrRepo) || !strings.Contains(err.Error(), "v2 repository") {
		t.Fatalf("v1 publish with a rollout: %v", err)
	}
	if after := snapshot(t, repo); len(after) != len(before) {
		t.Fatal("the refused publish wrote files")
	}
	// Invalid settings are refused up front.
	if _, err := Publish(ctx, versionTree(t, 1), PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: priv, Policy: &PolicyChange{Pull: true, Critical: true}}); err == nil {
		t.Fatal("pulled and critical accepted")
	}

	f := newV2Fixture(t)
	res, err := Publish(ctx, versionTree(t, 1), PublishOptions{Repo: f.repo, App: "demo", Version: "1.1.0", Key: f.rel, TimestampKeys: []manifest.PrivateKey{f.ts},
		Now: func() time.Time { return f.now }, Policy: &PolicyChange{Percent: &ten, Critical: true}})
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := currentPolicy(f.repo, mustRoot(t, f.repo))
	if err != nil || p == nil || len(p.Releases) != 1 || p.Releases[0] != (manifest.PolicyEntry{Version: "1.1.0", Rollout: 10, Critical: true}) {
		t.Fatalf("policy after publish: %+v, %v", p, err)
	}
	ts, _ := currentTimestamp(f.repo)
	if ts.Index.Sequence != res.Sequence || ts.Policy == nil || ts.Policy.Sequence != p.Sequence {
		t.Fatalf("timestamp: %+v", ts)
	}
	// A later publish without policy settings renews the policy (a new
	// expiry, the same entries).
	f.now = f.now.Add(30 * 24 * time.Hour)
	if _, err := Publish(ctx, versionTree(t, 2), PublishOptions{Repo: f.repo, App: "demo", Version: "1.2.0", Key: f.rel, TimestampKeys: []manifest.PrivateKey{f.ts},
		Now: func() time.Time { return f.now }}); err != nil {
		t.Fatal(err)
	}
	p2, _, err := currentPolicy(f.repo, mustRoot(t, f.repo))
	if err != nil || p2.Sequence != p.Sequence+1 || !p2.Expires.Equal(f.now.Add(DefaultValidity)) || fmt.Sprint(p2.Releases) != fmt.Sprint(p.Releases) {
		t.Fatalf("policy after a publish without settings: %+v, %v", p2, err)
	}
}

func mustRoot(t testing.TB, repo string) *manifest.Root {
	t.Helper()
	r, err := LoadRoot(repo)
	if err != nil || r == nil {
		t.Fatalf("LoadRoot: %v", err)
	}
	return r
}

// TestTimestampMtimeAdvances: timestamps issued within one second get
// distinct modification seconds (see mtime.go), so a server that answers
// conditional requests by modification second and size serves each.
func TestTimestampMtimeAdvances(t *testing.T) {
	f := newV2Fixture(t)
	prev := localMtime(f.repo, manifest.TimestampName)
	for i := range 3 {
		if _, err := Refresh(context.Background(), f.opts(f.ts)); err != nil {
			t.Fatal(err)
		}
		for _, rel := range timestampFiles([]manifest.PrivateKey{f.ts}) {
			if m := localMtime(f.repo, rel); m.Unix() <= prev.Unix() {
				t.Fatalf("refresh %d: %s modified at %v, not in a later second than the previous timestamp (%v)", i+1, rel, m, prev)
			}
		}
		prev = localMtime(f.repo, manifest.TimestampName)
	}
}
