package releasetools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"
)

func TestRepoURLs(t *testing.T) {
	for _, tc := range []struct {
		repo   string
		remote bool
		local  string // LocalPath, when not remote
		err    string // OpenStore's error
	}{
		{repo: "repo", local: "repo"},
		{repo: "/srv/repo", local: "/srv/repo"},
		{repo: "file:///srv/repo", local: "/srv/repo"},
		{repo: "file://localhost/srv/repo", local: "/srv/repo"},
		{repo: "file://host/srv/repo", err: `not host "host"`},
		{repo: "file:///srv/repo?x=1", err: "takes no query"},
		{repo: "file://", err: "no path"},
		{repo: "ftp://host/x", remote: true, err: `unknown scheme "ftp"`},
		{repo: "s3:///prefix", remote: true, err: "no bucket name"},
		{repo: "s3://key:secret@bucket/p", remote: true, err: "credentials do not belong in the URL"},
		{repo: "s3://bucket?prefix=a/", remote: true, err: "as the URL's path"},
		{repo: "s3://bucket/a/../b", remote: true, err: "not a clean path"},
		{repo: "s3://bucket/a//b", remote: true, err: "not a clean path"},
		{repo: "gs://bucket/p", remote: true, err: "no gs:// driver: import _ \"github.com/deltaup/deltaup/release-tools/clouds\""}, // this test binary registers s3 only
	} {
		t.Run(tc.repo, func(t *testing.T) {
			if got := IsRemote(tc.repo); got != tc.remote {
				t.Errorf("IsRemote = %v, want %v", got, tc.remote)
			}
			if !tc.remote && tc.err == "" {
				if got, err := LocalPath(tc.repo); err != nil || got != tc.local {
					t.Errorf("LocalPath = %q, %v; want %q", got, err, tc.local)
				}
			}
			st, err := OpenStore(context.Background(), tc.repo)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				st.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("OpenStore = %v, want an error containing %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

func TestCacheControlFor(t *testing.T) {
	for rel, want := range map[string]string{
		manifest.ManifestName:                CacheMutable,
		manifest.SignatureName:               CacheMutable,
		"manifests/3.json":                   CacheImmutable,
		"archives/demo-1.0.0.tar.zst":        CacheImmutable,
		"patches/demo-1.0.0-to-1.1.0.dupb":   CacheImmutable,
		"filelists/demo-1.0.0.files.json":    CacheImmutable,
		"archives/demo-1.0.0.index.json":     CacheImmutable,
		"archives/demo-1.0.0.index.json.sig": CacheImmutable,
	} {
		if got := CacheControlFor(rel); got != want {
			t.Errorf("CacheControlFor(%s) = %q, want %q", rel, got, want)
		}
	}
}

// memRepo registers an in-memory bucket (with a prefix) as repository
// mem://NAME for the test's life.
func memRepo(t testing.TB, name string) (string, *blob.Bucket, *blobStore) {
	t.Helper()
	repo := "mem://" + name + "/repo"
	root := memblob.OpenBucket(nil)
	st := newBlobStore(repo, root, "repo/")
	registerStore(t, repo, st)
	return repo, root, st
}

// cloneBucket copies every object of src, with its attributes, into a new
// in-memory bucket.
func cloneBucket(t testing.TB, src *blob.Bucket) *blob.Bucket {
	t.Helper()
	ctx := context.Background()
	dst := memblob.OpenBucket(nil)
	t.Cleanup(func() { dst.Close() })
	it := src.List(nil)
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := src.Attributes(ctx, obj.Key)
		if err != nil {
			t.Fatal(err)
		}
		data, err := src.ReadAll(ctx, obj.Key)
		if err != nil {
			t.Fatal(err)
		}
		err = dst.WriteAll(ctx, obj.Key, data, &blob.WriterOptions{CacheControl: attrs.CacheControl,
			ContentType: attrs.ContentType, Metadata: attrs.Metadata})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// registerStore makes st the store of repo for the test's life.
func registerStore(t testing.TB, repo string, st Store) {
	stores.Lock()
	stores.m[repo] = &storeRef{st: st, ctx: context.Background(), refs: 1}
	stores.Unlock()
	t.Cleanup(func() { releaseStore(repo) })
}

// clientView reads the repository as a client does: the root pair, or
// when it does not verify the history copy its signature names; then
// every artifact of that manifest, checked against it. It returns the
// manifest's sequence; any missing or different artifact is an error (a
// mixed release).
func clientView(ctx context.Context, st Store, pub manifest.PublicKey) (uint64, error) {
	return clientViewOf(ctx, st, pub, false)
}

// clientViewOf is clientView; newestOnly checks only the artifacts of the
// newest release (the ones a client updating now fetches).
func clientViewOf(ctx context.Context, st Store, pub manifest.PublicKey, newestOnly bool) (uint64, error) {
	raw, err := st.Get(ctx, manifest.ManifestName, manifest.MaxManifestSize)
	if err != nil {
		return 0, err
	}
	sig, err := st.Get(ctx, manifest.SignatureName, manifest.MaxSignatureSize)
	if err != nil {
		return 0, err
	}
	if _, err := manifest.Verify(pub, raw, sig); err != nil {
		c, err := trustedCommentOf(sig)
		if err != nil {
			return 0, err
		}
		seq, ok := sequenceOf(c)
		if !ok {
			return 0, errors.New("no sequence in the signature")
		}
		if raw, err = st.Get(ctx, historyPath(seq), manifest.MaxManifestSize); err != nil {
			return 0, fmt.Errorf("root pair mismatch and no history copy: %w", err)
		}
		if _, err := manifest.Verify(pub, raw, sig); err != nil {
			return 0, fmt.Errorf("history copy %d: %w", seq, err)
		}
	}
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		return 0, err
	}
	check := func(a manifest.Artifact) error {
		b, err := st.Get(ctx, a.Path, a.Size)
		if err != nil {
			return fmt.Errorf("sequence %d: %w", m.Sequence, err)
		}
		if int64(len(b)) != a.Size || sha256.Sum256(b) != a.SHA256 {
			return fmt.Errorf("sequence %d: %s differs from the manifest", m.Sequence, a.Path)
		}
		return nil
	}
	releases := m.Releases
	if newestOnly {
		rs := m.Sorted("")
		releases = []manifest.Release{*rs[len(rs)-1]}
	}
	for _, r := range releases {
		for _, a := range r.Archives {
			if err := check(a.Artifact); err != nil {
				return 0, err
			}
		}
		for _, p := range r.Patches {
			if err := check(p.Artifact); err != nil {
				return 0, err
			}
		}
		if r.FileList != nil {
			if _, err := st.Get(ctx, r.FileList.Path, manifest.MaxFileListSize); err != nil {
				return 0, err
			}
		}
	}
	return m.Sequence, nil
}

// TestPublishToBucket: publish, verify and prune on an in-memory bucket;
// every object carries its Cache-Control; the lease is gone afterwards.
func TestPublishToBucket(t *testing.T) {
	ctx := context.Background()
	priv, pub, _ := testKey(t)
	now := time.Now().UTC()
	repo, root, st := memRepo(t, "bucket")
	for i := range 6 {
		publish(t, repo, fmt.Sprintf("1.%d.0", i), versionTree(t, i), priv, now)
	}
	rep, err := Verify(ctx, repo, pub, VerifyOptions{})
	if err != nil || !rep.OK() || len(rep.Orphans) != 0 || len(rep.Strays) != 0 || len(rep.NoRoute) != 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	if rep.Routes["1.0.0"] == 0 || rep.Routes["1.5.0"] != 0 {
		t.Errorf("routes: %v", rep.Routes)
	}
	objs, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		a, err := st.b.Attributes(ctx, st.key(o.Path))
		if err != nil {
			t.Fatal(err)
		}
		if want := CacheControlFor(o.Path); a.CacheControl != want {
			t.Errorf("%s: Cache-Control %q, want %q", o.Path, a.CacheControl, want)
		}
	}
	if ok, _ := root.Exists(ctx, leaseKey(st.leaseDir(), 1)); ok {
		t.Error("the lease is left behind")
	}
	if ls, _ := st.leases(ctx); len(ls) != 0 {
		t.Errorf("leases left: %v", ls)
	}

	// Dry run: nothing changes.
	before, _ := st.List(ctx)
	res, err := Prune(ctx, PruneOptions{Repo: repo, Key: priv, Keep: 2, DryRun: true})
	if err != nil || len(res.Dropped) != 4 || len(res.Deleted) == 0 {
		t.Fatalf("dry run: %v %+v", err, res)
	}
	if after, _ := st.List(ctx); len(after) != len(before) {
		t.Fatal("the dry run changed the bucket")
	}
	dry := res
	res, err = Prune(ctx, PruneOptions{Repo: repo, Key: priv, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if dry.BytesAfter != res.BytesAfter || dry.DeletedBytes != res.DeletedBytes {
		t.Errorf("the dry run foretold %d bytes after (%d deleted), the prune left %d (%d)", dry.BytesAfter, dry.DeletedBytes, res.BytesAfter, res.DeletedBytes)
	}
	if len(res.Kept) != 2 || res.Kept[0] != "1.4.0" || res.Sequence != 7 {
		t.Fatalf("prune: %+v", res)
	}
	if res.BytesAfter >= res.BytesBefore || res.BytesAfter != res.BytesBefore-res.DeletedBytes+res.ManifestBytes {
		t.Errorf("sizes: before %d after %d deleted %d", res.BytesBefore, res.BytesAfter, res.DeletedBytes)
	}
	rep, err = Verify(ctx, repo, pub, VerifyOptions{})
	if err != nil || !rep.OK() || len(rep.Orphans) != 0 || len(rep.NoRoute) != 0 || rep.Releases != 2 {
		t.Fatalf("verify after prune: %v %+v", err, rep)
	}
	// Pruning again finds nothing.
	if res, err := Prune(ctx, PruneOptions{Repo: repo, Key: priv, Keep: 2}); err != nil || len(res.Deleted) != 0 || res.Sequence != 7 {
		t.Fatalf("second prune: %v %+v", err, res)
	}
}

// crashStore is a Store that fails every write after the first n, as a
// publisher killed between two writes would stop.
type crashStore struct {
	Store
	mu     sync.Mutex
	n      int
	writes int
}

var errCrash = errors.New("killed")

func (c *crashStore) write() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.n >= 0 && c.writes > c.n {
		return errCrash
	}
	return nil
}

func (c *crashStore) Put(ctx context.Context, rel string, fill func(io.Writer) error) error {
	if err := c.write(); err != nil {
		return err
	}
	return c.Store.Put(ctx, rel, fill)
}

func (c *crashStore) Rename(ctx context.Context, from, to string) error {
	if err := c.write(); err != nil {
		return err
	}
	return c.Store.Rename(ctx, from, to)
}

func (c *crashStore) Delete(ctx context.Context, rel string) error {
	if err := c.write(); err != nil {
		return err
	}
	return c.Store.Delete(ctx, rel)
}

// Lock leaves the lease behind when released after a crash, as a killed
// publisher does (the next one takes it over: same host, dead process is
// simulated by expiring it).
func (c *crashStore) Lock(ctx context.Context) (func(), error) {
	release, err := c.Store.Lock(ctx)
	if err != nil {
		return nil, err
	}
	return func() {
		c.mu.Lock()
		crashed := c.n >= 0 && c.writes > c.n
		c.mu.Unlock()
		if !crashed {
			release()
			return
		}
		bs := c.Store.(*blobStore)
		l := bs.lease
		close(l.stop)
		<-l.done
		bs.lease = nil
		// The dead holder's lease, expired.
		l.body.Expires = time.Now().Add(-time.Second)
		raw := fmt.Sprintf(`{"holder":"dead","host":"elsewhere","pid":1,"expires":%q}`, l.body.Expires.Format(time.RFC3339Nano))
		bs.b.WriteAll(ctx, l.key, []byte(raw), nil)
	}, nil
}

// TestBucketPublishKilled: a publish stopped after any number of writes
// leaves a repository whose client view is the previous release or the
// new one, complete; the next publish completes and removes the leftovers.
func TestBucketPublishKilled(t *testing.T) {
	ctx := context.Background()
	priv, pub, _ := testKey(t)
	now := time.Now().UTC()
	v := []string{versionTree(t, 0), versionTree(t, 1), versionTree(t, 2)}
	// Count the writes of a whole publish first.
	count := func() int {
		repo, _, st := memRepo(t, "count")
		cs := &crashStore{Store: st, n: -1}
		stores.m[repo].st = cs
		publish(t, repo, "1.0.0", v[0], priv, now)
		publish(t, repo, "1.1.0", v[1], priv, now)
		cs.writes = 0
		publish(t, repo, "1.2.0", v[2], priv, now)
		return cs.writes
	}()
	if count < 8 {
		t.Fatalf("a publish made only %d writes", count)
	}
	// Every run starts from a copy of the same two-release bucket.
	baseRepo, base, _ := memRepo(t, "killbase")
	publish(t, baseRepo, "1.0.0", v[0], priv, now)
	publish(t, baseRepo, "1.1.0", v[1], priv, now)
	for n := 0; n < count; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			repo := fmt.Sprintf("mem://kill%d/repo", n)
			st := newBlobStore(repo, cloneBucket(t, base), "repo/")
			registerStore(t, repo, st)
			cs := &crashStore{Store: st, n: n}
			stores.m[repo].st = cs
			_, err := Publish(ctx, v[2], PublishOptions{Repo: repo, App: "demo", Version: "1.2.0", Key: priv, Now: func() time.Time { return now }})
			if !errors.Is(err, errCrash) {
				t.Fatalf("publish killed after %d writes: %v", n, err)
			}
			seq, err := clientView(ctx, st, pub)
			if err != nil || (seq != 2 && seq != 3) {
				t.Fatalf("client after a kill at write %d: sequence %d, %v", n, seq, err)
			}
			cs.n = -1
			res := publish(t, repo, "1.2.0", v[2], priv, now)
			if res.Sequence != 3 {
				t.Errorf("the next publish made sequence %d", res.Sequence)
			}
			rep, err := Verify(ctx, repo, pub, VerifyOptions{})
			if err != nil || !rep.OK() || len(rep.Orphans) != 0 || len(rep.Strays) != 0 {
				t.Fatalf("verify: %v %+v", err, rep)
			}
		})
	}
}

// TestBucketLease: a second publisher is refused, naming the holder; a
// lease of a dead process or an expired one is taken over; exactly one
// of many racing publishers wins a generation.
func TestBucketLease(t *testing.T) {
	ctx := context.Background()
	_, _, st := memRepo(t, "lease")
	release, err := st.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := newBlobStore("other", st.b, st.prefix)
	if _, err := other.Lock(ctx); !errors.Is(err, ErrRepo) || !strings.Contains(err.Error(), "another publish holds the lease") {
		t.Fatalf("second Lock: %v", err)
	}
	if err := st.Fence(ctx); err != nil {
		t.Fatalf("Fence while held: %v", err)
	}
	release()
	if ls, _ := st.leases(ctx); len(ls) != 0 {
		t.Fatalf("leases after release: %v", ls)
	}

	// An expired lease, and one of a dead process of this host.
	for _, body := range []string{
		`{"holder":"gone","host":"elsewhere","pid":1,"expires":"2000-01-01T00:00:00Z"}`,
		fmt.Sprintf(`{"holder":"dead","host":%q,"pid":%d,"expires":"2999-01-01T00:00:00Z"}`, hostname(), deadPID(t)),
	} {
		if err := st.b.WriteAll(ctx, leaseKey(st.leaseDir(), 7), []byte(body), nil); err != nil {
			t.Fatal(err)
		}
		release, err := other.Lock(ctx)
		if err != nil {
			t.Fatalf("taking over %s: %v", body, err)
		}
		if other.lease.key != leaseKey(st.leaseDir(), 8) {
			t.Errorf("took %s", other.lease.key)
		}
		release()
	}

	// Lost lease: another generation appears; Fence refuses.
	release, err = st.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.b.WriteAll(ctx, leaseKey(st.leaseDir(), 99), []byte("{}"), nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Fence(ctx); !errors.Is(err, ErrRepo) || !strings.Contains(err.Error(), "was lost") {
		t.Fatalf("Fence after takeover: %v", err)
	}
	release()
	st.b.Delete(ctx, leaseKey(st.leaseDir(), 99))

	// Racing publishers: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, losses := 0, 0
	var releases []func()
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newBlobStore(fmt.Sprint(i), st.b, st.prefix)
			r, err := s.Lock(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
				releases = append(releases, r)
			} else if errors.Is(err, ErrRepo) {
				losses++
			} else {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || losses != 7 {
		t.Errorf("%d won, %d lost; want 1 and 7", wins, losses)
	}
	for _, r := range releases {
		r()
	}
}

// TestBucketGetMissing: a missing object matches fs.ErrNotExist.
func TestBucketGetMissing(t *testing.T) {
	_, _, st := memRepo(t, "missing")
	if _, err := st.Get(context.Background(), "nothing", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get: %v", err)
	}
	if err := st.Delete(context.Background(), "nothing"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Delete: %v", err)
	}
	if err := st.Put(context.Background(), "x", func(w io.Writer) error { w.Write(bytes.Repeat([]byte("a"), 100)); return errCrash }); !errors.Is(err, errCrash) {
		t.Errorf("Put: %v", err)
	}
	if ok, _ := st.b.Exists(context.Background(), st.key("x")); ok {
		t.Error("a failed Put left an object")
	}
	if _, err := st.Get(context.Background(), "y", 10); err == nil {
		t.Error("no error")
	}
	st.Put(context.Background(), "big", func(w io.Writer) error { _, err := w.Write(make([]byte, 100)); return err })
	if _, err := st.Get(context.Background(), "big", 10); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Get over the limit: %v", err)
	}
}
