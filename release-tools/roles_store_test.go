package releasetools

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
	"gocloud.dev/blob/fileblob"
)

// v2Client is what a v2 client remembers between checks (apply's
// state.json, reduced): the newest root it accepted, and the sequences
// and key fingerprints of the timestamp and index.
type v2Client struct {
	root           *manifest.Root
	tsSeq, idxSeq  uint64
	tsKeys, relKey string
}

// check reads the repository as apply's v2 client does (docs/FORMAT.md,
// "What a v2 client checks"): walks root/N+1.json, opens the timestamp
// with a threshold of the timestamp keys, then the index it names with a
// threshold of release signatures, and every artifact of its newest
// release. On success it remembers what it accepted and returns the index
// sequence.
func (c *v2Client) check(ctx context.Context, st Store, now time.Time) (uint64, error) {
	root := c.root
	for {
		p := manifest.RootPath(root.Version + 1)
		raw, err := st.Get(ctx, p, manifest.MaxRootSize)
		if errors.Is(err, errNotExist) {
			break
		}
		if err != nil {
			return 0, err
		}
		ids := append([]string{}, root.Roles[manifest.RoleRoot].KeyIDs...)
		if n, err := manifest.ParseRoot(raw); err == nil {
			ids = append(ids, n.Roles[manifest.RoleRoot].KeyIDs...)
		}
		next, err := root.Next(raw, storeSigs(ctx, st, p, ids))
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p, err)
		}
		root = next
	}
	tsOpts := manifest.TimestampOptions{App: root.App, Now: now}
	if c.tsKeys == root.RoleFingerprint(manifest.RoleTimestamp) {
		tsOpts.MinSequence = c.tsSeq
	}
	tsRaw, err := st.Get(ctx, manifest.TimestampName, manifest.MaxTimestampSize)
	if err != nil {
		return 0, err
	}
	ts, err := manifest.OpenTimestamp(tsRaw, storeSigs(ctx, st, manifest.TimestampName, root.Roles[manifest.RoleTimestamp].KeyIDs), root, tsOpts)
	if err != nil {
		return 0, err
	}
	ip := manifest.IndexPath(ts.Index.Sequence)
	raw, err := st.Get(ctx, ip, ts.Index.Size)
	if err != nil {
		return 0, err
	}
	opts := manifest.OpenOptions{App: root.App, Now: now}
	if c.relKey == root.RoleFingerprint(manifest.RoleRelease) {
		opts.MinSequence = c.idxSeq
	}
	if _, err := manifest.OpenIndex(raw, storeSigs(ctx, st, ip, root.Roles[manifest.RoleRelease].KeyIDs), root, ts.Index, opts); err != nil {
		return 0, err
	}
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		return 0, err
	}
	rs := m.Sorted("")
	for _, a := range rs[len(rs)-1].Archives {
		if b, err := st.Get(ctx, a.Path, a.Size); err != nil || int64(len(b)) != a.Size {
			return 0, fmt.Errorf("index %d names %s: %v", m.Sequence, a.Path, err)
		}
	}
	c.root, c.tsSeq, c.idxSeq = root, ts.Sequence, m.Sequence
	c.tsKeys, c.relKey = root.RoleFingerprint(manifest.RoleTimestamp), root.RoleFingerprint(manifest.RoleRelease)
	return m.Sequence, nil
}

var errNotExist = errors.New("not found")

func storeSigs(ctx context.Context, st Store, doc string, ids []string) map[string][]byte {
	out := map[string][]byte{}
	for _, id := range ids {
		if b, err := st.Get(ctx, manifest.SigPath(doc, id), manifest.MaxSignatureSize); err == nil {
			out[id] = b
		}
	}
	return out
}

// notFound maps a missing object to errNotExist for v2Client.check.
type notFound struct{ Store }

