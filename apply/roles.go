package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/manifest"
)

// The client side of repository v2 (docs/FORMAT.md, "Repository v2:
// roles"; docs/SECURITY.md, "Threat model (repository v2)").

// CacheFileName is the document cache of a v2 client, in the backup
// directory: the newest root accepted, and the timestamp and release index
// with their signatures and HTTP validators, so that a check with no
// update costs one conditional request answered 304. Nothing in it is
// trusted as such: the root must have the hash recorded in state.json,
// the others are verified again (signatures, expiry, sequence) on every
// use. A damaged or missing cache only costs a download.
const (
	CacheFileName = "repo-cache.json"
	// MaxCacheSize caps the cache file (an index of MaxManifestSize in
	// base64, plus the small documents).
	MaxCacheSize = 8 << 20
)

// CachePath returns the path of the document cache in backupDir.
func CachePath(backupDir string) string { return filepath.Join(backupDir, CacheFileName) }

// docCache is the content of CacheFileName.
type docCache struct {
	Root []byte `json:"root,omitempty"`
	// Docs holds the timestamp, the index and their signature files, by
	// repository path; HTTP their validators.
	Docs map[string][]byte     `json:"docs,omitempty"`
	HTTP map[string]Validators `json:"http,omitempty"`

	dirty bool
}

// loadCache reads the cache; any problem gives an empty one.
func loadCache(backupDir string) *docCache {
	c := &docCache{}
	if backupDir == "" {
		return c
	}
	raw, err := readFileNoFollow(CachePath(backupDir), MaxCacheSize)
	if err != nil || json.Unmarshal(raw, c) != nil {
		return &docCache{}
	}
	c.dirty = false
	return c
}

// save writes the cache when it changed (nil: nothing to do).
func (c *docCache) save(backupDir string) error {
	if c == nil || !c.dirty {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if len(b) > MaxCacheSize {
		return nil // too large to keep: the next check downloads again
	}
	if err := delta.WriteFileAtomic(CachePath(backupDir), 0o600, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return err
	}
	c.dirty = false
	return nil
}

// parseRoot parses Config.Root (Validate).
func (c *Config) parseRoot() error {
	c.root = nil
	if len(c.Root) == 0 {
		return nil
	}
	r, err := manifest.ParseRoot(c.Root)
	if err != nil {
		return fmt.Errorf("%w: the root document (Root, \"root\" in %s): %v", ErrConfig, ConfigFileName, err)
	}
	if c.App != "" && r.App != c.App {
		return fmt.Errorf("%w: the root document is for app %q, not %q: ship the root of this application's repository", ErrConfig, r.App, c.App)
	}
	c.root = r
	return nil
}

// rootFile reads the root document named by "root".
func (fc *FileConfig) rootFile() ([]byte, error) {
	p := filepath.FromSlash(fc.Root)
	if !filepath.IsAbs(p) {
		p = filepath.Join(fc.Dir, p)
	}
	raw, err := readFileNoFollow(p, manifest.MaxRootSize)
	if err != nil {
		return nil, fmt.Errorf("%w: root %q: %v", ErrConfig, fc.Root, err)
	}
	return raw, nil
}

// indexKeys returns the keys that may sign auxiliary documents of the
// release role (frame indexes): the configured key and, in v2, the release
// keys of the root accepted last.
func (c *Config) indexKeys() []manifest.PublicKey {
	var out []manifest.PublicKey
	if !c.PublicKey.Equal(manifest.PublicKey{}) {
		out = append(out, c.PublicKey)
	}
	return append(out, c.releaseKeys...)
}

func decodeHash(key, s string) ([32]byte, error) {
	var h [32]byte
	if s == "" {
		return h, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 || hex.EncodeToString(b) != s {
		return h, fmt.Errorf("%s %q is not 64 lowercase hex digits", key, s)
	}
	copy(h[:], b)
	return h, nil
}

func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }

// rolesFetch is one v2 check against one mirror.
type rolesFetch struct {
	cfg   *Config
	f     Fetcher
	cache *docCache
	docs  map[string][]byte // documents to cache on success
	http  map[string]Validators
}

// get fetches a document, conditionally when the cache holds it (a 304
// gives the cached bytes, which the caller verifies like fresh ones).
func (rf *rolesFetch) get(ctx context.Context, p string, max int64) ([]byte, error) {
	cached, ok := rf.cache.Docs[p]
	if cf, isCond := rf.f.(ConditionalFetcher); isCond && ok {
		body, v, unchanged, err := cf.GetIf(ctx, p, max, rf.cache.HTTP[p])
		if err != nil {
			return nil, err
		}
		if unchanged {
			body = cached
		}
		rf.docs[p], rf.http[p] = body, v
		return body, nil
	}
	if cf, isCond := rf.f.(ConditionalFetcher); isCond {
		body, v, _, err := cf.GetIf(ctx, p, max, Validators{})
		if err != nil {
			return nil, err
		}
		rf.docs[p], rf.http[p] = body, v
		return body, nil
	}
	body, err := rf.f.Get(ctx, p, max)
	if err == nil {
		rf.docs[p] = body
	}
	return body, err
}

// roleSigs fetches the signature files of doc (bytes raw) by the keys of
// role, one by one, until a threshold of them verify; missing ones are
// skipped. The caller checks the threshold (the Open functions do).
func (rf *rolesFetch) roleSigs(ctx context.Context, root *manifest.Root, role, doc string, raw []byte, have map[string][]byte) (map[string][]byte, error) {
	sigs := map[string][]byte{}
	good := 0
	ro := root.Roles[role]
	for _, id := range ro.KeyIDs { // those at hand first
		if sig, ok := have[id]; ok {
			sigs[id] = sig
			if _, err := manifest.Verify(root.Keys[id], raw, sig); err == nil {
				good++
			}
		}
	}
	for _, id := range ro.KeyIDs {
		if good >= ro.Threshold {
			break
		}
		if _, ok := sigs[id]; ok {
			continue
		}
		p := manifest.SigPath(doc, id)
		sig, err := rf.get(ctx, p, manifest.MaxSignatureSize+1)
		if fetchNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fetchError(p, err)
		}
		if _, err := manifest.Verify(root.Keys[id], raw, sig); err != nil {
			sig = rf.refetchStale(ctx, p, sig)
		}
		sigs[id] = sig
		if _, err := manifest.Verify(root.Keys[id], raw, sig); err == nil {
			good++
		}
	}
	return sigs, nil
}

