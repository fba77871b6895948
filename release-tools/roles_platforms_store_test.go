package releasetools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// platformsClient reads a repository of platforms as a v2 client of each
// platform does: walks root/N+1.json from root, opens the timestamp with
// the timestamp keys, then every platform's index it names (below
// PLATFORM/) with the release keys, and the policy it names. It returns
// the timestamp and the newest root.
func platformsClient(ctx context.Context, st Store, root *manifest.Root, plats []string, now time.Time) (*manifest.Timestamp, *manifest.Root, error) {
	for {
		p := manifest.RootPath(root.Version + 1)
		raw, err := st.Get(ctx, p, manifest.MaxRootSize)
		if isNotExist(err) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		ids := append([]string{}, root.Roles[manifest.RoleRoot].KeyIDs...)
		if n, err := manifest.ParseRoot(raw); err == nil {
			ids = append(ids, n.Roles[manifest.RoleRoot].KeyIDs...)
		}
		if root, err = root.Next(raw, storeSigs(ctx, st, p, ids)); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	tsRaw, err := st.Get(ctx, manifest.TimestampName, manifest.MaxTimestampSize)
	if err != nil {
		return nil, nil, err
	}
	ts, err := manifest.OpenTimestamp(tsRaw, storeSigs(ctx, st, manifest.TimestampName, root.Roles[manifest.RoleTimestamp].KeyIDs), root, manifest.TimestampOptions{App: root.App, Now: now})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", manifest.TimestampName, err)
	}
	rel := root.Roles[manifest.RoleRelease].KeyIDs
	for _, p := range plats {
		ref, ok := ts.Platforms[p]
		if !ok {
			return nil, nil, fmt.Errorf("the timestamp names no index for %s", p)
		}
		ip := p + "/" + manifest.IndexPath(ref.Sequence)
		raw, err := st.Get(ctx, ip, ref.Size)
		if err != nil {
			return nil, nil, err
		}
		if _, err := manifest.OpenIndex(raw, storeSigs(ctx, st, ip, rel), root, ref, manifest.OpenOptions{App: root.App, Now: now}); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", ip, err)
		}
	}
	if ts.Policy == nil {
		return nil, nil, errors.New("the timestamp names no policy")
	}
	pp := manifest.PolicyPath(ts.Policy.Sequence)
	raw, err := st.Get(ctx, pp, ts.Policy.Size)
	if err != nil {
		return nil, nil, err
	}
	if _, err := manifest.OpenPolicy(raw, storeSigs(ctx, st, pp, rel), root, *ts.Policy, manifest.PolicyOptions{App: root.App, Now: now}); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", pp, err)
	}
	return ts, root, nil
}