func (n notFound) Get(ctx context.Context, rel string, limit int64) ([]byte, error) {
	b, err := n.Store.Get(ctx, rel, limit)
	if err != nil && isNotExist(err) {
		return nil, errNotExist
	}
	return b, err
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// v2Keys are the keys of a v2 repository in these tests: root keys a, b
// (threshold 2), release key rel (the v1 key), timestamp key ts.
type v2Keys struct{ a, b, rel, ts manifest.PrivateKey }

func newV2Keys(t *testing.T) v2Keys {
	var k v2Keys
	k.a, _, _ = testKey(t)
	k.b, _, _ = testKey(t)
	k.rel, _, _ = testKey(t)
	k.ts, _, _ = testKey(t)
	return k
}

func (k v2Keys) migrate(ctx context.Context, repo string, now time.Time) (*manifest.Root, error) {
	roles := map[string][]manifest.PrivateKey{manifest.RoleRoot: {k.a, k.b}, manifest.RoleRelease: {k.rel}, manifest.RoleTimestamp: {k.ts}}
	return Migrate(ctx, "demo", roles, map[string]int{manifest.RoleRoot: 2}, RolesOptions{Repo: repo, Now: func() time.Time { return now }})
}

// rolesRepos are the stores the key commands are tested on: an in-memory
// bucket and a fileblob bucket (gocloud's, as s3:// would be, with a
// prefix), and a directory named by a file:// URL.
func rolesRepos(t *testing.T) map[string]func(t *testing.T) (string, Store) {
	return map[string]func(t *testing.T) (string, Store){
		"memblob": func(t *testing.T) (string, Store) {
			repo, _, st := memRepo(t, "roles")
			return repo, st
		},
		"fileblob": func(t *testing.T) (string, Store) {
			b, err := fileblob.OpenBucket(t.TempDir(), &fileblob.Options{CreateDir: true})
			if err != nil {
				t.Fatal(err)
			}
			repo := "fileblob://roles/repo"
			st := newBlobStore(repo, b, "repo/")
			registerStore(t, repo, st)
			return repo, st
		},
		"file URL": func(t *testing.T) (string, Store) {
			dir := filepath.Join(t.TempDir(), "repo")
			repo := "file://" + filepath.ToSlash(dir)
			publishDirMk(t, dir)
			st, err := OpenStore(context.Background(), repo)
			if err != nil {
				t.Fatal(err)
			}
			return repo, st
		},
	}
}

// TestRolesOnStores: migrate, every key command and refresh on each kind
// of store; a v2 client follows every step; documents carry their
// Cache-Control on buckets; verify finds nothing wrong; the lease is gone.
func TestRolesOnStores(t *testing.T) {
	for name, open := range rolesRepos(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
			k := newV2Keys(t)
			repo, st := open(t)
			publish(t, repo, "1.0.0", versionTree(t, 0), k.rel, now)
			root1, err := k.migrate(ctx, repo, now)
			if err != nil {
				t.Fatal(err)
			}
			c := &v2Client{root: root1}
			view := notFound{st}
			if seq, err := c.check(ctx, view, now); err != nil || seq != 2 {
				t.Fatalf("client after migrate: %d, %v", seq, err)
			}
			opts := func(keys ...manifest.PrivateKey) RolesOptions {
				return RolesOptions{Repo: repo, Keys: keys, Now: func() time.Time { return now }}
			}
			rel2, _, _ := testKey(t)
			ts2, _, _ := testKey(t)
			steps := []struct {
				name string
				run  func() error
			}{
				{"rotate release", func() error {
					_, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleRelease, Add: []manifest.PublicKey{rel2.Public()}, Remove: []string{k.rel.Public().ID()}}, opts(k.a, k.b, rel2))
					return err
				}},
				{"rotate timestamp", func() error {
					_, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleTimestamp, Add: []manifest.PublicKey{ts2.Public()}, Remove: []string{k.ts.Public().ID()}}, opts(k.a, k.b, ts2))
					return err
				}},
				{"renew", func() error { _, err := ChangeKeys(ctx, KeyChange{}, opts(k.a, k.b)); return err }},
				{"refresh", func() error { _, err := Refresh(ctx, opts(ts2)); return err }},
				{"publish", func() error {
					_, err := Publish(ctx, versionTree(t, 1), PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: rel2, TimestampKeys: []manifest.PrivateKey{ts2}, Now: func() time.Time { return now }})
					return err
				}},
			}
			for _, s := range steps {
				if err := s.run(); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if _, err := c.check(ctx, view, now); err != nil {
					t.Fatalf("client after %s: %v", s.name, err)
				}
			}
			if c.root.Version != 4 || c.idxSeq != 3 || c.tsSeq != 3 {
				t.Errorf("client: root %d, index %d, timestamp %d; want 4, 3, 3", c.root.Version, c.idxSeq, c.tsSeq)
			}
			rep, err := Verify(ctx, repo, rel2.Public(), VerifyOptions{Now: func() time.Time { return now }})
			if err != nil || len(rep.Strays) != 0 || len(rep.Orphans) != 0 {
				t.Fatalf("verify: %v %+v", err, rep)
			}
			// The frame index of 1.0.0 stays signed by the release key
			// rotated out (key commands re-sign the index, not frame
			// indexes): verify, checking with the new key, says so.
			for _, f := range rep.Faults {
				if f.Path != "archives/demo-1.0.0.index.json" {
					t.Errorf("verify: %s: %v", f.Path, f.Err)
				}
			}
			if bs, ok := st.(*blobStore); ok {
				for _, rel := range []string{"root/1.json", manifest.SigPath("root/4.json", k.a.Public().ID()), manifest.SigPath("manifests/2.json", rel2.Public().ID()),
					manifest.TimestampName, manifest.SigPath(manifest.TimestampName, ts2.Public().ID())} {
					a, err := bs.b.Attributes(ctx, bs.key(rel))
					if err != nil {
						t.Fatal(err)
					}
					if a.CacheControl != CacheControlFor(rel) {
						t.Errorf("%s: Cache-Control %q, want %q", rel, a.CacheControl, CacheControlFor(rel))
					}
				}
				if ls, _ := bs.leases(ctx); len(ls) != 0 {
					t.Errorf("leases left: %v", ls)
				}
			}
			// Another holder of the lock (a publish running): every key
			// command is refused and writes nothing.
			var release func()
			if bs, ok := st.(*blobStore); ok {
				release, err = newBlobStore("other", bs.b, bs.prefix).Lock(ctx)
			} else {
				dir, _ := LocalPath(repo)
				var lp string
				if lp, err = LockPath(dir); err == nil {
					release, err = lockFile(lp)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			before, _ := st.List(ctx)
			for _, s := range steps[:4] {
				if err := s.run(); !errors.Is(err, ErrRepo) {
					t.Errorf("%s while the lock is held: %v, want ErrRepo", s.name, err)
				}
			}
			if _, err := k.migrate(ctx, repo, now); !errors.Is(err, ErrRepo) {
				t.Errorf("migrate while the lock is held: %v", err)
			}
			if after, _ := st.List(ctx); len(after) != len(before) {
				t.Errorf("refused commands wrote: %d objects, then %d", len(before), len(after))
			}
			release()
		})
	}
}