// cachedSigs returns the cached signature files of doc when raw is the
// cached copy of doc (a 304, or the same bytes again): they still sign
// it, and are checked again against the current root's keys.
func (rf *rolesFetch) cachedSigs(doc string, raw []byte, root *manifest.Root, role string) map[string][]byte {
	cached, ok := rf.cache.Docs[doc]
	if !ok || !bytes.Equal(cached, raw) {
		return nil
	}
	out := map[string][]byte{}
	for _, id := range root.Roles[role].KeyIDs {
		p := manifest.SigPath(doc, id)
		if s, ok := rf.cache.Docs[p]; ok {
			out[id] = s
			rf.docs[p] = s
			if v, ok := rf.cache.HTTP[p]; ok {
				rf.http[p] = v
			}
		}
	}
	return out
}

// trustedRoot returns the root to start from: the cached one when
// state.json vouches for it (its hash) and it is not older than the root
// the application ships, else the shipped one.
func trustedRoot(cfg *Config, st *State, c *docCache) *manifest.Root {
	if st.RootHash != "" && c.Root != nil && hexHash(sha256.Sum256(c.Root)) == st.RootHash {
		if r, err := manifest.ParseRoot(c.Root); err == nil && r.App == cfg.App && r.Version == st.RootVersion && r.Version >= cfg.root.Version {
			return r
		}
	}
	return cfg.root
}

// walkRoots moves from root to the newest root the mirror has, one
// version at a time (at most manifest.MaxRootWalk per check), each
// accepted only through Root.Next.
func (rf *rolesFetch) walkRoots(ctx context.Context, root *manifest.Root) (*manifest.Root, error) {
	for range manifest.MaxRootWalk {
		p := manifest.RootPath(root.Version + 1)
		raw, err := rf.f.Get(ctx, p, manifest.MaxRootSize)
		if fetchNotFound(err) {
			return root, nil
		}
		if err != nil {
			return nil, fetchError(p, err)
		}
		// The old root's keys first, before the new one is parsed.
		sigs, err := rf.roleSigs(ctx, root, manifest.RoleRoot, p, raw, nil)
		if err != nil {
			return nil, err
		}
		if err := root.VerifyRole(manifest.RoleRoot, raw, sigs); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrRefused, p, err)
		}
		cand, err := manifest.ParseRoot(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrRefused, p, err)
		}
		if sigs, err = rf.roleSigs(ctx, cand, manifest.RoleRoot, p, raw, sigs); err != nil {
			return nil, err
		}
		next, err := root.Next(raw, sigs)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		root = next
	}
	return root, nil
}