// TestRolesPlatformsPolicyOnBucket: where the key commands on buckets meet
// platforms and the release policy. A bucket holds two platforms (no
// platform-less build), migrated and given a policy; a rotation of the
// timestamp key, of the release key, and a refresh each leave a timestamp
// naming both platforms' indexes and the policy, which clients of both
// platforms accept; killed after any of its writes to the repository's
// top, each leaves timestamp.json, the platforms' indexes and the policy
// as they were, clients on the previous state (but for the two windows of
// a signature pair, see TestRolesKilled), and run again it completes.
func TestRolesPlatformsPolicyOnBucket(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	k := newV2Keys(t)
	rel2, _, _ := testKey(t)
	ts2, _, _ := testKey(t)
	plats := []string{"linux-amd64", "windows-amd64"}
	v0 := tinyTree(t, 0)
	fifty := 50
	opts := func(repo string, keys ...manifest.PrivateKey) RolesOptions {
		return RolesOptions{Repo: repo, Keys: keys, Now: clock}
	}
	setup := func(t *testing.T, name string) (string, *blobStore, *manifest.Root) {
		t.Helper()
		repo, _, st := memRepo(t, name)
		for _, p := range plats {
			publishPlatform(t, repo, p, "1.0.0", v0, k.rel, now)
		}
		root, err := k.migrate(ctx, repo, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := SetPolicy(ctx, PolicyChange{Version: "1.0.0", Percent: &fifty}, PolicyOptions{Repo: repo,
			Keys: []manifest.PrivateKey{k.rel}, TimestampKeys: []manifest.PrivateKey{k.ts}, Now: clock}); err != nil {
			t.Fatal(err)
		}
		// The platforms' sub-stores stay registered on the bucket itself,
		// so that the crashStore wrapping the top below does not hide
		// them (the commands reuse a registered sub-store).
		for _, p := range plats {
			_, _, done, err := usePlatform(ctx, repo, st, p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(done)
		}
		return repo, st, root
	}
	// stamped checks that the timestamp names exactly each platform's
	// current index and the current policy, and that clients of both
	// platforms accept it.
	stamped := func(t *testing.T, what, repo string, st Store, root1 *manifest.Root) *manifest.Timestamp {
		t.Helper()
		ts, root, err := platformsClient(ctx, st, root1, plats, now)
		if err != nil {
			t.Fatalf("%s: clients: %v", what, err)
		}
		if ts.Index != (manifest.IndexRef{}) || len(ts.Platforms) != len(plats) {
			t.Fatalf("%s: timestamp %+v", what, ts)
		}
		for _, p := range plats {
			raw, err := st.Get(ctx, p+"/"+manifest.ManifestName, 1<<24)
			if err != nil {
				t.Fatal(err)
			}
			m, err := manifest.ParseUnverified(raw)
			if err != nil {
				t.Fatal(err)
			}
			if want := (manifest.IndexRef{Sequence: m.Sequence, Size: int64(len(raw)), SHA256: sha256.Sum256(raw)}); ts.Platforms[p] != want {
				t.Fatalf("%s: timestamp names %s %+v, its index is %+v", what, p, ts.Platforms[p], want)
			}
		}
		want, err := currentPolicyRef(repo, root)
		if err != nil || want == nil || *ts.Policy != *want {
			t.Fatalf("%s: timestamp names policy %+v, the current one is %+v (%v)", what, ts.Policy, want, err)
		}
		return ts
	}
	// snapshot is what clients read besides the roots: the timestamp, the
	// platforms' indexes, the policy.
	snapshot := func(st Store) string {
		var b strings.Builder
		for _, p := range []string{manifest.TimestampName, manifest.PolicyName, plats[0] + "/" + manifest.ManifestName, plats[1] + "/" + manifest.ManifestName} {
			raw, err := st.Get(ctx, p, 1<<20)
			fmt.Fprintf(&b, "%s %x %v\n", p, sha256.Sum256(raw), err)
		}
		return b.String()
	}
	commands := []struct {
		name     string
		tsWindow bool   // as in TestRolesKilled
		seq      uint64 // the timestamp's sequence after it
		run      func(repo string) error
		done     func(repo string) bool
	}{
		{name: "rotate-timestamp", tsWindow: true, seq: 1, run: func(repo string) error {
			_, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleTimestamp, Add: []manifest.PublicKey{ts2.Public()}, Remove: []string{k.ts.Public().ID()}}, opts(repo, k.a, k.b, ts2))
			return err
		}, done: func(repo string) bool { r, _ := LoadRoot(repo); return r.Version == 2 && timestampSigned(repo, r) }},
		{name: "rotate-release", seq: 2, run: func(repo string) error {
			_, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleRelease, Add: []manifest.PublicKey{rel2.Public()}, Remove: []string{k.rel.Public().ID()}}, opts(repo, k.a, k.b, rel2))
			return err
		}, done: func(repo string) bool { r, _ := LoadRoot(repo); return r.Version == 2 }},
		{name: "refresh", tsWindow: true, seq: 3, run: func(repo string) error { _, err := Refresh(ctx, opts(repo, k.ts)); return err },
			done: func(repo string) bool { ts, _ := currentTimestamp(repo); return ts.Sequence == 3 }},
	}
	for _, cmd := range commands {
		t.Run(cmd.name, func(t *testing.T) {
			repo, st, root1 := setup(t, "count-"+cmd.name)
			before := stamped(t, "before", repo, st, root1)
			cs := &crashStore{Store: st, n: -1}
			stores.m[repo].st = cs
			if err := cmd.run(repo); err != nil {
				t.Fatal(err)
			}
			count := cs.writes
			if count < 2 || !cmd.done(repo) {
				t.Fatalf("%d writes, done %v", count, cmd.done(repo))
			}
			after := stamped(t, "after", repo, st, root1)
			if after.Sequence != cmd.seq || after.Policy.Sequence != before.Policy.Sequence {
				t.Fatalf("timestamp %+v after %+v", after, before)
			}
			windows := 0
			for n := 0; n < count; n++ {
				repo, st, root1 := setup(t, fmt.Sprintf("kill-%s-%d", cmd.name, n))
				prev := snapshot(st)
				cs := &crashStore{Store: st, n: n}
				stores.m[repo].st = cs
				if err := cmd.run(repo); !errors.Is(err, errCrash) {
					t.Fatalf("killed after %d of %d writes: %v", n, count, err)
				}
				if got := snapshot(st); !bytes.Equal([]byte(got), []byte(prev)) {
					t.Fatalf("killed after %d of %d writes: what clients read changed:\n%s\nwas\n%s", n, count, got, prev)
				}
				if ts, _, err := platformsClient(ctx, st, root1, plats, now); err != nil {
					if !cmd.tsWindow || !strings.Contains(err.Error(), manifest.TimestampName) {
						t.Fatalf("clients after a kill at write %d of %d: %v", n, count, err)
					}
					windows++
				} else if ts.Sequence != before.Sequence {
					t.Fatalf("clients after a kill at write %d: timestamp %d, want the previous %d", n, ts.Sequence, before.Sequence)
				}
				rerunKilled(t, cs, n, func() error { return cmd.run(repo) }, func() bool { return cmd.done(repo) })
				stamped(t, fmt.Sprintf("rerun after a kill at write %d", n), repo, st, root1)
				if r, _ := LoadRoot(repo); r.Version > 2 {
					t.Errorf("rerun after a kill at write %d made root %d", n, r.Version)
				}
			}
			t.Logf("%d writes at the top; %d kill points leave a timestamp clients refuse until the rerun", count, windows)
			if windows > 2 {
				t.Errorf("%d kill points leave a timestamp clients refuse; at most 2 expected", windows)
			}
		})
	}
}

