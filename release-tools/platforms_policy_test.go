package releasetools

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// TestPlatformsPolicy: one release policy at the top of a repository of
// platforms only, shared by both: publishes with rollout settings, a halt
// (SetPolicy) and a refresh each issue a timestamp that names every
// platform's index and the current policy.
func TestPlatformsPolicy(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	repo := filepath.Join(t.TempDir(), "repo")
	rel, _, _ := testKey(t)
	a, _, _ := testKey(t)
	tsKey, _, _ := testKey(t)
	plats := []string{"linux-amd64", "windows-amd64"}
	v0, v1 := tinyTree(t, 0), tinyTree(t, 1)
	for _, p := range plats {
		publishPlatform(t, repo, p, "1.0.0", v0, rel, now)
	}
	roles := map[string][]manifest.PrivateKey{manifest.RoleRoot: {a}, manifest.RoleRelease: {rel}, manifest.RoleTimestamp: {tsKey}}
	if _, err := Migrate(ctx, "demo", roles, nil, RolesOptions{Repo: repo, Now: clock}); err != nil {
		t.Fatal(err)
	}
	root := mustRoot(t, repo)
	// stamped checks that the timestamp names each platform's current
	// index, no platform-less one, and the current policy.
	stamped := func(what string) *manifest.Timestamp {
		t.Helper()
		ts, err := currentTimestamp(repo)
		if err != nil {
			t.Fatal(err)
		}
		if ts.Index != (manifest.IndexRef{}) || len(ts.Platforms) != len(plats) {
			t.Fatalf("%s: timestamp %+v", what, ts)
		}
		for _, p := range plats {
			if ts.Platforms[p] != platformRef(t, repo, p) {
				t.Fatalf("%s: timestamp names %s %+v, the index is %+v", what, p, ts.Platforms[p], platformRef(t, repo, p))
			}
		}
		want, err := currentPolicyRef(repo, root)
		if err != nil || want == nil || ts.Policy == nil || *ts.Policy != *want {
			t.Fatalf("%s: timestamp names policy %+v, the current one is %+v (%v)", what, ts.Policy, want, err)
		}
		return ts
	}
	entry := func(version string) manifest.PolicyEntry {
		t.Helper()
		p, _, err := currentPolicy(repo, root)
		if err != nil || p == nil {
			t.Fatalf("policy: %+v, %v", p, err)
		}
		e, _ := p.Entry(version)
		return e
	}

	// Publishing 1.1.0 for one platform at 10 % writes the policy at the
	// top, never in the platform's directory; the second platform's
	// publish of the same version keeps the entry and the first's index.
	ten := 10
	for _, p := range plats {
		if _, err := Publish(ctx, v1, PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: rel, Platform: p,
			TimestampKeys: []manifest.PrivateKey{tsKey}, Now: clock, Policy: &PolicyChange{Percent: &ten}}); err != nil {
			t.Fatalf("publish %s: %v", p, err)
		}
		stamped("publish " + p)
		if e := entry("1.1.0"); e.Rollout != 10 {
			t.Fatalf("after publishing %s: entry %+v", p, e)
		}
		if _, err := os.Stat(filepath.Join(repo, p, manifest.PolicyName)); !os.IsNotExist(err) {
			t.Fatalf("%s/%s: %v, want none (one policy, at the top)", p, manifest.PolicyName, err)
		}
	}

	// A halt: a new policy, and a timestamp naming both platforms.
	before := stamped("before the halt")
	if _, err := SetPolicy(ctx, PolicyChange{Version: "1.1.0", Halt: true}, PolicyOptions{Repo: repo, Keys: []manifest.PrivateKey{rel},
		TimestampKeys: []manifest.PrivateKey{tsKey}, Now: clock}); err != nil {
		t.Fatal(err)
	}
	ts := stamped("halt")
	if ts.Sequence != before.Sequence+1 || ts.Policy.Sequence != before.Policy.Sequence+1 {
		t.Fatalf("halt: timestamp %+v, before %+v", ts, before)
	}
	if e := entry("1.1.0"); !e.Halted || e.Rollout != 10 {
		t.Fatalf("after the halt: entry %+v", e)
	}
	// A version no platform has is refused, naming the indexes.
	snap := snapshot(t, repo)
	_, err := SetPolicy(ctx, PolicyChange{Version: "9.0.0", Pull: true}, PolicyOptions{Repo: repo, Keys: []manifest.PrivateKey{rel}, Now: clock})
	if err == nil || !strings.Contains(err.Error(), "linux-amd64 index") || !strings.Contains(err.Error(), "windows-amd64 index") {
		t.Fatalf("SetPolicy of a version no index has: %v", err)
	}
	if after := snapshot(t, repo); len(after) != len(snap) {
		t.Fatal("a refused SetPolicy wrote files")
	}

	// Refresh and a timestamp-key rotation keep both platforms and the
	// policy; verify of each platform finds the policy named.
	now = now.Add(time.Hour)
	if _, err := Refresh(ctx, RolesOptions{Repo: repo, Keys: []manifest.PrivateKey{tsKey}, Now: clock}); err != nil {
		t.Fatal(err)
	}
	stamped("refresh")
	ts2, _, _ := testKey(t)
	if _, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleTimestamp, Add: []manifest.PublicKey{ts2.Public()}, Remove: []string{tsKey.Public().ID()}},
		RolesOptions{Repo: repo, Keys: []manifest.PrivateKey{a, ts2}, Now: clock}); err != nil {
		t.Fatal(err)
	}
	root = mustRoot(t, repo)
	stamped("timestamp key rotation")
	for _, p := range plats {
		rep, err := Verify(ctx, repo, rel.Public(), VerifyOptions{Platform: p, Now: clock})
		if err != nil || !rep.OK() {
			t.Fatalf("verify %s: %v %+v", p, err, rep)
		}
	}
}
