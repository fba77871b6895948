package releasetools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// Lease timing of a bucket's publish lock (blobStore.Lock).
const (
	// LeaseTTL is how long a lease holds without renewal: a publisher
	// that died on another machine blocks others at most this long.
	LeaseTTL = 10 * time.Minute
	// leaseRenew is how often a live holder renews its lease.
	leaseRenew = LeaseTTL / 4
	// LeaseDir names the lease objects beside the repository's prefix:
	// PREFIX.deltaup-lock/GENERATION (inside the bucket's root when the
	// repository is the whole bucket: .deltaup-lock/GENERATION).
	LeaseDir = LockSuffix
)

// blobStore is a repository in a bucket, under a prefix, through
// gocloud.dev/blob.
type blobStore struct {
	url    string       // as given, for messages
	b      *blob.Bucket // the whole bucket (leases live beside the prefix)
	prefix string       // the repository's folder: "" or "a/b/"
	lease  *lease
	// parent, for a platform's sub-store (usePlatform), is the
	// repository's store: it holds the lease (Fence asks it) and closes
	// the bucket they share.
	parent *blobStore
}

// openBlobStore opens a bucket URL: SCHEME://BUCKET[/PREFIX][?PARAMS], with
// SCHEME s3, gs or azblob and the parameters gocloud.dev's openers take
// (s3: region, endpoint, use_path_style, disable_https, profile, …; azblob:
// domain, protocol, …). PREFIX is the repository's folder in the bucket.
// Credentials come from the cloud's usual sources: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY or ~/.aws/credentials for S3,
// GOOGLE_APPLICATION_CREDENTIALS or gcloud's default credentials for GCS,
// AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY (or a managed identity) for
// Azure.
func openBlobStore(ctx context.Context, repo string) (*blobStore, error) {
	u, err := url.Parse(repo)
	if err != nil {
		return nil, fmt.Errorf("releasetools: --repo %s: %w", repo, err)
	}
	switch u.Scheme {
	case "s3", "gs", "azblob":
	default:
		return nil, fmt.Errorf("releasetools: --repo %s: unknown scheme %q: give a directory, file:///dir, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or azblob://CONTAINER/PREFIX", repo, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("releasetools: --repo %s: no bucket name (%s://BUCKET/PREFIX)", repo, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("releasetools: --repo %s: credentials do not belong in the URL: set them in the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://)", redact(u))
	}
	q := u.Query()
	if q.Has("prefix") {
		return nil, fmt.Errorf("releasetools: --repo %s: give the prefix as the URL's path (%s://%s/PREFIX), not as ?prefix=", repo, u.Scheme, u.Host)
	}
	prefix := strings.Trim(u.Path, "/")
	if strings.Contains(prefix, "//") || strings.Contains("/"+prefix+"/", "/../") || strings.Contains("/"+prefix+"/", "/./") {
		return nil, fmt.Errorf("releasetools: --repo %s: the prefix %q is not a clean path", repo, prefix)
	}
	if prefix != "" {
		prefix += "/"
	}
	open := url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery}
	if !slices.Contains(blob.DefaultURLMux().BucketSchemes(), u.Scheme) {
		return nil, fmt.Errorf("releasetools: --repo %s: this program has no %s:// driver: import _ \"github.com/deltaup/deltaup/release-tools/clouds\" (mkdelta does)", redact(u), u.Scheme)
	}
	root, err := blob.OpenBucket(ctx, open.String())
	if err != nil {
		return nil, fmt.Errorf("releasetools: opening %s: %w", repo, err)
	}
	return &blobStore{url: repo, b: root, prefix: prefix}, nil
}

// redact drops user information from a URL for messages.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// blobErr maps a bucket error: not found matches fs.ErrNotExist.
// key is the bucket key of repository path rel.
func (s *blobStore) key(rel string) string { return s.prefix + rel }

func blobErr(rel string, err error) error {
	if err == nil {
		return nil
	}
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
	}
	return fmt.Errorf("%s: %w", rel, err)
}

func (s *blobStore) Put(ctx context.Context, rel string, fill func(io.Writer) error) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.b.NewWriter(wctx, s.key(rel), &blob.WriterOptions{
		CacheControl: CacheControlFor(rel),
		ContentType:  contentTypeFor(rel),
	})
	if err != nil {
		return blobErr(rel, err)
	}
	if err := fill(w); err != nil {
		cancel() // aborts the upload: nothing is written
		w.Close()
		return err
	}
	return blobErr(rel, w.Close())
}

