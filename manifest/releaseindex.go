package manifest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

// The compact release index of a v2 repository (docs/FORMAT.md, "The
// compact release index"). The v2 release index manifests/SEQ.json is
// manifest.json itself (v1 clients read it unchanged) and costs about
// 1.15 KB per release: every archive and patch with its path and SHA-256.
// A client choosing a route needs far less: per release its version,
// channel, tree digest (to recognise an installed tree), the size of its
// full archive and of each patch into it by base version. The compact
// index index/SEQ.json holds only that, plus per release the size and
// SHA-256 of a content-addressed release document
// releases/VERSION/SHA256.json that holds the rest (archives, patch paths
// and hashes, the file list reference): a client fetches the documents of
// the releases its route needs only.
//
// The compact index of sequence SEQ is a projection of manifests/SEQ.json:
// it names that index's size and SHA-256 ("manifest"), and the compact
// index together with all its release documents rebuilds those exact bytes
// (ExpandReleaseIndex). It is signed by the release keys (a threshold, one
// signature file per key, index/SEQ.json.KEYID.minisig). The timestamp is
// unchanged (clients of the first v2 format decode it strictly, so it
// cannot gain a member): it pins manifests/SEQ.json, and a client checks
// that the compact index it uses names exactly that index.
const (
	// ReleaseIndexDir holds the compact indexes, their signatures and
	// their deltas.
	ReleaseIndexDir = "index"
	// ReleaseDocDir holds the release documents.
	ReleaseDocDir = "releases"
	// MaxReleaseIndexSize caps a compact index (and a delta of one).
	MaxReleaseIndexSize = 4 << 20
	// MaxReleaseDocSize caps a release document (inline files included).
	MaxReleaseDocSize = 1 << 20
	// MaxReleaseEdges caps the patches into one release.
	MaxReleaseEdges = 256

	typeReleaseIndex = "releases"
	typeReleaseDoc   = "release"
	typeReleaseDelta = "releases-delta"
)

// ReleaseIndexPath is the path of the compact index of sequence seq.
func ReleaseIndexPath(seq uint64) string {
	return path.Join(ReleaseIndexDir, strconv.FormatUint(seq, 10)+".json")
}

// ReleaseDeltaPath is the path of the delta from compact index from to to.
func ReleaseDeltaPath(from, to uint64) string {
	return path.Join(ReleaseIndexDir, strconv.FormatUint(from, 10)+"-"+strconv.FormatUint(to, 10)+".delta.json")
}

// ReleaseDocPath is the path of the release document of version v with
// SHA-256 sum: releases/V/HEX.json (content-addressed: never rewritten).
func ReleaseDocPath(v string, sum [32]byte) string {
	return path.Join(ReleaseDocDir, v, hexOf(sum)+".json")
}

// DocRef pins a document by size and SHA-256.
type DocRef struct {
	Size   int64
	SHA256 [32]byte
}

// ReleaseEntry is one release of a compact index.
type ReleaseEntry struct {
	Version    string
	Channel    string
	TreeDigest [32]byte
	// Full is the size of the release's preferred full archive (tar.zst,
	// else its only archive).
	Full int64
	// Patches maps the base version of each patch into this release to
	// the patch's size.
	Patches map[string]int64
	// Doc pins the release document (ReleaseDocPath(Version, Doc.SHA256)).
	Doc DocRef
}

// ReleaseIndex is a compact release index.
type ReleaseIndex struct {
	Schema   int // RolesSchema
	App      string
	Channels []string
	Sequence uint64
	Issued   time.Time
	Expires  time.Time
	// Manifest pins the full index it is the projection of
	// (IndexPath(Sequence)).
	Manifest DocRef
	Releases []ReleaseEntry

	hash [32]byte
}

// ContentHash is the SHA-256 of the bytes the index was parsed from.
func (x *ReleaseIndex) ContentHash() [32]byte { return x.hash }

// Entry returns the entry of version v (exact string), or nil.
func (x *ReleaseIndex) Entry(v string) *ReleaseEntry {
	for i := range x.Releases {
		if x.Releases[i].Version == v {
			return &x.Releases[i]
		}
	}
	return nil
}

type wireDocRef struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