// fetchRolesFrom is fetchManifestFrom for a v2 client: it walks the
// roots, fetches the timestamp (conditionally) and, only when the
// timestamp names an index other than the cached one, the index. It
// returns the index and a function that records what was accepted in st
// (called once the caller's own checks passed).
func fetchRolesFrom(ctx context.Context, cfg *Config, f Fetcher, st *State) (*manifest.Manifest, func(), error) {
	if st.cache == nil {
		st.cache = loadCache(cfg.BackupDir)
	}
	rf := &rolesFetch{cfg: cfg, f: f, cache: st.cache, docs: map[string][]byte{}, http: map[string]Validators{}}
	now := cfg.now()
	root, err := rf.walkRoots(ctx, trustedRoot(cfg, st, st.cache))
	if err != nil {
		return nil, nil, err
	}
	rf.docs, rf.http = map[string][]byte{}, map[string]Validators{} // root signatures are not cached
	if root.Version < st.RootVersion {
		return nil, nil, fmt.Errorf("%w: %w: the repository's newest root is version %d, this client accepted version %d before: the mirror hides newer roots (rollback); trying another",
			ErrRefused, manifest.ErrRollback, root.Version, st.RootVersion)
	}
	if err := root.CheckFresh(now); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	tsKeys, relKeys := root.RoleFingerprint(manifest.RoleTimestamp), root.RoleFingerprint(manifest.RoleRelease)

	// The timestamp: sequences remembered under other keys are forgotten.
	tsOpts := manifest.TimestampOptions{App: cfg.App, Now: now}
	if st.TimestampKeys == tsKeys {
		tsOpts.MinSequence = st.TimestampSequence
		tsOpts.SeenHash, _ = decodeHash("timestamp_hash", st.TimestampHash)
	}
	tsRaw, err := rf.get(ctx, manifest.TimestampName, manifest.MaxTimestampSize)
	if err != nil {
		return nil, nil, fetchError(manifest.TimestampName, err)
	}
	tsSigs, err := rf.roleSigs(ctx, root, manifest.RoleTimestamp, manifest.TimestampName, tsRaw, rf.cachedSigs(manifest.TimestampName, tsRaw, root, manifest.RoleTimestamp))
	if err != nil {
		return nil, nil, err
	}
	ts, err := manifest.OpenTimestamp(tsRaw, tsSigs, root, tsOpts)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}

	// The index of this client's platform (pickIndex): from the cache when
	// unchanged, else fetched with a cap of exactly the size the timestamp
	// names. The sequence remembered is compared only with an index of the
	// same platform.
	dir, ref, err := cfg.pickIndex(ts)
	if err != nil {
		return nil, nil, err
	}
	opts := manifest.OpenOptions{App: cfg.App, Now: now}
	if st.ReleaseKeys == relKeys && st.IndexPlatform == dir {
		seen, err := st.seenHash()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrState, err)
		}
		opts.MinSequence, opts.SeenHash = st.Sequence, seen
	}
	ip := manifest.PlatformPath(dir, manifest.IndexPath(ref.Sequence))
	// The compact index first ("The compact release index"); the full
	// index when that path fails.
	var m *manifest.Manifest
	var cx *manifest.ReleaseIndex
	low, overBudget, skipped := lowestNeeded(cfg, st), false, false
	if low != "" || rf.hasCompact(dir) {
		m, cx, overBudget = rf.compactIndex(ctx, root, dir, ref, opts, low)
	} else {
		skipped = true // every document needed, none held: the full index costs less
	}
	if m == nil {
		if m, err = rf.fullIndex(ctx, root, dir, ref, opts, st); err != nil {
			return nil, nil, err
		}
		switch {
		case overBudget:
			rf.cacheDocsOf(dir, m, rf.docs[ip], cx)
		case skipped:
			rf.deriveCompact(ctx, root, dir, ref, opts, m, rf.docs[ip])
		}
	}
	rebase(m, dir)
	// The release policy it names, checked like the index: one policy
	// at the repository's top for every platform, whichever this client
	// follows.
	pol, err := rf.fetchPolicy(ctx, root, ts, st, st.ReleaseKeys == relKeys, now)
	if err != nil {
		return nil, nil, err
	}
	commit := func() {
		st.recordPolicy(pol)
		st.RootVersion, st.RootHash = root.Version, hexHash(root.ContentHash())
		st.TimestampSequence, st.TimestampHash, st.TimestampKeys = ts.Sequence, hexHash(ts.ContentHash()), tsKeys
		st.ReleaseKeys, st.IndexPlatform = relKeys, dir
		cfg.indexDir = dir
		st.cache.Root, st.cache.Docs, st.cache.HTTP, st.cache.dirty = root.Raw(), rf.docs, rf.http, true
		cfg.releaseKeys = root.RoleKeys(manifest.RoleRelease)
	}
	return m, commit, nil
}

