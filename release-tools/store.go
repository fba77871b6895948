package releasetools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/deltaup/deltaup/delta"
)

// Store is where a repository lives: a local directory (localStore, with
// flock and rename for crash safety) or a bucket of an object store
// (blobStore: S3 and S3-compatible stores, Google Cloud Storage, Azure
// Blob). Paths are repository paths (slash-separated, relative, as in the
// manifest).
//
// Every write is whole or absent: a reader sees the old object, the new
// one, or none, never part of one (rename on a directory, a single PUT or
// completed multipart upload on a bucket).
type Store interface {
	// Put writes the object at rel with the bytes fill writes. When fill
	// fails the object is left as it was.
	Put(ctx context.Context, rel string, fill func(io.Writer) error) error
	// Get reads the object at rel, refusing more than limit bytes. A
	// missing object gives an error matching fs.ErrNotExist.
	Get(ctx context.Context, rel string, limit int64) ([]byte, error)
	// Open opens the object at rel for reading, seeking and reading at
	// offsets, with its size. On a bucket it is first downloaded into a
	// temporary file that Close removes.
	Open(ctx context.Context, rel string) (ArtifactFile, int64, error)
	// Rename moves the object at from to to (replacing it).
	Rename(ctx context.Context, from, to string) error
	// Delete removes the object at rel; a missing one gives an error
	// matching fs.ErrNotExist.
	Delete(ctx context.Context, rel string) error
	// List returns every object of the repository, sorted by path.
	List(ctx context.Context) ([]Object, error)
	// Lock excludes other publishers (and pruners) of the repository
	// until the returned function is called: flock on a directory, a
	// lease object created with If-None-Match: * on a bucket. Another
	// holder gives an error matching ErrRepo that names it.
	Lock(ctx context.Context) (func(), error)
	// Fence fails when the lock taken by Lock is no longer held (a lease
	// that expired and was taken over); it is checked before the new
	// manifest is written.
	Fence(ctx context.Context) error
	// TempDir is where trees are extracted while publishing or verifying:
	// beside a local repository (never inside, where it would be served),
	// "" (the system's) for a bucket.
	TempDir() string
	// String names the repository for messages.
	String() string
	// Close releases the store's connections.
	Close() error
}

// ArtifactFile is an open repository object.
type ArtifactFile interface {
	io.ReadSeekCloser
	io.ReaderAt
}

// Object is one object of a repository.
type Object struct {
	Path    string // repository path
	Size    int64
	ModTime time.Time
}

// Cache-Control values of objects on a bucket (a CDN in front of it, and
// clients' HTTP caches, obey them).
const (
	// CacheImmutable is set on everything below a directory: artifacts,
	// file lists, frame indexes, history manifests. Such an object is
	// written once under a name that is never reused for other bytes.
	CacheImmutable = "public, max-age=31536000, immutable"
	// CacheMutable is set on the documents at the top of the repository
	// (manifest.json and its signature), which every publish replaces.
	CacheMutable = "public, max-age=60"
)

// CacheControlFor returns the Cache-Control of the object at rel:
// CacheMutable at the top level, CacheImmutable below a directory.
func CacheControlFor(rel string) string {
	if strings.Contains(rel, "/") {
		return CacheImmutable
	}
	return CacheMutable
}

// contentTypeFor returns the Content-Type of the object at rel.
func contentTypeFor(rel string) string {
	switch {
	case strings.HasSuffix(rel, ".json"):
		return "application/json"
	case strings.HasSuffix(rel, ".minisig"):
		return "text/plain; charset=utf-8"
	case strings.HasSuffix(rel, ".tar.gz"):
		return "application/gzip"
	case strings.HasSuffix(rel, ".tar.zst"):
		return "application/zstd"
	}
	return "application/octet-stream"
}

