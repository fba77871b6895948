package manifest

import (
	"fmt"
	"path"
	"strconv"
)

// Index deltas (docs/FORMAT.md, "Index deltas"). A v2 client that holds
// the release index of sequence FROM fetches deltas/FROM-TO.json instead of
// the whole index TO named by the timestamp: the releases of FROM it keeps
// (a prefix), the releases appended, and TO's header. The delta is not
// signed: the index rebuilt from it must have exactly the size and SHA-256
// the signed timestamp names, and then carry the release keys'
// signatures, as a fetched index must. A delta that does not rebuild the
// index is ignored (the client fetches the whole index).

// DeltaDir holds the index deltas.
const DeltaDir = "deltas"

// DeltaPath is the repository path of the delta from index from to index to.
func DeltaPath(from, to uint64) string {
	return path.Join(DeltaDir, strconv.FormatUint(from, 10)+"-"+strconv.FormatUint(to, 10)+".json")
}

// IndexDelta turns index From into the index of Index.Sequence.
type IndexDelta struct {
	From uint64 // the base index's sequence
	Keep int    // how many of the base's releases, from the first, stay
	// Index is the new index with only the appended releases in
	// Releases (its header: app, channels, sequence, issued, expires).
	Index Manifest
	// Sigs are the release keys' signature files of the new index, by key
	// ID (saving the client a request each); checked like fetched ones.
	Sigs map[string][]byte
}

type wireDelta struct {
	From  uint64            `json:"from"`
	Index *wireManifest     `json:"index"`
	Keep  int               `json:"keep"`
	Sigs  map[string]string `json:"sigs,omitempty"`
	Type  string            `json:"type"`
}

// MakeDelta returns the canonical delta document from index base to index
// next: the longest common prefix of their releases is kept; sigs (key ID
// to signature file) are carried along.
func MakeDelta(base, next *Manifest, sigs map[string][]byte) ([]byte, error) {
	keep := 0
	for keep < len(base.Releases) && keep < len(next.Releases) {
		a, err := encodeJSON(toWire(&Manifest{Releases: base.Releases[keep : keep+1]}).Releases, MaxManifestSize)
		if err != nil {
			return nil, err
		}
		b, err := encodeJSON(toWire(&Manifest{Releases: next.Releases[keep : keep+1]}).Releases, MaxManifestSize)
		if err != nil {
			return nil, err
		}
		if string(a) != string(b) {
			break
		}
		keep++
	}
	head := *next
	head.Releases = next.Releases[keep:]
	w := &wireDelta{From: base.Sequence, Index: toWire(&head), Keep: keep, Type: "delta"}
	for id, sig := range sigs {
		if w.Sigs == nil {
			w.Sigs = map[string]string{}
		}
		w.Sigs[id] = string(sig)
	}
	return encodeJSON(w, MaxManifestSize)
}

// ParseDelta parses delta bytes strictly (cap, canonical form, known
// members, type), without any signature: what it yields is trusted only
// through the index ApplyDelta rebuilds.
func ParseDelta(raw []byte) (*IndexDelta, error) {
	if len(raw) > MaxManifestSize {
		return nil, fmt.Errorf("%w: delta is %d bytes, the cap is %d", ErrTooLarge, len(raw), MaxManifestSize)
	}
	if err := checkCanonical(raw, MaxManifestSize); err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	var w wireDelta
	if err := decodeStrict(raw, &w); err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	if w.Type != "delta" || w.Index == nil || w.Keep < 0 || w.From == 0 || w.From > MaxSafeInteger {
		return nil, fmt.Errorf("%w: delta: not a delta document (type, index, keep, from)", ErrMalformed)
	}
	if w.Index.Schema != SchemaVersion {
		return nil, fmt.Errorf("%w: delta: index schema %d", ErrSchema, w.Index.Schema)
	}
	m, err := fromWire(w.Index)
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	d := &IndexDelta{From: w.From, Keep: w.Keep, Index: *m}
	if len(w.Sigs) > MaxRoleKeys {
		return nil, fmt.Errorf("%w: delta: %d signatures, at most %d", ErrMalformed, len(w.Sigs), MaxRoleKeys)
	}
	for id, sig := range w.Sigs {
		if !validKeyID(id) || len(sig) > MaxSignatureSize {
			return nil, fmt.Errorf("%w: delta: signature %q: not a key ID, or over %d bytes", ErrMalformed, id, MaxSignatureSize)
		}
		if d.Sigs == nil {
			d.Sigs = map[string][]byte{}
		}
		d.Sigs[id] = []byte(sig)
	}
	return d, nil
}

// ApplyDelta rebuilds the index bytes from base (the index of sequence
// d.From, as accepted before) and d. The caller must check the result
// against the timestamp's size and SHA-256 before using it (OpenIndex
// does). Errors: ErrMalformed when d does not fit base.
func ApplyDelta(base *Manifest, d *IndexDelta) ([]byte, error) {
	if base.Sequence != d.From || d.Keep > len(base.Releases) {
		return nil, fmt.Errorf("%w: delta from %d keeping %d releases does not fit index %d of %d releases", ErrMalformed, d.From, d.Keep, base.Sequence, len(base.Releases))
	}
	m := d.Index
	m.Releases = append(append([]Release{}, base.Releases[:d.Keep]...), d.Index.Releases...)
	return Marshal(&m)
}
