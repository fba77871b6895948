package apply

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// v2Repo is a copy of the shared repository migrated to v2: root keys A
// and B, release keys rel1 (the v1 key) and rel2, timestamp key ts.
type v2Repo struct {
	dir                          string
	base                         *ckRepo
	now                          time.Time
	rootA, rootB, rel1, rel2, ts manifest.PrivateKey
	root1                        []byte
}

func v2Key(t testing.TB) manifest.PrivateKey {
	t.Helper()
	_, keyFile, err := manifest.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := manifest.ParsePrivateKey(keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newV2Repo migrates a copy of the shared repository with the given
// thresholds (0: 1); the release role has both release keys.
func newV2Repo(t testing.TB, thresholds map[string]int) *v2Repo {
	t.Helper()
	base := ckSharedRepo(t)
	v := &v2Repo{dir: filepath.Join(t.TempDir(), "repo"), base: base, now: base.now,
		rootA: v2Key(t), rootB: v2Key(t), rel1: base.priv, rel2: v2Key(t), ts: v2Key(t)}
	ckCopyDir(t, base.dir, v.dir)
	roles := map[string][]manifest.PrivateKey{
		manifest.RoleRoot: {v.rootA, v.rootB}, manifest.RoleRelease: {v.rel1, v.rel2}, manifest.RoleTimestamp: {v.ts},
	}
	if _, err := releasetools.Migrate(context.Background(), "demo", roles, thresholds, v.opts()); err != nil {
		t.Fatal(err)
	}
	var err error
	if v.root1, err = os.ReadFile(filepath.Join(v.dir, "root", "1.json")); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *v2Repo) opts(keys ...manifest.PrivateKey) releasetools.RolesOptions {
	return releasetools.RolesOptions{Repo: v.dir, Keys: keys, Now: func() time.Time { return v.now }}
}

// write puts a document into the repository as an attacker with the
// given keys would (no checks).
func (v *v2Repo) write(t testing.TB, p string, raw []byte) {
	t.Helper()
	full := filepath.Join(v.dir, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
}

// mtimes hands out distinct modification times: http.FileServer answers
// If-Modified-Since with one-second resolution, and these tests replace
// documents faster than that.
var v2Mtime = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// touch gives the timestamp and its signatures a new modification time,
// as a document written in a later second would have.
func (v *v2Repo) touch(t testing.TB) {
	t.Helper()
	v2Mtime = v2Mtime.Add(time.Minute)
	names, _ := filepath.Glob(filepath.Join(v.dir, manifest.TimestampName+"*"))
	for _, n := range names {
		if err := os.Chtimes(n, v2Mtime, v2Mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// forgeTimestamp writes a timestamp of sequence seq naming the index raw,
// signed by keys.
func (v *v2Repo) forgeTimestamp(t testing.TB, seq uint64, idxSeq uint64, idx []byte, expires time.Time, keys ...manifest.PrivateKey) {
	t.Helper()
	raw, err := manifest.MarshalTimestamp(&manifest.Timestamp{Schema: manifest.RolesSchema, App: "demo", Sequence: seq, Expires: expires,
		Index: manifest.IndexRef{Sequence: idxSeq, Size: int64(len(idx)), SHA256: sha256.Sum256(idx)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		sig, err := manifest.SignTimestamp(k, raw)
		if err != nil {
			t.Fatal(err)
		}
		v.write(t, manifest.SigPath(manifest.TimestampName, k.Public().ID()), sig)
	}
	v.write(t, manifest.TimestampName, raw)
}

// forgeIndex writes index m (at its sequence's path) signed by keys, as a
// thief of those keys would, and returns its bytes.
func (v *v2Repo) forgeIndex(t testing.TB, m *manifest.Manifest, keys ...manifest.PrivateKey) []byte {
	t.Helper()
	raw, err := manifest.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ip := manifest.IndexPath(m.Sequence)
	for _, k := range keys {
		sig, err := manifest.SignIndex(k, raw)
		if err != nil {
			t.Fatal(err)
		}
		v.write(t, manifest.SigPath(ip, k.Public().ID()), sig)
	}
	v.write(t, ip, raw)
	return raw
}

// client is an installation of the newest release following the
// repository at the given mirrors, with its own clock.
type v2Client struct {
	cfg   *Config
	clock time.Time
}

func (v *v2Repo) client(t testing.TB, mirrors ...string) *v2Client {
	t.Helper()
	appDir := filepath.Join(t.TempDir(), "app")
	v.base.install(t, ckVersions[len(ckVersions)-1], appDir)
	c := &v2Client{clock: v.now.Add(time.Hour)}
	c.cfg = &Config{AppDir: appDir, Servers: mirrors, Root: v.root1, App: "demo", Now: func() time.Time { return c.clock }}
	return c
}

func (c *v2Client) check(t testing.TB) (*CheckResult, error) {
	t.Helper()
	return Check(context.Background(), c.cfg, &Downloader{Mirrors: c.cfg.Servers, Retries: -1, BackoffMin: time.Millisecond})
}

func (c *v2Client) state(t testing.TB) *State {
	t.Helper()
	st, err := LoadState(c.cfg.BackupDir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRolesCheckAndTinyPoll(t *testing.T) {
	v := newV2Repo(t, nil)
	srv := ckServe(t, v.dir)
	c := v.client(t, srv.URL)
	res, err := c.check(t)
	if err != nil {
		t.Fatal(err)
	}
	if !res.UpToDate || res.Current != "1.2.0" {
		t.Fatalf("check: up to date %v, current %q", res.UpToDate, res.Current)
	}
	st := c.state(t)
	if st.RootVersion != 1 || st.TimestampSequence != 1 || st.Sequence != 4 || st.ReleaseKeys == "" || st.TimestampKeys == "" {
		t.Fatalf("state after the first check: %+v", st)
	}
	// A second check: the index is not fetched again; the timestamp and
	// its signature are asked for conditionally.
	before := len(srv.requests())
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range srv.requests()[before:] {
		got = append(got, p)
		if strings.HasPrefix(p, "/manifests/") {
			t.Errorf("no-update check fetched the index %s", p)
		}
	}
	if len(got) != 2 {
		t.Errorf("no-update check made %d requests (%v), want 2: root/2.json and timestamp.json (its signature is cached)", len(got), got)
	}
	// A new release shows after a publish with the timestamp key.
	v.base.trees["1.3.0"] = ckTree(t, 7, v.base.pubFile)
	if _, err := releasetools.Publish(context.Background(), v.base.trees["1.3.0"], releasetools.PublishOptions{Repo: v.dir, App: "demo", Version: "1.3.0",
		Key: v.rel1, TimestampKeys: []manifest.PrivateKey{v.ts}, Now: func() time.Time { return v.now }}); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	before = len(srv.requests())
	if res, err = c.check(t); err != nil || res.UpToDate || res.Target != "1.3.0" {
		t.Fatalf("after publishing 1.3.0: %v (target %q)", err, res.Target)
	}
	// The client held compact index 4: it fetched the compact delta,
	// which carries the release document of 1.3.0, nothing of the full
	// index 5.
	after := srv.requests()[before:]
	// The delta carries the index's release signature: nothing else of
	// index 5 is fetched.
	if !slices.Contains(after, "/"+manifest.ReleaseDeltaPath(4, 5)) || slices.ContainsFunc(after, func(p string) bool {
		return strings.HasPrefix(p, "/"+manifest.IndexPath(5)) || strings.HasPrefix(p, "/"+manifest.ReleaseIndexPath(5)) || strings.HasPrefix(p, "/manifests/")
	}) || slices.ContainsFunc(after, func(p string) bool { return strings.HasPrefix(p, "/releases/") }) {
		t.Fatalf("update check requests: %v", after)
	}
	// A damaged delta is ignored: the whole index is fetched.
	v.base.trees["1.4.0"] = ckTree(t, 8, v.base.pubFile)
	if _, err := releasetools.Publish(context.Background(), v.base.trees["1.4.0"], releasetools.PublishOptions{Repo: v.dir, App: "demo", Version: "1.4.0",
		Key: v.rel1, TimestampKeys: []manifest.PrivateKey{v.ts}, Now: func() time.Time { return v.now }}); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	d := filepath.Join(v.dir, filepath.FromSlash(manifest.ReleaseDeltaPath(5, 6)))
	raw, err := os.ReadFile(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d, []byte(strings.Replace(string(raw), `"keep":`, `"keep":1`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	before = len(srv.requests())
	if res, err = c.check(t); err != nil || res.Target != "1.4.0" {
		t.Fatalf("after publishing 1.4.0 with a damaged delta: %v", err)
	}
	if after := srv.requests()[before:]; !slices.Contains(after, "/"+manifest.ReleaseIndexPath(6)) {
		t.Fatalf("the whole compact index was not fetched: %v", after)
	}
}

func TestRolesFreezeTriesNextMirror(t *testing.T) {
	v := newV2Repo(t, nil)
	frozen := filepath.Join(t.TempDir(), "frozen")
	ckCopyDir(t, v.dir, frozen) // a mirror that stops syncing now
	// A day and more later, the publisher's cron refreshes the timestamp.
	v.now = v.now.Add(25 * time.Hour)
	if _, err := releasetools.Refresh(context.Background(), v.opts(v.ts)); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	stale, honest := ckServe(t, frozen), ckServe(t, v.dir)

	c := v.client(t, stale.URL)
	_, err := c.check(t)
	if !errors.Is(err, ErrRefused) || !errors.Is(err, manifest.ErrExpired) {
		t.Fatalf("frozen mirror alone: %v, want ErrRefused and ErrExpired", err)
	}
	c = v.client(t, stale.URL, honest.URL)
	if _, err := c.check(t); err != nil {
		t.Fatalf("frozen then honest mirror: %v", err)
	}
	if st := c.state(t); st.TimestampSequence != 2 {
		t.Fatalf("accepted timestamp %d, want 2 (the honest mirror's)", st.TimestampSequence)
	}
}

func TestRolesFastForwardRecoveredByRotation(t *testing.T) {
	v := newV2Repo(t, nil)
	srv := ckServe(t, v.dir)
	c := v.client(t, srv.URL)
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(filepath.Join(v.dir, filepath.FromSlash(manifest.IndexPath(4))))
	if err != nil {
		t.Fatal(err)
	}
	// The thief of the timestamp key fast-forwards clients.
	v.forgeTimestamp(t, manifest.MaxSafeInteger, 4, idx, v.now.Add(24*time.Hour), v.ts)
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	if st := c.state(t); st.TimestampSequence != manifest.MaxSafeInteger {
		t.Fatalf("fast-forward not taken: %d", st.TimestampSequence)
	}
	// Honest timestamps are now refused as replays...
	if err := os.Remove(filepath.Join(v.dir, manifest.TimestampName)); err != nil {
		t.Fatal(err)
	}
	if _, err := releasetools.Refresh(context.Background(), v.opts(v.ts)); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	if _, err := c.check(t); !errors.Is(err, manifest.ErrRollback) {
		t.Fatalf("after the fast-forward: %v, want ErrRollback", err)
	}
	// ...until the publisher rotates the timestamp key: one root rotation.
	ts2 := v2Key(t)
	if _, err := releasetools.ChangeKeys(context.Background(), releasetools.KeyChange{Role: manifest.RoleTimestamp, Add: []manifest.PublicKey{ts2.Public()}, Remove: []string{v.ts.Public().ID()}},
		v.opts(v.rootA, v.rootB, ts2)); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	if _, err := c.check(t); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	st := c.state(t)
	if st.RootVersion != 2 || st.TimestampSequence >= manifest.MaxSafeInteger {
		t.Fatalf("not recovered: root %d, timestamp %d", st.RootVersion, st.TimestampSequence)
	}
	// The old key no longer moves the client.
	v.forgeTimestamp(t, manifest.MaxSafeInteger, 4, idx, v.now.Add(24*time.Hour), v.ts)
	if _, err := c.check(t); !errors.Is(err, manifest.ErrSignature) {
		t.Fatalf("revoked key: %v, want ErrSignature", err)
	}
}

func TestRolesStolenKeyBelowThreshold(t *testing.T) {
	v := newV2Repo(t, map[string]int{manifest.RoleRoot: 2, manifest.RoleRelease: 2})
	srv := ckServe(t, v.dir)
	c := v.client(t, srv.URL)
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	// The thief holds rel1, root key A and the online timestamp key: an
	// index signed by rel1 alone, named by a valid timestamp, is refused.
	m := v.base.manifest(t)
	m.Sequence += 10
	m.Releases = m.Releases[:1] // take everyone back to 1.0.0
	raw := v.forgeIndex(t, m, v.rel1)
	v.forgeTimestamp(t, 50, m.Sequence, raw, v.now.Add(24*time.Hour), v.ts)
	if _, err := c.check(t); !errors.Is(err, manifest.ErrSignature) {
		t.Fatalf("index signed by one release key of two: %v, want ErrSignature", err)
	}
	// Nor can root key A alone hand the release role to the thief.
	thief := v2Key(t)
	r2 := &manifest.Root{Schema: manifest.RolesSchema, App: "demo", Version: 2, Expires: v.now.Add(time.Hour * 1000),
		Keys:  map[string]manifest.PublicKey{thief.Public().ID(): thief.Public()},
		Roles: map[string]manifest.Role{}}
	for _, name := range manifest.Roles {
		r2.Roles[name] = manifest.Role{KeyIDs: []string{thief.Public().ID()}, Threshold: 1}
	}
	rootRaw, err := manifest.MarshalRoot(r2)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []manifest.PrivateKey{v.rootA, thief} {
		s, _ := manifest.SignRoot(k, rootRaw)
		v.write(t, manifest.SigPath(manifest.RootPath(2), k.Public().ID()), s)
	}
	v.write(t, manifest.RootPath(2), rootRaw)
	if _, err := c.check(t); !errors.Is(err, manifest.ErrSignature) {
		t.Fatalf("root 2 signed by one root key of two: %v, want ErrSignature", err)
	}
	if st := c.state(t); st.RootVersion != 1 || st.Sequence != 4 {
		t.Fatalf("state moved: root %d, sequence %d", st.RootVersion, st.Sequence)
	}
}

func TestRolesHostileMirror(t *testing.T) {
	v := newV2Repo(t, nil)
	idx, err := os.ReadFile(filepath.Join(v.dir, filepath.FromSlash(manifest.IndexPath(4))))
	if err != nil {
		t.Fatal(err)
	}
	// Another index of the same size (an older one would be larger: it
	// still lists its file lists inline).
	older := append([]byte{}, idx...)
	older[len(older)/2] ^= 1
	tests := []struct {
		name   string
		damage func(t *testing.T, v *v2Repo)
		want   error
	}{
		{"mix and match: another index at the named path", func(t *testing.T, v *v2Repo) {
			v.write(t, manifest.IndexPath(4), older)
		}, manifest.ErrHashMismatch},
		{"endless data: index larger than the timestamp says", func(t *testing.T, v *v2Repo) {
			v.write(t, manifest.IndexPath(4), append(append([]byte{}, idx...), make([]byte, 1<<20)...))
		}, manifest.ErrTooLarge},
		{"timestamp signed by a release key", func(t *testing.T, v *v2Repo) {
			v.forgeTimestamp(t, 9, 4, idx, v.now.Add(24*time.Hour), v.rel1)
			os.Remove(filepath.Join(v.dir, manifest.SigPath(manifest.TimestampName, v.ts.Public().ID())))
		}, manifest.ErrSignature},
		{"oversized timestamp", func(t *testing.T, v *v2Repo) {
			v.write(t, manifest.TimestampName, make([]byte, manifest.MaxTimestampSize+10))
		}, manifest.ErrTooLarge},
		{"no timestamp", func(t *testing.T, v *v2Repo) {
			os.Remove(filepath.Join(v.dir, manifest.TimestampName))
		}, ErrNotFound},
		{"root 2 that is not a root", func(t *testing.T, v *v2Repo) {
			v.write(t, manifest.RootPath(2), []byte(`{"schema":2}`))
		}, manifest.ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := *v
			w.dir = filepath.Join(t.TempDir(), "repo")
			ckCopyDir(t, v.dir, w.dir)
			tc.damage(t, &w)
			c := w.client(t, ckServe(t, w.dir).URL)
			_, err := c.check(t)
			if !errors.Is(err, tc.want) {
				t.Fatalf("check = %v, want %v", err, tc.want)
			}
			if _, err := os.Stat(StatePath(c.cfg.BackupDir)); err == nil {
				if st := c.state(t); st.Sequence != 0 || st.RootVersion != 0 {
					t.Fatalf("a refused check changed the state: %+v", st)
				}
			}
		})
	}
}

func TestRolesRootRollbackRefused(t *testing.T) {
	v := newV2Repo(t, nil)
	srv := ckServe(t, v.dir)
	if _, err := releasetools.ChangeKeys(context.Background(), releasetools.KeyChange{}, v.opts(v.rootA, v.rootB)); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	c := v.client(t, srv.URL)
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	if st := c.state(t); st.RootVersion != 2 {
		t.Fatalf("root %d, want 2", st.RootVersion)
	}
	// The cache is lost and a mirror hides root 2.
	os.Remove(CachePath(c.cfg.BackupDir))
	os.Rename(filepath.Join(v.dir, "root", "2.json"), filepath.Join(v.dir, "root", "2.hidden"))
	if _, err := c.check(t); !errors.Is(err, manifest.ErrRollback) {
		t.Fatalf("hidden root: %v, want ErrRollback", err)
	}
	// An expired newest root is a freeze too.
	os.Rename(filepath.Join(v.dir, "root", "2.hidden"), filepath.Join(v.dir, "root", "2.json"))
	c.clock = v.now.Add(400 * 24 * time.Hour)
	if _, err := c.check(t); !errors.Is(err, manifest.ErrExpired) {
		t.Fatalf("expired root: %v, want ErrExpired", err)
	}
}

func TestRolesReleaseFastForwardRecovered(t *testing.T) {
	v := newV2Repo(t, nil)
	srv := ckServe(t, v.dir)
	c := v.client(t, srv.URL)
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	// The thief of a release key and the timestamp key serves an index of
	// the highest sequence (honest content re-signed).
	m := v.base.manifest(t)
	m.Sequence = manifest.MaxSafeInteger
	raw := v.forgeIndex(t, m, v.rel1)
	v.forgeTimestamp(t, manifest.MaxSafeInteger, m.Sequence, raw, v.now.Add(24*time.Hour), v.ts)
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	if st := c.state(t); st.Sequence != manifest.MaxSafeInteger {
		t.Fatalf("fast-forward not taken: %d", st.Sequence)
	}
	// Two rotations (release, then timestamp): the client walks both
	// roots in one check and accepts the honest index 4 again.
	rel3, ts2 := v2Key(t), v2Key(t)
	ctx := context.Background()
	if _, err := releasetools.ChangeKeys(ctx, releasetools.KeyChange{Role: manifest.RoleRelease, Add: []manifest.PublicKey{rel3.Public()}, Remove: []string{v.rel1.Public().ID()}}, v.opts(v.rootA, v.rootB, rel3)); err != nil {
		t.Fatal(err)
	}
	if _, err := releasetools.ChangeKeys(ctx, releasetools.KeyChange{Role: manifest.RoleTimestamp, Add: []manifest.PublicKey{ts2.Public()}, Remove: []string{v.ts.Public().ID()}}, v.opts(v.rootA, v.rootB, ts2)); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	if _, err := c.check(t); err != nil {
		t.Fatalf("after the rotations: %v", err)
	}
	if st := c.state(t); st.RootVersion != 3 || st.Sequence != 4 || st.TimestampSequence != 1 {
		t.Fatalf("not recovered: root %d, index %d, timestamp %d", st.RootVersion, st.Sequence, st.TimestampSequence)
	}
}