type wireReleaseEntry struct {
	Channel    string           `json:"channel"`
	Doc        wireDocRef       `json:"doc"`
	Full       int64            `json:"full"`
	Patches    map[string]int64 `json:"patches"`
	TreeDigest string           `json:"tree_digest"`
	Version    string           `json:"version"`
}

type wireReleaseIndex struct {
	App      string             `json:"app"`
	Channels []string           `json:"channels"`
	Expires  string             `json:"expires"`
	Issued   string             `json:"issued"`
	Manifest wireDocRef         `json:"manifest"`
	Releases []wireReleaseEntry `json:"releases"`
	Schema   int                `json:"schema"`
	Sequence uint64             `json:"sequence"`
	Type     string             `json:"type"`
}

type wireReleaseDoc struct {
	App     string      `json:"app"`
	Release wireRelease `json:"release"`
	Schema  int         `json:"schema"`
	Type    string      `json:"type"`
}

// b64 writes a SHA-256 as unpadded base64url (43 characters): the compact
// index spends 21 bytes less per hash than hex.
func b64(h [32]byte) string { return base64.RawURLEncoding.EncodeToString(h[:]) }

func parseB64(field, s string) ([32]byte, error) {
	var h [32]byte
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 32 || b64([32]byte(b)) != s {
		return h, fmt.Errorf("%w: %s: %q is not a SHA-256 in unpadded base64url (43 characters)", ErrMalformed, field, s)
	}
	return [32]byte(b), nil
}

func (x *ReleaseIndex) wire() *wireReleaseIndex {
	w := &wireReleaseIndex{App: x.App, Channels: slices.Clone(x.Channels), Expires: x.Expires.UTC().Format(timeLayout), Issued: x.Issued.UTC().Format(timeLayout),
		Manifest: wireDocRef{SHA256: b64(x.Manifest.SHA256), Size: x.Manifest.Size}, Releases: make([]wireReleaseEntry, 0, len(x.Releases)), Schema: x.Schema, Sequence: x.Sequence, Type: typeReleaseIndex}
	for _, e := range x.Releases {
		w.Releases = append(w.Releases, e.wire())
	}
	return w
}

func (e *ReleaseEntry) wire() wireReleaseEntry {
	p := maps.Clone(e.Patches)
	if p == nil {
		p = map[string]int64{}
	}
	return wireReleaseEntry{Channel: e.Channel, Doc: wireDocRef{SHA256: b64(e.Doc.SHA256), Size: e.Doc.Size}, Full: e.Full, Patches: p, TreeDigest: b64(e.TreeDigest), Version: e.Version}
}

