package apply

import (
	"context"
	"crypto/sha256"
	"strconv"
	"strings"

	"github.com/deltaup/deltaup/manifest"
)

// The client side of the compact release index (docs/FORMAT.md, "The
// compact release index"). A v2 client reads index/SEQ.json (or rebuilds
// it from the cached one and index/FROM-SEQ.delta.json) instead of the
// full index manifests/SEQ.json, and the release documents of only the
// releases at or above the lowest version it may start from or go to
// (the installed version, --current, --to); every document is cached (they
// never change) and checked again on every use. Any failure of this path
// (no compact index on the mirror, a damaged or foreign one, documents
// costing more than the full index) falls back to the full index, checked
// as before: the compact path never accepts what the full path would
// refuse, as the compact index must name the full index the timestamp
// pins, under a threshold of release signatures.

// compactSlack is how much larger than the full index a compact index or
// its delta may be (an index of no release: the compact header is about
// 110 bytes longer); a mirror sending more is cut off.
const compactSlack = 1 << 10

// docRequestCost is what one request costs beyond its body (request line
// and headers both ways, measured against nginx: about 250 bytes each
// way); used only to choose between fetching documents and the full index.
const docRequestCost = 500

// lowestNeeded returns the lowest version whose release document the check
// may need: the lowest of --current, --to, the version recorded in
// deltaup.json and the one installed last; "" when none is known (an
// unknown tree: every release may be the installed one).
func lowestNeeded(cfg *Config, st *State) string {
	low := ""
	for _, v := range []string{cfg.Current, cfg.To, cfg.RecordedVersion, st.Installed} {
		if v == "" {
			continue
		}
		if low == "" {
			low = v
			continue
		}
		if c, err := manifest.Compare(v, low); err == nil && c < 0 {
			low = v
		}
	}
	if cfg.Current == "" && cfg.RecordedVersion == "" && st.Installed == "" {
		return "" // the installed tree is detected among all releases
	}
	return low
}

// compactIndex returns the partial index of the releases at or above low
// (all when low is "") through the compact index of ref; nil when that
// path fails for any reason (the caller then uses the full index). budget
// reports whether it failed only because the documents to fetch would
// cost more than the full index (the caller then caches the documents it
// derives from the full index).
func (rf *rolesFetch) compactIndex(ctx context.Context, root *manifest.Root, dir string, ref manifest.IndexRef, opts manifest.OpenOptions, low string) (m *manifest.Manifest, x *manifest.ReleaseIndex, overBudget bool) {
	cp := manifest.PlatformPath(dir, manifest.ReleaseIndexPath(ref.Sequence))
	ids := root.Roles[manifest.RoleRelease].KeyIDs
	var raw []byte
	var sigs map[string][]byte
	if c, ok := rf.cache.Docs[cp]; ok {
		sigs = map[string][]byte{}
		for _, id := range ids {
			if s, ok := rf.cache.Docs[manifest.SigPath(cp, id)]; ok {
				sigs[id] = s
			}
		}
		if y, err := manifest.OpenReleaseIndex(c, sigs, root, ref, opts); err == nil {
			raw, x = c, y
		}
	}
	if x == nil {
		var have map[string][]byte
		raw, have = rf.compactFromDelta(ctx, dir, ref)
		if raw == nil {
			var err error
			if raw, err = rf.f.Get(ctx, cp, ref.Size+compactSlack); err != nil {
				return nil, nil, false
			}
		}
		var err error
		if sigs, err = rf.roleSigs(ctx, root, manifest.RoleRelease, cp, raw, have); err != nil {
			return nil, nil, false
		}
		if x, err = manifest.OpenReleaseIndex(raw, sigs, root, ref, opts); err != nil {
			return nil, nil, false
		}
	}
	rf.docs[cp] = raw
	for id, s := range sigs {
		rf.docs[manifest.SigPath(cp, id)] = s
	}

	// The release documents needed: cached ones are checked again, the
	// others fetched unless they cost more than the full index.
	var rels []manifest.Release
	var missing []*manifest.ReleaseEntry
	cost := int64(0)
	for i := range x.Releases {
		e := &x.Releases[i]
		if low != "" {
			if c, err := manifest.Compare(e.Version, low); err != nil || c < 0 {
				continue
			}
		}
		dp := manifest.PlatformPath(dir, manifest.ReleaseDocPath(e.Version, e.Doc.SHA256))
		if b, ok := rf.cache.Docs[dp]; ok {
			if r, err := manifest.OpenReleaseDoc(b, e, x.App); err == nil {
				rels = append(rels, *r)
				rf.docs[dp] = b
				continue
			}
		}
		missing = append(missing, e)
		cost += e.Doc.Size + docRequestCost
	}
	if cost > ref.Size {
		return nil, x, true
	}
	for _, e := range missing {
		dp := manifest.PlatformPath(dir, manifest.ReleaseDocPath(e.Version, e.Doc.SHA256))
		b, err := rf.f.Get(ctx, dp, e.Doc.Size)
		if err != nil {
			return nil, nil, false
		}
		r, err := manifest.OpenReleaseDoc(b, e, x.App)
		if err != nil {
			return nil, nil, false
		}
		rels = append(rels, *r)
		rf.docs[dp] = b
	}
	m, err := manifest.PartialManifest(x, rels)
	if err != nil {
		return nil, nil, false
	}
	return m, x, false
}