// publishDirMk makes the directory of a local repository (the key
// commands want an existing one; publish creates it anyway).
func publishDirMk(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestRolesKilled: each key command stopped after any number of writes
// (as a kill -9 would stop it) on a bucket: clients keep the previous
// state or see the new one, complete; the same command run again
// completes (or finds its change made) and leaves no strays.
func TestRolesKilled(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	k := newV2Keys(t)
	rel2, _, _ := testKey(t)
	ts2, _, _ := testKey(t)
	opts := func(repo string, keys ...manifest.PrivateKey) RolesOptions {
		return RolesOptions{Repo: repo, Keys: keys, Now: func() time.Time { return now }}
	}
	commands := []struct {
		name string
		v1   bool // the repository is still v1 before it (migrate)
		// tsWindow: the command rewrites the timestamp's signature and
		// the timestamp (refresh), or the timestamp keys (rotate
		// timestamp): stopped between the two, or between the root and
		// the timestamp, clients refuse the timestamp until it is run
		// again (a signature pair is two objects; see docs/FORMAT.md).
		tsWindow bool
		run      func(repo string) error
		done     func(repo string) bool // the change is in place
	}{
		{name: "migrate", v1: true, run: func(repo string) error { _, err := k.migrate(ctx, repo, now); return err },
			done: func(repo string) bool { r, _ := LoadRoot(repo); return r != nil }},
		{name: "rotate release", run: func(repo string) error {
			_, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleRelease, Add: []manifest.PublicKey{rel2.Public()}, Remove: []string{k.rel.Public().ID()}}, opts(repo, k.a, k.b, rel2))
			return err
		}, done: func(repo string) bool { r, _ := LoadRoot(repo); return r.Version == 2 }},
		{name: "rotate timestamp", tsWindow: true, run: func(repo string) error {
			_, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleTimestamp, Add: []manifest.PublicKey{ts2.Public()}, Remove: []string{k.ts.Public().ID()}}, opts(repo, k.a, k.b, ts2))
			return err
		}, done: func(repo string) bool { r, _ := LoadRoot(repo); return r.Version == 2 && timestampSigned(repo, r) }},
		{name: "add root key", run: func(repo string) error {
			_, err := ChangeKeys(ctx, KeyChange{Role: manifest.RoleRoot, Add: []manifest.PublicKey{ts2.Public()}}, opts(repo, k.a, k.b, ts2))
			return err
		}, done: func(repo string) bool { r, _ := LoadRoot(repo); return r.Version == 2 }},
		{name: "refresh", tsWindow: true, run: func(repo string) error { _, err := Refresh(ctx, opts(repo, k.ts)); return err },
			done: func(repo string) bool { ts, _ := currentTimestamp(repo); return ts.Sequence == 2 }},
	}
	setup := func(t *testing.T, name string, v1 bool) (string, *blobStore, *v2Client) {
		repo, _, st := memRepo(t, name)
		publish(t, repo, "1.0.0", versionTree(t, 0), k.rel, now)
		if v1 {
			return repo, st, nil
		}
		root, err := k.migrate(ctx, repo, now)
		if err != nil {
			t.Fatal(err)
		}
		c := &v2Client{root: root}
		if _, err := c.check(ctx, notFound{st}, now); err != nil {
			t.Fatal(err)
		}
		return repo, st, c
	}
	for _, cmd := range commands {
		t.Run(cmd.name, func(t *testing.T) {
			repo, st, _ := setup(t, "count-"+cmd.name, cmd.v1)
			cs := &crashStore{Store: st, n: -1}
			stores.m[repo].st = cs
			if err := cmd.run(repo); err != nil {
				t.Fatal(err)
			}
			count := cs.writes
			if count < 2 {
				t.Fatalf("%d writes", count)
			}
			windows := 0
			for n := 0; n < count; n++ {
				repo, st, c := setup(t, fmt.Sprintf("kill-%s-%d", cmd.name, n), cmd.v1)
				cs := &crashStore{Store: st, n: n}
				stores.m[repo].st = cs
				if err := cmd.run(repo); !errors.Is(err, errCrash) {
					t.Fatalf("killed after %d of %d writes: %v", n, count, err)
				}
				if cmd.done(repo) && !cmd.tsWindow {
					t.Errorf("killed after %d of %d writes: the change is complete already", n, count)
				}
				// What clients see now.
				if cmd.v1 {
					if r, _ := LoadRoot(repo); r != nil {
						t.Fatalf("killed after %d writes: the repository is v2 before the migration completed", n)
					}
					if seq, err := clientView(ctx, st, k.rel.Public()); err != nil || (seq != 1 && seq != 2) {
						t.Fatalf("v1 client after a kill at write %d: %d, %v", n, seq, err)
					}
				} else if _, err := c.check(ctx, notFound{st}, now); err != nil {
					if !cmd.tsWindow || !strings.Contains(err.Error(), manifest.TimestampName) {
						t.Fatalf("v2 client after a kill at write %d of %d: %v", n, count, err)
					}
					windows++
					t.Logf("kill at %d: %v", n, err)
				}
				// The same command again completes.
				rerunKilled(t, cs, n, func() error { return cmd.run(repo) }, func() bool { return cmd.done(repo) })
				if r, _ := LoadRoot(repo); r.Version > 2 {
					t.Errorf("rerun after a kill at write %d made root %d", n, r.Version)
				}
				rep, err := Verify(ctx, repo, k.rel.Public(), VerifyOptions{Now: func() time.Time { return now }})
				if err != nil || !rep.OK() || len(rep.Strays) != 0 || len(rep.Orphans) != 0 {
					t.Fatalf("verify after the rerun (kill at %d): %v %+v", n, err, rep)
				}
				if objs, _ := listDir(ctx, st, manifest.RootDir); !cmd.v1 {
					for _, o := range objs {
						if r, _ := LoadRoot(repo); strings.HasPrefix(o.Path, fmt.Sprintf("root/%d.json", r.Version+1)) {
							t.Errorf("stray %s after the rerun", o.Path)
						}
					}
				}
				if c != nil {
					if _, err := c.check(ctx, notFound{st}, now); err != nil {
						t.Fatalf("v2 client after the rerun (kill at %d): %v", n, err)
					}
				}
			}
			t.Logf("%d writes; %d kill points leave a timestamp clients refuse until the rerun", count, windows)
			if windows > 2 {
				t.Errorf("%d kill points leave a timestamp clients refuse; a pair of documents should leave at most 2", windows)
			}
		})
	}
}