// Validate checks a compact index: schema, app, channels, sequence, times
// (as a manifest's), the manifest reference, and per release a strict
// semantic version unique by precedence, a declared channel, sizes in
// 1..2^53-1, a document reference of 1..MaxReleaseDocSize bytes with a
// non-zero hash, at most MaxReleaseEdges patches, each from a lower
// version that the index lists.
func (x *ReleaseIndex) Validate() error {
	if x.Schema != RolesSchema {
		return fmt.Errorf("%w: compact index schema %d, this package knows %d", ErrSchema, x.Schema, RolesSchema)
	}
	// The header rules are a manifest's.
	head := Manifest{Schema: SchemaVersion, App: x.App, Channels: x.Channels, Sequence: x.Sequence, Issued: x.Issued, Expires: x.Expires}
	if err := head.Validate(); err != nil {
		return fmt.Errorf("compact index: %w", err)
	}
	if x.Manifest.Size <= 0 || x.Manifest.Size > MaxManifestSize || x.Manifest.SHA256 == ([32]byte{}) {
		return fmt.Errorf("%w: compact index: manifest reference needs a size in 1..%d and a SHA-256", ErrMalformed, MaxManifestSize)
	}
	channels := map[string]bool{}
	for _, c := range x.Channels {
		channels[c] = true
	}
	versions := map[string]string{} // precedence key -> version
	for i := range x.Releases {
		v, err := parseVersion(x.Releases[i].Version)
		if err != nil {
			return fmt.Errorf("%w: compact index: releases[%d]: %v", ErrMalformed, i, err)
		}
		k := versionKey(v)
		if _, dup := versions[k]; dup {
			return fmt.Errorf("%w: compact index: version %q listed twice (build metadata does not count)", ErrMalformed, x.Releases[i].Version)
		}
		versions[k] = x.Releases[i].Version
	}
	for i := range x.Releases {
		e := &x.Releases[i]
		where := "compact index: release " + e.Version
		if !channels[e.Channel] {
			return fmt.Errorf("%w: %s: channel %q is not declared", ErrMalformed, where, e.Channel)
		}
		if e.Full <= 0 || e.Full > MaxSafeInteger {
			return fmt.Errorf("%w: %s: full archive size %d outside 1..2^53-1", ErrMalformed, where, e.Full)
		}
		if e.Doc.Size <= 0 || e.Doc.Size > MaxReleaseDocSize || e.Doc.SHA256 == ([32]byte{}) {
			return fmt.Errorf("%w: %s: document reference needs a size in 1..%d and a SHA-256", ErrMalformed, where, MaxReleaseDocSize)
		}
		if len(e.Patches) > MaxReleaseEdges {
			return fmt.Errorf("%w: %s: %d patches, at most %d", ErrMalformed, where, len(e.Patches), MaxReleaseEdges)
		}
		to, _ := parseVersion(e.Version)
		for from, size := range e.Patches {
			fv, err := parseVersion(from)
			if err != nil || versions[versionKey(fv)] != from {
				return fmt.Errorf("%w: %s: patch from %q, which is not a release of the index", ErrMalformed, where, from)
			}
			if fv.Compare(to) >= 0 {
				return fmt.Errorf("%w: %s: patch from %s: from must be lower than to", ErrMalformed, where, from)
			}
			if size <= 0 || size > MaxSafeInteger {
				return fmt.Errorf("%w: %s: patch from %s: size %d outside 1..2^53-1", ErrMalformed, where, from, size)
			}
		}
	}
	return nil
}

// MarshalReleaseIndex validates x and returns its canonical bytes.
func MarshalReleaseIndex(x *ReleaseIndex) ([]byte, error) {
	if err := x.Validate(); err != nil {
		return nil, err
	}
	return encodeJSON(x.wire(), MaxReleaseIndexSize)
}

// ParseReleaseIndex parses compact-index bytes strictly (cap, canonical
// form, schema, known members, type, Validate, re-encoding to the same
// bytes) WITHOUT checking a signature: clients use OpenReleaseIndex.
func ParseReleaseIndex(raw []byte) (*ReleaseIndex, error) {
	var w wireReleaseIndex
	if err := decodeDoc("compact index", raw, MaxReleaseIndexSize, &w); err != nil {
		return nil, err
	}
	x, err := releaseIndexFromWire(&w)
	if err != nil {
		return nil, err
	}
	enc, err := MarshalReleaseIndex(x)
	if err != nil {
		return nil, err
	}
	if err := sameBytes(raw, enc); err != nil {
		return nil, fmt.Errorf("compact index: %w", err)
	}
	x.hash = sha256.Sum256(raw)
	return x, nil
}

func releaseIndexFromWire(w *wireReleaseIndex) (*ReleaseIndex, error) {
	if w.Type != typeReleaseIndex {
		return nil, fmt.Errorf("%w: type %q, want %q: this is not a compact release index", ErrMalformed, w.Type, typeReleaseIndex)
	}
	x := &ReleaseIndex{Schema: w.Schema, App: w.App, Channels: w.Channels, Sequence: w.Sequence}
	var err error
	if x.Issued, err = parseTime("compact index issued", w.Issued); err != nil {
		return nil, err
	}
	if x.Expires, err = parseTime("compact index expires", w.Expires); err != nil {
		return nil, err
	}
	if x.Manifest.SHA256, err = parseB64("compact index manifest.sha256", w.Manifest.SHA256); err != nil {
		return nil, err
	}
	x.Manifest.Size = w.Manifest.Size
	for i, we := range w.Releases {
		e := ReleaseEntry{Version: we.Version, Channel: we.Channel, Full: we.Full, Patches: we.Patches, Doc: DocRef{Size: we.Doc.Size}}
		where := fmt.Sprintf("compact index releases[%d]", i)
		if e.TreeDigest, err = parseB64(where+".tree_digest", we.TreeDigest); err != nil {
			return nil, err
		}
		if e.Doc.SHA256, err = parseB64(where+".doc.sha256", we.Doc.SHA256); err != nil {
			return nil, err
		}
		x.Releases = append(x.Releases, e)
	}
	return x, nil
}

