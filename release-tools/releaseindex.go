package releasetools

import (
	"errors"
	"fmt"

	"github.com/deltaup/deltaup/manifest"
)

// The compact release index of a v2 repository (docs/FORMAT.md, "The
// compact release index"): index/SEQ.json, the projection of
// manifests/SEQ.json that v2 clients poll, and the content-addressed
// release documents releases/V/SHA256.json it pins. Every command that
// signs an index with the release keys (publish, migrate, key, prune
// through publish's path) writes them through signIndex, in this order:
// the release documents (immutable: an existing one is kept), the compact
// index's signatures, the compact index, then the full index's signatures
// and copy, all before manifest.json and the timestamp.

// writeReleaseIndex writes the release documents and the compact index of
// the full index raw (sequence seq), signed by keys.
func writeReleaseIndex(repo string, raw []byte, keys []manifest.PrivateKey) error {
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		return err
	}
	_, enc, docs, err := manifest.BuildReleaseIndex(m, raw)
	if err != nil {
		return fmt.Errorf("compact index %d: %w", m.Sequence, err)
	}
	for p, doc := range docs {
		if old, err := readFile(repo, p, manifest.MaxReleaseDocSize); err == nil && string(old) == string(doc) {
			continue // content-addressed: written by an earlier index
		}
		if err := writeFile(repo, p, doc); err != nil {
			return err
		}
	}
	return writeSigned(repo, manifest.ReleaseIndexPath(m.Sequence), enc, keys, manifest.SignReleaseIndex)
}

// writeReleaseDeltas writes index/S-SEQ.delta.json from each of the
// DeltaDepth compact indexes before seq to compact index seq, with its
// release signatures and the documents of the releases appended, where
// the delta is smaller than the index, its signatures and those documents
// (what a client fetches without it).
func writeReleaseDeltas(repo string, seq uint64, ids []string) error {
	p := manifest.ReleaseIndexPath(seq)
	raw, err := readFile(repo, p, manifest.MaxReleaseIndexSize)
	if err != nil {
		return fmt.Errorf("compact index %d: %w", seq, err)
	}
	next, err := manifest.ParseReleaseIndex(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	sigs := readSigs(repo, p, ids)
	for s := seq - 1; s >= 1 && s+DeltaDepth >= seq; s-- {
		old, err := readFile(repo, manifest.ReleaseIndexPath(s), manifest.MaxReleaseIndexSize)
		if err != nil {
			continue // pruned, or written before compact indexes
		}
		base, err := manifest.ParseReleaseIndex(old)
		if err != nil {
			continue
		}
		docs := map[string][]byte{}
		for _, e := range next.Releases {
			if b := base.Entry(e.Version); b != nil && b.Doc == e.Doc {
				continue
			}
			dp := manifest.ReleaseDocPath(e.Version, e.Doc.SHA256)
			if docs[dp], err = readFile(repo, dp, manifest.MaxReleaseDocSize); err != nil {
				return fmt.Errorf("release document of delta %d-%d: %w", s, seq, err)
			}
		}
		d, err := manifest.MakeReleaseDelta(base, next, sigs, docs)
		if errors.Is(err, manifest.ErrTooLarge) {
			continue // too many releases appended: clients fetch the index
		}
		if err != nil {
			return err
		}
		alt := len(raw) // without the delta: the index, its signatures and the new documents
		for _, b := range docs {
			alt += len(b)
		}
		for _, b := range sigs {
			alt += len(b)
		}
		if len(d) >= alt {
			continue
		}
		if err := writeFile(repo, manifest.ReleaseDeltaPath(s, seq), d); err != nil {
			return err
		}
	}
	return nil
}

// verifyReleaseIndex checks the compact index of the current index m
// (bytes raw) as a client would, and that with its release documents it
// rebuilds raw exactly. A v2 repository published before compact indexes
// has none: a note-level fault telling to re-sign.
func verifyReleaseIndex(repo string, root *manifest.Root, m *manifest.Manifest, raw []byte) []Fault {
	p := manifest.ReleaseIndexPath(m.Sequence)
	enc, err := readFile(repo, p, manifest.MaxReleaseIndexSize)
	if err != nil {
		return []Fault{{Path: p, Err: fmt.Errorf("%w: the compact index of the current index is missing (written by mkdelta publish, migrate and key since compact indexes exist; until the next publish v2 clients fetch manifests/SEQ.json whole)", err)}}
	}
	ref := manifest.IndexRef{Sequence: m.Sequence, Size: int64(len(raw)), SHA256: sha256Of(raw)}
	x, err := manifest.OpenReleaseIndex(enc, readSigs(repo, p, root.Roles[manifest.RoleRelease].KeyIDs), root, ref, manifest.OpenOptions{App: m.App, Now: m.Issued})
	if err != nil {
		return []Fault{{Path: p, Err: err}}
	}
	docs := map[string][]byte{}
	var out []Fault
	for _, e := range x.Releases {
		dp := manifest.ReleaseDocPath(e.Version, e.Doc.SHA256)
		b, err := readFile(repo, dp, manifest.MaxReleaseDocSize)
		if err != nil {
			out = append(out, Fault{Path: dp, Err: err})
			continue
		}
		if _, err := manifest.OpenReleaseDoc(b, &e, m.App); err != nil {
			out = append(out, Fault{Path: dp, Err: err})
			continue
		}
		docs[dp] = b
	}
	if len(out) > 0 {
		return out
	}
	if _, err := manifest.ExpandReleaseIndex(x, docs); err != nil {
		return []Fault{{Path: p, Err: err}}
	}
	return nil
}