func (s *blobStore) Get(ctx context.Context, rel string, limit int64) ([]byte, error) {
	r, err := s.b.NewReader(ctx, s.key(rel), nil)
	if err != nil {
		return nil, blobErr(rel, err)
	}
	defer r.Close()
	if r.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", rel, limit)
	}
	b, err := readLimited(r, rel, limit)
	return b, blobErr(rel, err)
}

// tempArtifact is a downloaded object; Close removes it.
type tempArtifact struct{ *os.File }

func (t tempArtifact) Close() error {
	err := t.File.Close()
	os.Remove(t.Name())
	return err
}

func (s *blobStore) Open(ctx context.Context, rel string) (ArtifactFile, int64, error) {
	f, err := os.CreateTemp("", ".deltaup-artifact-*")
	if err != nil {
		return nil, 0, err
	}
	t := tempArtifact{f}
	if err := s.b.Download(ctx, s.key(rel), f, nil); err != nil {
		t.Close()
		return nil, 0, blobErr(rel, err)
	}
	n, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		t.Close()
		return nil, 0, err
	}
	return t, n, nil
}

func (s *blobStore) Rename(ctx context.Context, from, to string) error {
	if err := s.b.Copy(ctx, s.key(to), s.key(from), nil); err != nil {
		return blobErr(from, err)
	}
	return s.Delete(ctx, from)
}

func (s *blobStore) Delete(ctx context.Context, rel string) error {
	return blobErr(rel, s.b.Delete(ctx, s.key(rel)))
}

func (s *blobStore) List(ctx context.Context) ([]Object, error) {
	var out []Object
	it := s.b.List(&blob.ListOptions{Prefix: s.prefix})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", s.url, err)
		}
		if o.IsDir {
			continue
		}
		out = append(out, Object{Path: strings.TrimPrefix(o.Key, s.prefix), Size: o.Size, ModTime: o.ModTime})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func (s *blobStore) TempDir() string { return "" }
func (s *blobStore) String() string  { return s.url }

func (s *blobStore) Close() error {
	if s.parent != nil {
		return nil
	}
	if s.lease != nil {
		s.lease.release()
	}
	return s.b.Close()
}