// releaseDocBytes returns the canonical release document of r in app.
func releaseDocBytes(app string, r *Release) ([]byte, error) {
	w := toWire(&Manifest{Releases: []Release{*r}}).Releases[0]
	return encodeJSON(&wireReleaseDoc{App: app, Release: w, Schema: RolesSchema, Type: typeReleaseDoc}, MaxReleaseDocSize)
}

// BuildReleaseIndex returns the compact index of the full index raw (the
// canonical bytes of m, manifests/SEQ.json) and its release documents by
// path. Cost: one encoding of every release and one SHA-256 of each.
func BuildReleaseIndex(m *Manifest, raw []byte) (*ReleaseIndex, []byte, map[string][]byte, error) {
	x := &ReleaseIndex{Schema: RolesSchema, App: m.App, Channels: slices.Clone(m.Channels), Sequence: m.Sequence, Issued: m.Issued, Expires: m.Expires,
		Manifest: DocRef{Size: int64(len(raw)), SHA256: sha256.Sum256(raw)}}
	docs := map[string][]byte{}
	for i := range m.Releases {
		r := &m.Releases[i]
		doc, err := releaseDocBytes(m.App, r)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("release %s: %w", r.Version, err)
		}
		sum := sha256.Sum256(doc)
		docs[ReleaseDocPath(r.Version, sum)] = doc
		x.Releases = append(x.Releases, entryOf(r, doc))
	}
	enc, err := MarshalReleaseIndex(x)
	if err != nil {
		return nil, nil, nil, err
	}
	x.hash = sha256.Sum256(enc)
	return x, enc, docs, nil
}

// preferredArchiveSize is the size of r's tar.zst archive, else of its
// first (the archive a client downloads for a full install).
func preferredArchiveSize(r *Release) int64 {
	for _, a := range r.Archives {
		if a.Format == FormatTarZst {
			return a.Size
		}
	}
	if len(r.Archives) == 0 {
		return 0
	}
	return r.Archives[0].Size
}