// compactFromDelta rebuilds compact index ref.Sequence from the newest
// cached compact index before it and the delta between them; nil when
// there is none or it does not apply. The result is checked by the caller
// (OpenReleaseIndex), and so are the signatures the delta carries.
func (rf *rolesFetch) compactFromDelta(ctx context.Context, dir string, ref manifest.IndexRef) ([]byte, map[string][]byte) {
	prefix := manifest.PlatformPath(dir, manifest.ReleaseIndexDir) + "/"
	var base *manifest.ReleaseIndex
	for p, raw := range rf.cache.Docs {
		name, ok := strings.CutPrefix(p, prefix)
		if !ok || !strings.HasSuffix(name, ".json") || strings.Contains(name, "-") {
			continue
		}
		if seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".json"), 10, 64); err != nil || seq >= ref.Sequence || (base != nil && seq <= base.Sequence) {
			continue
		}
		if x, err := manifest.ParseReleaseIndex(raw); err == nil && manifest.PlatformPath(dir, manifest.ReleaseIndexPath(x.Sequence)) == p {
			base = x
		}
	}
	if base == nil {
		return nil, nil
	}
	raw, err := rf.f.Get(ctx, manifest.PlatformPath(dir, manifest.ReleaseDeltaPath(base.Sequence, ref.Sequence)), ref.Size+compactSlack)
	if err != nil {
		return nil, nil
	}
	d, err := manifest.ParseReleaseDelta(raw)
	if err != nil {
		return nil, nil
	}
	out, err := manifest.ApplyReleaseDelta(base, d)
	if err != nil {
		return nil, nil
	}
	// The release documents it carries join the in-memory cache: like
	// every cached document, each is used only once it matches its entry
	// of the index that passes OpenReleaseIndex.
	if rf.cache.Docs == nil {
		rf.cache.Docs = map[string][]byte{}
	}
	for p, b := range d.Docs {
		rf.cache.Docs[manifest.PlatformPath(dir, p)] = b
	}
	return out, d.Sigs
}

// cacheDocsOf derives the release documents of the full index raw (m)
// and caches those that x pins: the next check against a compact index
// then fetches only the documents of new releases.
func (rf *rolesFetch) cacheDocsOf(dir string, m *manifest.Manifest, raw []byte, x *manifest.ReleaseIndex) {
	if x == nil || x.Manifest.SHA256 != sha256.Sum256(raw) {
		return
	}
	_, _, docs, err := manifest.BuildReleaseIndex(m, raw)
	if err != nil {
		return
	}
	for p, b := range docs {
		rf.docs[manifest.PlatformPath(dir, p)] = b
	}
}

// hasCompact reports whether the cache holds a compact index of platform
// dir (a base for deltas, and the documents a client keeps).
func (rf *rolesFetch) hasCompact(dir string) bool {
	prefix := manifest.PlatformPath(dir, manifest.ReleaseIndexDir) + "/"
	for p := range rf.cache.Docs {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// deriveCompact builds the compact index and release documents of the
// full index raw (m, accepted, not yet rebased) as the publisher does,
// fetches only the compact index's release signatures, and caches all of
// it when they verify: a client that had to read the full index once
// (its first check, with no installed version known) then follows the
// compact index's deltas. A repository without compact indexes costs one
// missing signature request.
func (rf *rolesFetch) deriveCompact(ctx context.Context, root *manifest.Root, dir string, ref manifest.IndexRef, opts manifest.OpenOptions, m *manifest.Manifest, raw []byte) {
	_, enc, docs, err := manifest.BuildReleaseIndex(m, raw)
	if err != nil {
		return
	}
	cp := manifest.PlatformPath(dir, manifest.ReleaseIndexPath(ref.Sequence))
	sigs, err := rf.roleSigs(ctx, root, manifest.RoleRelease, cp, enc, nil)
	if err != nil {
		return
	}
	if _, err := manifest.OpenReleaseIndex(enc, sigs, root, ref, opts); err != nil {
		return
	}
	rf.docs[cp] = enc
	for id, s := range sigs {
		rf.docs[manifest.SigPath(cp, id)] = s
	}
	for p, b := range docs {
		rf.docs[manifest.PlatformPath(dir, p)] = b
	}
}