// fullIndex returns the full index ref names (manifests/SEQ.json): from
// the cache when unchanged, else rebuilt from the cached one and its
// delta, else fetched with a cap of exactly the size the timestamp names;
// checked by OpenIndex in every case. Not yet rebased.
func (rf *rolesFetch) fullIndex(ctx context.Context, root *manifest.Root, dir string, ref manifest.IndexRef, opts manifest.OpenOptions, st *State) (*manifest.Manifest, error) {
	ip := manifest.PlatformPath(dir, manifest.IndexPath(ref.Sequence))
	var m *manifest.Manifest
	var err error
	if raw, ok := st.cache.Docs[ip]; ok && int64(len(raw)) == ref.Size && sha256.Sum256(raw) == ref.SHA256 {
		sigs := map[string][]byte{}
		for _, id := range root.Roles[manifest.RoleRelease].KeyIDs {
			if s, ok := st.cache.Docs[manifest.SigPath(ip, id)]; ok {
				sigs[id] = s
			}
		}
		if m, err = manifest.OpenIndex(raw, sigs, root, ref, opts); err == nil {
			rf.docs[ip] = raw
			for id, s := range sigs {
				rf.docs[manifest.SigPath(ip, id)] = s
			}
		}
	}
	if m == nil {
		raw, have := rf.fromDelta(ctx, dir, ref)
		if raw == nil {
			if raw, err = rf.f.Get(ctx, ip, ref.Size); err != nil {
				return nil, fetchError(ip, err)
			}
		}
		rf.docs[ip] = raw
		sigs, err := rf.roleSigs(ctx, root, manifest.RoleRelease, ip, raw, have)
		if err != nil {
			return nil, err
		}
		if m, err = manifest.OpenIndex(raw, sigs, root, ref, opts); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrRefused, platformText(dir), err)
		}
	}
	return m, nil
}

// fromDelta rebuilds the index ref names from the cached index and the
// delta between them (manifest.DeltaPath), and returns its bytes when they
// have exactly ref's size and SHA-256; nil otherwise (no cached index, no
// delta, a damaged one): the caller then fetches the whole index. The
// bytes returned are checked by the caller like a fetched index, and so
// are the signatures the delta carries.
func (rf *rolesFetch) fromDelta(ctx context.Context, dir string, ref manifest.IndexRef) ([]byte, map[string][]byte) {
	var base *manifest.Manifest
	for p, raw := range rf.cache.Docs {
		if !strings.HasPrefix(p, manifest.PlatformPath(dir, "manifests/")) || !strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".minisig") {
			continue
		}
		if m, err := manifest.ParseUnverified(raw); err == nil && manifest.PlatformPath(dir, manifest.IndexPath(m.Sequence)) == p && m.Sequence < ref.Sequence {
			base = m
		}
	}
	if base == nil {
		return nil, nil
	}
	raw, err := rf.f.Get(ctx, manifest.PlatformPath(dir, manifest.DeltaPath(base.Sequence, ref.Sequence)), ref.Size)
	if err != nil {
		return nil, nil
	}
	d, err := manifest.ParseDelta(raw)
	if err != nil {
		return nil, nil
	}
	out, err := manifest.ApplyDelta(base, d)
	if err != nil || int64(len(out)) != ref.Size || sha256.Sum256(out) != ref.SHA256 {
		return nil, nil
	}
	for id, sig := range d.Sigs {
		rf.docs[manifest.SigPath(manifest.PlatformPath(dir, manifest.IndexPath(ref.Sequence)), id)] = sig
	}
	return out, d.Sigs
}