// OpenReleaseDoc checks a release document fetched for entry e of a
// compact index of app, in order: its exact size and SHA-256
// (ErrHashMismatch) before anything else; strict parsing (cap, canonical,
// schema, known members, type: ErrMalformed); the app (ErrWrongApp); then
// that it is e's release: same version, channel and tree digest, the
// preferred archive of size e.Full, exactly e's patches with e's sizes,
// each into this version; and the rules of a manifest's release on its
// own (artifact paths safe and naming their versions, sizes, formats,
// unique paths, inline files matching the digest): ErrMalformed.
func OpenReleaseDoc(raw []byte, e *ReleaseEntry, app string) (*Release, error) {
	where := ReleaseDocPath(e.Version, e.Doc.SHA256)
	if int64(len(raw)) != e.Doc.Size || sha256.Sum256(raw) != e.Doc.SHA256 {
		return nil, fmt.Errorf("%w: %s does not have the size and SHA-256 the compact index names: the mirror serves other bytes; trying another", ErrHashMismatch, where)
	}
	r, docApp, err := ParseReleaseDoc(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if docApp != app {
		return nil, fmt.Errorf("%w: %s is for app %q, not %q", ErrWrongApp, where, docApp, app)
	}
	if r.Version != e.Version || r.Channel != e.Channel || r.TreeDigest != e.TreeDigest || preferredArchiveSize(r) != e.Full || len(r.Patches) != len(e.Patches) {
		return nil, fmt.Errorf("%w: %s does not describe release %s of the compact index (version, channel, tree digest, archive size or patches differ)", ErrMalformed, where, e.Version)
	}
	for _, p := range r.Patches {
		if size, ok := e.Patches[p.From]; !ok || size != p.Size {
			return nil, fmt.Errorf("%w: %s: patch from %s is not the one the compact index lists", ErrMalformed, where, p.From)
		}
	}
	return r, nil
}

// ParseReleaseDoc parses a release document strictly (cap, canonical form,
// schema, known members, type, the rules of a release on its own,
// re-encoding to the same bytes) and returns the release and its app. It
// checks no hash: clients use OpenReleaseDoc.
func ParseReleaseDoc(raw []byte) (*Release, string, error) {
	var w wireReleaseDoc
	if err := decodeDoc("release document", raw, MaxReleaseDocSize, &w); err != nil {
		return nil, "", err
	}
	if w.Type != typeReleaseDoc {
		return nil, "", fmt.Errorf("%w: type %q, want %q: this is not a release document", ErrMalformed, w.Type, typeReleaseDoc)
	}
	if !validName(w.App) {
		return nil, "", fmt.Errorf("%w: release document: app %q is not a valid name", ErrMalformed, w.App)
	}
	m, err := fromWire(&wireManifest{Issued: "2000-01-01T00:00:00Z", Expires: "2000-01-01T00:00:00Z", Releases: []wireRelease{w.Release}})
	if err != nil {
		return nil, "", fmt.Errorf("release document: %w", err)
	}
	r := &m.Releases[0]
	if err := validateLoneRelease(r); err != nil {
		return nil, "", fmt.Errorf("release document: %w", err)
	}
	enc, err := releaseDocBytes(w.App, r)
	if err != nil {
		return nil, "", err
	}
	if err := sameBytes(raw, enc); err != nil {
		return nil, "", fmt.Errorf("release document: %w", err)
	}
	return r, w.App, nil
}

// validateLoneRelease runs Manifest.Validate's rules on one release, with
// stand-ins for the base versions of its patches (whose existence the
// compact index vouches for).
func validateLoneRelease(r *Release) error {
	if !validName(r.Channel) {
		return fmt.Errorf("%w: release %s: channel %q is not a valid name", ErrMalformed, r.Version, r.Channel)
	}
	if len(r.Patches) > MaxReleaseEdges {
		return fmt.Errorf("%w: release %s: %d patches, at most %d", ErrMalformed, r.Version, len(r.Patches), MaxReleaseEdges)
	}
	m := Manifest{Schema: SchemaVersion, App: "x", Channels: []string{r.Channel}, Sequence: 1,
		Issued: time.Unix(0, 0).UTC(), Expires: time.Unix(1, 0).UTC(), Releases: []Release{*r}}
	for _, p := range r.Patches {
		if _, err := parseVersion(p.From); err != nil {
			return fmt.Errorf("%w: release %s: patch from %q: %v", ErrMalformed, r.Version, p.From, err)
		}
		stand := standIn(p.From, r.Channel)
		m.Releases = append(m.Releases, stand)
	}
	return m.Validate()
}

// standIn is a placeholder release of version v: one empty file, and an
// archive under a directory no publisher writes (a clash with a real path
// only refuses the document: fail closed).
func standIn(v, channel string) Release {
	size := int64(0)
	files := []tree.Entry{{Path: "f", Type: tree.File, Mode: 0o644, Size: size, SHA256: sha256.Sum256(nil)}}
	return Release{Version: v, Channel: channel, Files: files, TreeDigest: tree.Digest(files),
		Archives: []Archive{{Format: FormatTarZst, Artifact: Artifact{Path: ".stand-in/" + v + ".tar.zst", Size: 1, SHA256: [32]byte{1}}}}}
}

// ExpandReleaseIndex rebuilds the full index from a compact index and all
// of its release documents (by path), as canonical bytes; it fails unless
// every document is present and fits its entry. Publishers and `mkdelta
// verify` compare the result with manifests/SEQ.json (x.Manifest).
func ExpandReleaseIndex(x *ReleaseIndex, docs map[string][]byte) ([]byte, error) {
	m := &Manifest{Schema: SchemaVersion, App: x.App, Channels: x.Channels, Sequence: x.Sequence, Issued: x.Issued, Expires: x.Expires}
	for i := range x.Releases {
		e := &x.Releases[i]
		p := ReleaseDocPath(e.Version, e.Doc.SHA256)
		raw, ok := docs[p]
		if !ok {
			return nil, fmt.Errorf("%w: %s is missing", ErrNotFound, p)
		}
		r, err := OpenReleaseDoc(raw, e, x.App)
		if err != nil {
			return nil, err
		}
		m.Releases = append(m.Releases, *r)
	}
	out, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	if int64(len(out)) != x.Manifest.Size || sha256.Sum256(out) != x.Manifest.SHA256 {
		return nil, fmt.Errorf("%w: the compact index %d and its release documents do not rebuild %s", ErrHashMismatch, x.Sequence, IndexPath(x.Sequence))
	}
	return out, nil
}

// SignReleaseIndex returns a signature file by priv of compact-index bytes
// raw, which must parse. Trusted comment: "deltaup releases app:APP
// sequence:N" (no hash: it travels in every delta, and no reader needs it).
func SignReleaseIndex(priv PrivateKey, raw []byte) ([]byte, error) {
	if !priv.set {
		return nil, errors.New("manifest: SignReleaseIndex: zero PrivateKey")
	}
	x, err := ParseReleaseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return signBytes(priv, raw, fmt.Sprintf("deltaup releases app:%s sequence:%d", x.App, x.Sequence)), nil
}

// OpenReleaseIndex checks a compact index fetched by a v2 client for the
// full index ref that the timestamp names, in order: the cap
// (ErrTooLarge); a threshold of the release keys' signatures over the
// exact bytes, before parsing (ErrSignature); strict parsing
// (ErrMalformed); the app (ErrWrongApp); that it is the projection of the
// index ref names: same sequence, size and SHA-256 (ErrHashMismatch: a
// compact index of another platform or sequence); then the sequence and
// validity rules of OpenIndex (opts: ErrRollback, ErrExpired). Compared
// with opts.SeenHash is ref's SHA-256 (the full index's, which the state
// records).
func OpenReleaseIndex(raw []byte, sigs map[string][]byte, root *Root, ref IndexRef, opts OpenOptions) (*ReleaseIndex, error) {
	p := ReleaseIndexPath(ref.Sequence)
	if len(raw) > MaxReleaseIndexSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, the cap is %d", ErrTooLarge, p, len(raw), MaxReleaseIndexSize)
	}
	if opts.App == "" {
		return nil, fmt.Errorf("%w: OpenOptions.App is empty", ErrWrongApp)
	}
	if err := root.VerifyRole(RoleRelease, raw, sigs); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	x, err := ParseReleaseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if x.App != opts.App {
		return nil, fmt.Errorf("%w: %s is for app %q, not %q", ErrWrongApp, p, x.App, opts.App)
	}
	if x.Sequence != ref.Sequence || x.Manifest.Size != ref.Size || x.Manifest.SHA256 != ref.SHA256 {
		return nil, fmt.Errorf("%w: %s is the projection of index %d (%d bytes), not of the index the timestamp names: the mirror mixes indexes (another platform's, or an old one); trying another", ErrHashMismatch, p, x.Sequence, x.Manifest.Size)
	}
	// The rules of Open for sequence and times, on the header.
	head := &Manifest{Schema: SchemaVersion, App: x.App, Channels: x.Channels, Sequence: x.Sequence, Issued: x.Issued, Expires: x.Expires, hash: ref.SHA256, parsed: true}
	if err := checkFreshness(head, opts); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return x, nil
}

