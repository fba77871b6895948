package releasetools

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// Platforms in one repository (docs/FORMAT.md, "Platforms in one
// repository"): the releases of platform P live in the sub-repository
// REPO/P/, laid out exactly as a repository (manifest.json, manifests/,
// archives/, patches/, filelists/, deltas/), so that any client can be
// pointed at REPO/P/ as a repository of its own. The root and the
// timestamp stay at REPO's top and are shared: the timestamp names each
// platform's current index ("platforms"). One lock covers the whole
// repository (the timestamp is shared).

// checkPlatform validates a platform option ("" is the platform-less
// build).
func checkPlatform(p string) error {
	if p != "" && !manifest.ValidPlatform(p) {
		return fmt.Errorf("releasetools: platform %q is not a platform name: OS-ARCH in lowercase letters and digits, at most %d bytes (linux-amd64, windows-amd64, darwin-arm64; --platform)", p, manifest.MaxPlatformLen)
	}
	return nil
}

// platformRepo returns the repo string of platform's sub-repository of
// repo: the directory REPO/P, or the bucket URL with P appended to its
// prefix. It is repo itself for "".
func platformRepo(repo, platform string) (string, error) {
	if platform == "" {
		return repo, nil
	}
	if !IsRemote(repo) {
		dir, err := LocalPath(repo)
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, platform), nil
	}
	u, err := url.Parse(repo)
	if err != nil {
		return "", fmt.Errorf("releasetools: --repo %s: %w", repo, err)
	}
	u.Path = "/" + path.Join(strings.Trim(u.Path, "/"), platform)
	return u.String(), nil
}

// usePlatform registers the store of platform's sub-repository of repo,
// whose store st is open (and locked by the caller): the helpers
// (readFile, writeFile, writeArtifact, …) then reach it by the returned
// repo string. A bucket's sub-store shares the bucket and the lease
// (Fence checks the lease of the whole repository). Release it with the
// returned function. For "" it returns repo and st.
func usePlatform(ctx context.Context, repo string, st Store, platform string) (string, Store, func(), error) {
	if platform == "" {
		return repo, st, func() {}, nil
	}
	sub, err := platformRepo(repo, platform)
	if err != nil {
		return "", nil, nil, err
	}
	stores.Lock()
	defer stores.Unlock()
	if r, ok := stores.m[sub]; ok {
		r.refs++
		return sub, r.st, func() { releaseStore(sub) }, nil
	}
	var sst Store
	switch s := st.(type) {
	case *localStore:
		sst = &localStore{dir: filepath.Join(s.dir, platform)}
	case *blobStore:
		sst = &blobStore{url: sub, b: s.b, prefix: s.prefix + platform + "/", parent: s}
	default:
		return "", nil, nil, fmt.Errorf("releasetools: %s: platforms need a directory or a bucket", repo)
	}
	stores.m[sub] = &storeRef{st: sst, ctx: ctx, refs: 1}
	return sub, sst, func() { releaseStore(sub) }, nil
}