// IsRemote reports whether repo names a bucket (a URL of a scheme other
// than file) rather than a local directory.
func IsRemote(repo string) bool {
	scheme, _, ok := strings.Cut(repo, "://")
	return ok && scheme != "file" && !strings.ContainsAny(scheme, `/\`)
}

// LocalPath returns the directory a local repo names: repo itself, or the
// path of a file:// URL. It fails for a bucket URL.
func LocalPath(repo string) (string, error) {
	if IsRemote(repo) {
		return "", fmt.Errorf("releasetools: %s is not a local directory", repo)
	}
	if !strings.HasPrefix(repo, "file://") {
		return repo, nil
	}
	u, err := url.Parse(repo)
	if err != nil {
		return "", fmt.Errorf("releasetools: --repo %s: %w", repo, err)
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("releasetools: --repo %s: a file URL names a local path (file:///dir), not host %q", repo, u.Host)
	}
	if u.RawQuery != "" {
		return "", fmt.Errorf("releasetools: --repo %s: a file URL takes no query", repo)
	}
	if u.Path == "" {
		return "", fmt.Errorf("releasetools: --repo %s: no path", repo)
	}
	return filepath.FromSlash(u.Path), nil
}

// OpenStore opens the repository repo names: a directory (a path, or a
// file:///path URL), or a bucket URL (see openBlobStore: s3://, gs://,
// azblob://). Credentials come from each cloud's usual environment
// variables and files, never from the URL. Close the store when done.
func OpenStore(ctx context.Context, repo string) (Store, error) {
	if IsRemote(repo) {
		return openBlobStore(ctx, repo)
	}
	dir, err := LocalPath(repo)
	if err != nil {
		return nil, err
	}
	return &localStore{dir: dir}, nil
}

// The stores in use, by the repo string the helpers (writeFile, readFile,
// writeArtifact, openArtifact, …) receive: Publish, Verify and Prune
// register the store they open, so that every helper, and every document
// written through them, reaches the same store.
var stores = struct {
	sync.Mutex
	m map[string]*storeRef
}{m: map[string]*storeRef{}}

type storeRef struct {
	st   Store
	ctx  context.Context
	refs int
}

// useStore opens repo's store and registers it for the helpers until the
// returned release function is called; nested uses share one store.
func useStore(ctx context.Context, repo string) (Store, func(), error) {
	stores.Lock()
	defer stores.Unlock()
	if r, ok := stores.m[repo]; ok {
		r.refs++
		return r.st, func() { releaseStore(repo) }, nil
	}
	st, err := OpenStore(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	stores.m[repo] = &storeRef{st: st, ctx: ctx, refs: 1}
	return st, func() { releaseStore(repo) }, nil
}

func releaseStore(repo string) {
	stores.Lock()
	defer stores.Unlock()
	r := stores.m[repo]
	if r == nil {
		return
	}
	if r.refs--; r.refs == 0 {
		delete(stores.m, repo)
		r.st.Close()
	}
}

// storeOf returns the registered store of repo and its operation's context,
// or a local store when repo is a directory that nothing registered.
func storeOf(repo string) (Store, context.Context, error) {
	stores.Lock()
	r, ok := stores.m[repo]
	stores.Unlock()
	if ok {
		return r.st, r.ctx, nil
	}
	dir, err := LocalPath(repo)
	if err != nil {
		return nil, nil, fmt.Errorf("releasetools: %s: bucket not opened (internal error)", repo)
	}
	return &localStore{dir: dir}, context.Background(), nil
}

// localStore is a repository directory.
type localStore struct{ dir string }

func (s *localStore) path(rel string) string { return filepath.Join(s.dir, filepath.FromSlash(rel)) }

func (s *localStore) Put(ctx context.Context, rel string, fill func(io.Writer) error) error {
	p := s.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return delta.WriteFileAtomic(p, 0o644, fill)
}

func (s *localStore) Get(ctx context.Context, rel string, limit int64) ([]byte, error) {
	f, err := os.Open(s.path(rel))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, rel, limit)
}

func readLimited(r io.Reader, rel string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", rel, limit)
	}
	return b, nil
}

func (s *localStore) Open(ctx context.Context, rel string) (ArtifactFile, int64, error) {
	f, err := os.Open(s.path(rel))
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (s *localStore) Rename(ctx context.Context, from, to string) error {
	if err := os.Rename(s.path(from), s.path(to)); err != nil {
		return err
	}
	syncDirOf(s.path(to))
	return nil
}

func (s *localStore) Delete(ctx context.Context, rel string) error { return os.Remove(s.path(rel)) }

func (s *localStore) List(ctx context.Context) ([]Object, error) {
	var out []Object
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return ctx.Err()
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		out = append(out, Object{Path: filepath.ToSlash(rel), Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

func (s *localStore) Lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	lockPath, err := LockPath(s.dir)
	if err != nil {
		return nil, err
	}
	unlock, err := lockFile(lockPath)
	if err != nil {
		return nil, err
	}
	if err := dropLegacyLock(s.dir); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

func (s *localStore) Fence(context.Context) error { return nil }

func (s *localStore) TempDir() string {
	dir, err := filepath.EvalSymlinks(s.dir)
	if err != nil {
		dir = s.dir
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return filepath.Dir(dir)
}

func (s *localStore) String() string { return s.dir }
func (s *localStore) Close() error   { return nil }

// topLevel returns the first element of a repository path and whether
// more follows (the object lies in a directory).
func topLevel(rel string) (string, bool) {
	first, _, more := strings.Cut(rel, "/")
	return first, more
}

// inDir reports whether rel lies in directory dir (at any depth).
func inDir(rel, dir string) bool { return strings.HasPrefix(rel, dir+"/") }