// ReleaseDelta turns compact index From into the compact index of
// Index.Sequence: the first Keep releases of From, then Index.Releases.
// The appended releases travel as their release documents (Docs), from
// which their entries are derived: a client one release behind gets the
// new index and the document it needs in one request.
type ReleaseDelta struct {
	From  uint64
	Keep  int
	Index ReleaseIndex // header of the new index, appended releases only
	// Docs are the release documents of the appended releases, by path
	// (ReleaseDocPath); trusted only once the rebuilt index, which pins
	// their size and SHA-256, passes OpenReleaseIndex.
	Docs map[string][]byte
	// Sigs are the release keys' signature files of the new index.
	Sigs map[string][]byte
}

type wireReleaseDelta struct {
	Docs  []json.RawMessage `json:"docs"`
	From  uint64            `json:"from"`
	Index *wireReleaseIndex `json:"index"`
	Keep  int               `json:"keep"`
	Sigs  map[string]string `json:"sigs,omitempty"`
	Type  string            `json:"type"`
}

// MaxDeltaDocs caps the release documents of one delta.
const MaxDeltaDocs = 64

// entryOf projects a release and its document's bytes to a compact entry.
func entryOf(r *Release, doc []byte) ReleaseEntry {
	e := ReleaseEntry{Version: r.Version, Channel: r.Channel, TreeDigest: r.TreeDigest, Full: preferredArchiveSize(r), Patches: map[string]int64{},
		Doc: DocRef{Size: int64(len(doc)), SHA256: sha256.Sum256(doc)}}
	for _, p := range r.Patches {
		e.Patches[p.From] = p.Size
	}
	return e
}