// leaseBody is the content of a lease object.
type leaseBody struct {
	Holder   string    `json:"holder"` // host and process, for messages
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`
}

// lease is a held publish lock on a bucket.
type lease struct {
	s    *blobStore
	key  string
	body leaseBody
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	err  error // a failed renewal
	once sync.Once
}

func (s *blobStore) leaseDir() string {
	return strings.TrimSuffix(s.prefix, "/") + LeaseDir + "/"
}

func leaseKey(dir string, gen uint64) string {
	return fmt.Sprintf("%s%020d", dir, gen)
}

// leases lists the lease objects, by generation.
func (s *blobStore) leases(ctx context.Context) ([]uint64, error) {
	dir := s.leaseDir()
	var gens []uint64
	it := s.b.List(&blob.ListOptions{Prefix: dir})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing the publish leases %s: %w", dir, err)
		}
		if g, err := strconv.ParseUint(strings.TrimPrefix(o.Key, dir), 10, 64); err == nil && !o.IsDir {
			gens = append(gens, g)
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	return gens, nil
}

// Lock takes the bucket's publish lease: it lists the lease objects
// PREFIX.deltaup-lock/GENERATION; when the newest is live (not expired, and
// not held by a process of this host that is gone) another publish runs
// and Lock fails naming it; else it creates generation+1 with
// If-None-Match: * (blob.WriterOptions.IfNotExist), which exactly one of
// several racing publishers wins. The lease is renewed every LeaseTTL/4
// until the release function is called, which deletes it.
func (s *blobStore) Lock(ctx context.Context) (func(), error) {
	if s.lease != nil {
		return nil, fmt.Errorf("%w: another publish of this process holds the lease %s: wait for it to finish", ErrRepo, s.lease.key)
	}
	host, _ := os.Hostname()
	dir := s.leaseDir()
	for attempt := 0; attempt < 5; attempt++ {
		gens, err := s.leases(ctx)
		if err != nil {
			return nil, err
		}
		var next uint64 = 1
		if len(gens) > 0 {
			top := gens[len(gens)-1]
			next = top + 1
			key := leaseKey(dir, top)
			raw, err := s.b.ReadAll(ctx, key)
			if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
				return nil, fmt.Errorf("releasetools: reading the publish lease %s: %w", key, err)
			}
			if err == nil {
				var b leaseBody
				if json.Unmarshal(raw, &b) == nil && time.Now().Before(b.Expires) && !(b.Host == host && b.PID > 0 && !processAlive(b.PID)) {
					return nil, fmt.Errorf("%w: another publish holds the lease %s (%s, since %s, until %s unless renewed): wait for it to finish", ErrRepo, key, b.Holder, b.Acquired.Format(time.RFC3339), b.Expires.Format(time.RFC3339))
				}
			}
		}
		now := time.Now().UTC()
		body := leaseBody{Holder: fmt.Sprintf("%s pid %d", host, os.Getpid()), Host: host, PID: os.Getpid(), Acquired: now, Expires: now.Add(LeaseTTL)}
		raw, _ := json.Marshal(body)
		key := leaseKey(dir, next)
		err = s.b.WriteAll(ctx, key, raw, &blob.WriterOptions{IfNotExist: true, ContentType: "application/json", CacheControl: "no-store"})
		if c := gcerrors.Code(err); c == gcerrors.FailedPrecondition || c == gcerrors.AlreadyExists {
			continue // another publisher won this generation: look again
		}
		if err != nil {
			return nil, fmt.Errorf("releasetools: creating the publish lease %s: %w", key, err)
		}
		// Older generations are dead or released: drop them.
		for _, g := range gens {
			s.b.Delete(ctx, leaseKey(dir, g))
		}
		l := &lease{s: s, key: key, body: body, stop: make(chan struct{}), done: make(chan struct{})}
		s.lease = l
		go l.renew()
		return l.release, nil
	}
	return nil, fmt.Errorf("%w: the publish lease %s keeps being taken: is another publish starting and stopping?", ErrRepo, dir)
}

func (l *lease) renew() {
	defer close(l.done)
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), leaseRenew)
			err := l.s.checkLease(ctx, l)
			if err == nil {
				l.mu.Lock()
				l.body.Expires = time.Now().UTC().Add(LeaseTTL)
				raw, _ := json.Marshal(l.body)
				l.mu.Unlock()
				err = l.s.b.WriteAll(ctx, l.key, raw, &blob.WriterOptions{ContentType: "application/json", CacheControl: "no-store"})
			}
			cancel()
			if err != nil {
				l.mu.Lock()
				if l.err == nil {
					l.err = err
				}
				l.mu.Unlock()
			}
		}
	}
}

func (l *lease) release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l.s.b.Delete(ctx, l.key)
		l.s.lease = nil
	})
}

// checkLease fails when l is no longer the newest lease.
func (s *blobStore) checkLease(ctx context.Context, l *lease) error {
	gens, err := s.leases(ctx)
	if err != nil {
		return err
	}
	if len(gens) == 0 || leaseKey(s.leaseDir(), gens[len(gens)-1]) != l.key {
		return fmt.Errorf("%w: the publish lease %s was lost (it expired and another publish took over): nothing was made live; publish again", ErrRepo, l.key)
	}
	return nil
}

func (s *blobStore) Fence(ctx context.Context) error {
	if s.parent != nil {
		return s.parent.Fence(ctx)
	}
	l := s.lease
	if l == nil {
		return errors.New("releasetools: writing without the publish lease (internal error)")
	}
	l.mu.Lock()
	err, expires := l.err, l.body.Expires
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: renewing the publish lease %s failed (%v): nothing was made live; publish again", ErrRepo, l.key, err)
	}
	if time.Now().After(expires) {
		return fmt.Errorf("%w: the publish lease %s expired: nothing was made live; publish again", ErrRepo, l.key)
	}
	return s.checkLease(ctx, l)
}

// newBlobStore makes a store of a bucket opened elsewhere (tests use
// in-memory buckets); name is the repo string it answers to.
func newBlobStore(name string, root *blob.Bucket, prefix string) *blobStore {
	return &blobStore{url: name, b: root, prefix: prefix}
}