// rerunKilled lifts the kill of cs and runs the command stopped at write
// n again: it must complete it (or find its change made, ErrRepo).
func rerunKilled(t *testing.T, cs *crashStore, n int, run func() error, done func() bool) {
	t.Helper()
	cs.mu.Lock()
	cs.n = -1
	cs.mu.Unlock()
	if err := run(); err != nil && !(done() && errors.Is(err, ErrRepo)) {
		t.Fatalf("rerun after a kill at write %d: %v", n, err)
	}
	if !done() {
		t.Fatalf("rerun after a kill at write %d: the change is not in place", n)
	}
}

// TestPublishPolicyPlatformsOnBucket: a publish with a rollout on a bucket
// holding two platforms checks the policy's version against every
// platform's index (each platform's sub-store opened for the read), and
// its timestamp names both platforms and the new policy.
func TestPublishPolicyPlatformsOnBucket(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	k := newV2Keys(t)
	plats := []string{"linux-amd64", "windows-amd64"}
	repo, _, st := memRepo(t, "publish-policy")
	for _, p := range plats {
		publishPlatform(t, repo, p, "1.0.0", tinyTree(t, 0), k.rel, now)
	}
	root, err := k.migrate(ctx, repo, now)
	if err != nil {
		t.Fatal(err)
	}
	ten := 10
	if _, err := Publish(ctx, tinyTree(t, 1), PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: k.rel, Platform: plats[0],
		TimestampKeys: []manifest.PrivateKey{k.ts}, Now: clock, Policy: &PolicyChange{Percent: &ten}}); err != nil {
		t.Fatal(err)
	}
	ts, _, err := platformsClient(ctx, st, root, plats, now)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Platforms[plats[0]].Sequence != ts.Platforms[plats[1]].Sequence+1 || ts.Policy == nil || ts.Policy.Sequence != 1 {
		t.Fatalf("timestamp %+v", ts)
	}
}