// MakeReleaseDelta returns the canonical delta document from compact index
// base to next (index/FROM-TO.delta.json): the longest common prefix of
// their releases is kept, the others travel as their release documents
// (docs, by path: each must be there); sigs (key ID to signature file) are
// carried.
func MakeReleaseDelta(base, next *ReleaseIndex, sigs, docs map[string][]byte) ([]byte, error) {
	keep := 0
	for keep < len(base.Releases) && keep < len(next.Releases) {
		a, b := base.Releases[keep].wire(), next.Releases[keep].wire()
		ea, err := encodeJSON(a, MaxReleaseIndexSize)
		if err != nil {
			return nil, err
		}
		eb, err := encodeJSON(b, MaxReleaseIndexSize)
		if err != nil {
			return nil, err
		}
		if string(ea) != string(eb) {
			break
		}
		keep++
	}
	if len(next.Releases)-keep > MaxDeltaDocs {
		return nil, fmt.Errorf("%w: %d releases appended, a delta carries at most %d", ErrTooLarge, len(next.Releases)-keep, MaxDeltaDocs)
	}
	head := *next
	head.Releases = nil
	w := &wireReleaseDelta{Docs: []json.RawMessage{}, From: base.Sequence, Index: head.wire(), Keep: keep, Type: typeReleaseDelta}
	for _, e := range next.Releases[keep:] {
		p := ReleaseDocPath(e.Version, e.Doc.SHA256)
		doc, ok := docs[p]
		if !ok {
			return nil, fmt.Errorf("%w: %s, needed by the delta, is missing", ErrNotFound, p)
		}
		w.Docs = append(w.Docs, json.RawMessage(doc))
	}
	for id, sig := range sigs {
		if w.Sigs == nil {
			w.Sigs = map[string]string{}
		}
		w.Sigs[id] = string(sig)
	}
	return encodeJSON(w, MaxReleaseIndexSize)
}