// ListPlatforms returns the platforms of repo (sorted): the top-level
// directories named as platforms (manifest.ValidPlatform) that hold a
// manifest.json. repo must be open (Publish, Verify, Prune register it) or
// a local directory.
func ListPlatforms(ctx context.Context, repo string) ([]string, error) {
	st, sctx, err := storeOf(repo)
	if err != nil {
		return nil, err
	}
	var out []string
	if ls, ok := st.(*localStore); ok {
		des, err := os.ReadDir(ls.dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		for _, de := range des {
			if de.IsDir() && manifest.ValidPlatform(de.Name()) {
				if fi, err := os.Stat(filepath.Join(ls.dir, de.Name(), manifest.ManifestName)); err == nil && fi.Mode().IsRegular() {
					out = append(out, de.Name())
				}
			}
		}
		return out, nil
	}
	if ctx == nil {
		ctx = sctx
	}
	objs, err := st.List(ctx)
	if err != nil {
		return nil, err
	}
	return platformsIn(objs), nil
}

// platformsIn returns the platforms whose manifest.json is among objs.
func platformsIn(objs []Object) []string {
	var out []string
	for _, o := range objs {
		if p, rest, ok := strings.Cut(o.Path, "/"); ok && rest == manifest.ManifestName && manifest.ValidPlatform(p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// platformIndex is the current index of one platform ("" for the
// platform-less one) of a v2 repository.
type platformIndex struct {
	platform string
	repo     string // its (sub-)repository
	cur      loaded
}

// currentIndexes loads the current index of the platform-less build (when
// there is one) and of every platform of a local v2 repository, each
// checked against root's release keys (loadIndex). It fails when there is
// none at all.
func currentIndexes(repo string, root *manifest.Root) ([]platformIndex, error) {
	out, err := loadIndexes(repo, root)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: %s has no manifest.json, at its top or in a platform directory: publish a first release", ErrRepo, repo)
	}
	return out, err
}

// loadIndexes is currentIndexes without the check that there is one.
func loadIndexes(repo string, root *manifest.Root) ([]platformIndex, error) {
	var out []platformIndex
	top, err := loadIndex(repo, root, "")
	if err != nil {
		return nil, err
	}
	if top.m != nil {
		out = append(out, platformIndex{repo: repo, cur: top})
	}
	plats, err := ListPlatforms(context.Background(), repo)
	if err != nil {
		return nil, fmt.Errorf("%w: listing the platforms of %s: %v", ErrRepo, repo, err)
	}
	st, sctx, err := storeOf(repo)
	if err != nil {
		return nil, err
	}
	for _, p := range plats {
		// Registered for the read (a bucket's sub-store); the key
		// commands hold their own registration (lockRoles) for writes.
		sub, _, done, err := usePlatform(sctx, repo, st, p)
		if err != nil {
			return nil, err
		}
		cur, err := loadIndex(sub, root, root.App)
		done()
		if err != nil {
			return nil, fmt.Errorf("platform %s: %w", p, err)
		}
		if cur.m != nil {
			out = append(out, platformIndex{platform: p, repo: sub, cur: cur})
		}
	}
	return out, nil
}

// stampIndexes issues the next timestamp naming exactly the indexes given
// (the platform-less one under "", the others by platform), signed by the
// timestamp keys among keys; restart as for writeTimestamp.
func stampIndexes(repo string, root *manifest.Root, idx []platformIndex, keys []manifest.PrivateKey, now time.Time, validity time.Duration, restart bool) (*manifest.Timestamp, error) {
	ts := &manifest.Timestamp{}
	for _, pi := range idx {
		ref := manifest.IndexRef{Sequence: pi.cur.m.Sequence, Size: int64(len(pi.cur.raw)), SHA256: sha256Of(pi.cur.raw)}
		if pi.platform == "" {
			ts.Index = ref
			continue
		}
		if ts.Platforms == nil {
			ts.Platforms = map[string]manifest.IndexRef{}
		}
		ts.Platforms[pi.platform] = ref
	}
	return issueTimestamp(repo, root, ts.Index, ts.Platforms, keys, now, validity, restart)
}

// describeStamp says what a timestamp names, for the log.
func describeStamp(ts *manifest.Timestamp) string {
	var parts []string
	if ts.Index != (manifest.IndexRef{}) {
		parts = append(parts, fmt.Sprintf("index %d", ts.Index.Sequence))
	}
	for _, p := range slices.Sorted(maps.Keys(ts.Platforms)) {
		parts = append(parts, fmt.Sprintf("%s index %d", p, ts.Platforms[p].Sequence))
	}
	return strings.Join(parts, ", ")
}

// PlatformsNote returns, for a command run without --platform on a
// repository that has platforms, a sentence naming them; "" otherwise.
func PlatformsNote(ctx context.Context, repo string) string {
	st, err := OpenStore(ctx, repo)
	if err != nil {
		return ""
	}
	defer st.Close()
	var plats []string
	if ls, ok := st.(*localStore); ok {
		plats, _ = ListPlatforms(ctx, ls.dir)
	} else if objs, err := st.List(ctx); err == nil {
		plats = platformsIn(objs)
	}
	if len(plats) == 0 {
		return ""
	}
	return fmt.Sprintf("the repository also holds platforms %s: give --platform P for each", strings.Join(plats, ", "))
}

// platformText names a platform for messages.
func platformText(platform string) string {
	if platform == "" {
		return "the platform-less build"
	}
	return "platform " + platform
}

// withoutPlatforms drops from a listing of a repository's top the objects
// of its platforms' sub-repositories.
func withoutPlatforms(objs []Object) []Object {
	plats := platformsIn(objs)
	if len(plats) == 0 {
		return objs
	}
	return slices.DeleteFunc(slices.Clone(objs), func(o Object) bool {
		first, more := topLevel(o.Path)
		return more && slices.Contains(plats, first)
	})
}