// ParseReleaseDelta parses a compact-index delta strictly (cap, canonical
// form, known members, type, each release document strictly), without any
// signature: what it yields is trusted only through the index
// ApplyReleaseDelta rebuilds, which must then pass OpenReleaseIndex.
func ParseReleaseDelta(raw []byte) (*ReleaseDelta, error) {
	if len(raw) > MaxReleaseIndexSize {
		return nil, fmt.Errorf("%w: compact index delta is %d bytes, the cap is %d", ErrTooLarge, len(raw), MaxReleaseIndexSize)
	}
	if err := checkCanonical(raw, MaxReleaseIndexSize); err != nil {
		return nil, fmt.Errorf("compact index delta: %w", err)
	}
	var w wireReleaseDelta
	if err := decodeStrict(raw, &w); err != nil {
		return nil, fmt.Errorf("compact index delta: %w", err)
	}
	if w.Type != typeReleaseDelta || w.Index == nil || w.Keep < 0 || w.From == 0 || w.From > MaxSafeInteger || w.Docs == nil || len(w.Index.Releases) != 0 {
		return nil, fmt.Errorf("%w: compact index delta: not a delta document (type, index without releases, docs, keep, from)", ErrMalformed)
	}
	if len(w.Docs) > MaxDeltaDocs {
		return nil, fmt.Errorf("%w: compact index delta: %d release documents, at most %d", ErrMalformed, len(w.Docs), MaxDeltaDocs)
	}
	if w.Index.Schema != RolesSchema {
		return nil, fmt.Errorf("%w: compact index delta: index schema %d", ErrSchema, w.Index.Schema)
	}
	x, err := releaseIndexFromWire(w.Index)
	if err != nil {
		return nil, fmt.Errorf("compact index delta: %w", err)
	}
	d := &ReleaseDelta{From: w.From, Keep: w.Keep, Index: *x, Docs: map[string][]byte{}}
	for i, doc := range w.Docs {
		r, app, err := ParseReleaseDoc(doc)
		if err != nil {
			return nil, fmt.Errorf("compact index delta: docs[%d]: %w", i, err)
		}
		if app != x.App {
			return nil, fmt.Errorf("%w: compact index delta: docs[%d] is for app %q, not %q", ErrWrongApp, i, app, x.App)
		}
		e := entryOf(r, doc)
		d.Index.Releases = append(d.Index.Releases, e)
		d.Docs[ReleaseDocPath(e.Version, e.Doc.SHA256)] = slices.Clone([]byte(doc))
	}
	if len(w.Sigs) > MaxRoleKeys {
		return nil, fmt.Errorf("%w: compact index delta: %d signatures, at most %d", ErrMalformed, len(w.Sigs), MaxRoleKeys)
	}
	for id, sig := range w.Sigs {
		if !validKeyID(id) || len(sig) > MaxSignatureSize {
			return nil, fmt.Errorf("%w: compact index delta: signature %q: not a key ID, or over %d bytes", ErrMalformed, id, MaxSignatureSize)
		}
		if d.Sigs == nil {
			d.Sigs = map[string][]byte{}
		}
		d.Sigs[id] = []byte(sig)
	}
	head := d.Index
	head.Releases = nil
	enc, err := encodeJSON(&wireReleaseDelta{Docs: w.Docs, From: d.From, Index: head.wire(), Keep: d.Keep, Sigs: w.Sigs, Type: typeReleaseDelta}, MaxReleaseIndexSize)
	if err != nil {
		return nil, err
	}
	if err := sameBytes(raw, enc); err != nil {
		return nil, fmt.Errorf("compact index delta: %w", err)
	}
	return d, nil
}

// ApplyReleaseDelta rebuilds the compact index bytes from base (the
// compact index of sequence d.From, accepted before) and d. The caller
// checks the result like a fetched index (OpenReleaseIndex: signatures,
// and that it names the timestamp's index). Errors: ErrMalformed when d
// does not fit base or the result is not a valid index.
func ApplyReleaseDelta(base *ReleaseIndex, d *ReleaseDelta) ([]byte, error) {
	if base.Sequence != d.From || d.Keep > len(base.Releases) {
		return nil, fmt.Errorf("%w: compact index delta from %d keeping %d releases does not fit index %d of %d releases", ErrMalformed, d.From, d.Keep, base.Sequence, len(base.Releases))
	}
	x := d.Index
	x.Releases = append(append([]ReleaseEntry{}, base.Releases[:d.Keep]...), d.Index.Releases...)
	return MarshalReleaseIndex(&x)
}

// PartialManifest returns the index that x is the projection of, holding
// only the releases given (each opened with OpenReleaseDoc against its
// entry of x; in any order), in x's order, with the patches whose base is
// not among them left out. Its Sequence, times and ContentHash are those
// of the full index (x.Manifest), so a client records the same sequence
// and hash as from the full index. It is for clients that need only some
// releases (those a route may use); it is not Validate'd as a whole.
// Errors: ErrMalformed when a release is not one of x's.
func PartialManifest(x *ReleaseIndex, rels []Release) (*Manifest, error) {
	byVersion := map[string]*Release{}
	for i := range rels {
		if x.Entry(rels[i].Version) == nil {
			return nil, fmt.Errorf("%w: release %s is not in compact index %d", ErrMalformed, rels[i].Version, x.Sequence)
		}
		byVersion[rels[i].Version] = &rels[i]
	}
	m := &Manifest{Schema: SchemaVersion, App: x.App, Channels: slices.Clone(x.Channels), Sequence: x.Sequence, Issued: x.Issued, Expires: x.Expires,
		hash: x.Manifest.SHA256, parsed: true}
	for _, e := range x.Releases {
		r, ok := byVersion[e.Version]
		if !ok {
			continue
		}
		out := *r
		out.Patches = nil
		for _, p := range r.Patches {
			if _, ok := byVersion[p.From]; ok {
				out.Patches = append(out.Patches, p)
			}
		}
		m.Releases = append(m.Releases, out)
	}
	return m, nil
}
