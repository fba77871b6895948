package manifest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// Frame indexes. A frame index lists the independent zstd frames of a
// release's framed tar.zst archive (fallback.WriteOptions.Framed), so that
// a client missing a few files of a release fetches only the frames that
// hold them (HTTP Range) instead of the whole archive. It is signed with
// the manifest key on its own (a minisign signature beside it) rather than
// referenced from manifest.json: clients that predate it decode the
// manifest strictly and would refuse a new member, and it is optional (a
// release without one is simply fetched whole).
const (
	// FrameIndexSuffix replaces ".tar.zst" in the path of a release's
	// tar.zst archive to name its frame index ("archives/app-1.2.0.tar.zst"
	// -> "archives/app-1.2.0.index.json"); the signature adds
	// FrameIndexSigSuffix.
	FrameIndexSuffix    = ".index.json"
	FrameIndexSigSuffix = ".minisig"
	// MaxFrameIndexSize caps a frame-index document.
	MaxFrameIndexSize = 16 << 20
)

// FrameIndex is a frame-index document.
type FrameIndex struct {
	Schema     int    // SchemaVersion
	App        string // the application
	Version    string // the release
	TreeDigest [32]byte
	// Archive is the framed tar.zst the frames are byte ranges of: the
	// release's tar.zst archive itself, or a separate file when framing
	// would make the archive much larger. Its path names the version and
	// ends in ".tar.zst".
	Archive Artifact
	// Frames, in archive order, cover Archive exactly: frame i starts
	// where frame i-1 ends (the first at 0) and their sizes add up to
	// Archive.Size. Their entries, in order, are the release's entries in
	// file-list order.
	Frames []IndexFrame
}

// IndexFrame is one frame of a framed archive.
type IndexFrame struct {
	// Entries is how many entries of the release (in file-list order,
	// after those of the frames before) have their tar headers and data in
	// the frame; at least 1.
	Entries int
	Size    int64    // compressed bytes, at least 1
	SHA256  [32]byte // of the compressed bytes
}

// FrameSpan locates an IndexFrame: its bytes in the archive and its
// entries in the release's file list.
type FrameSpan struct {
	IndexFrame
	Offset int64
	First  int
}

// Spans returns the frames with their offsets and first entries.
func (x *FrameIndex) Spans() []FrameSpan {
	out := make([]FrameSpan, len(x.Frames))
	var off int64
	first := 0
	for i, f := range x.Frames {
		out[i] = FrameSpan{IndexFrame: f, Offset: off, First: first}
		off += f.Size
		first += f.Entries
	}
	return out
}

// FrameIndexPath returns the repository path of the frame index of the
// release's tar.zst archive, false when the release has none.
func FrameIndexPath(r *Release) (string, bool) {
	for _, a := range r.Archives {
		if a.Format == FormatTarZst {
			return strings.TrimSuffix(a.Path, "."+FormatTarZst) + FrameIndexSuffix, true
		}
	}
	return "", false
}

type wireFrameIndex struct {
	App        string       `json:"app"`
	Archive    wireArtifact `json:"archive"`
	Frames     []wireFrame  `json:"frames"`
	Schema     int          `json:"schema"`
	TreeDigest string       `json:"tree_digest"`
	Version    string       `json:"version"`
}

type wireFrame struct {
	Entries int    `json:"entries"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
}

func (x *FrameIndex) wire() *wireFrameIndex {
	w := &wireFrameIndex{
		App:        x.App,
		Archive:    wireArtifact{Path: x.Archive.Path, SHA256: hexOf(x.Archive.SHA256), Size: x.Archive.Size},
		Frames:     make([]wireFrame, 0, len(x.Frames)),
		Schema:     x.Schema,
		TreeDigest: hexOf(x.TreeDigest),
		Version:    x.Version,
	}
	for _, f := range x.Frames {
		w.Frames = append(w.Frames, wireFrame{Entries: f.Entries, SHA256: hexOf(f.SHA256), Size: f.Size})
	}
	return w
}

// Validate checks the rules that need no release: schema, app and version
// syntax, the archive (a .tar.zst path naming the version, size, hash),
// and the frames: at least one, each with at least one entry, a size of at
// least 1 and a non-zero SHA-256, their sizes adding up to the archive's
// exactly (so no frame lies past its end, none overlaps another and no
// byte is left out). Errors wrap ErrMalformed (ErrSchema).
func (x *FrameIndex) Validate() error {
	if x.Schema != SchemaVersion {
		return fmt.Errorf("%w: frame index schema %d, this package knows %d", ErrSchema, x.Schema, SchemaVersion)
	}
	if !validName(x.App) {
		return fmt.Errorf("%w: frame index: app %q is not a valid name", ErrMalformed, x.App)
	}
	if _, err := parseVersion(x.Version); err != nil {
		return fmt.Errorf("%w: frame index: %v", ErrMalformed, err)
	}
	where := "frame index of " + x.Version
	if err := checkArtifact(where+": archive", x.Archive, x.Version); err != nil {
		return err
	}
	if !strings.HasSuffix(x.Archive.Path, "."+FormatTarZst) {
		return fmt.Errorf("%w: %s: archive %q is not a .%s", ErrMalformed, where, x.Archive.Path, FormatTarZst)
	}
	if len(x.Frames) == 0 {
		return fmt.Errorf("%w: %s: no frames", ErrMalformed, where)
	}
	var end int64
	var entries int64
	for i, f := range x.Frames {
		at := fmt.Sprintf("%s: frames[%d]", where, i)
		switch {
		case f.Entries < 1 || int64(f.Entries) > MaxSafeInteger:
			return fmt.Errorf("%w: %s: %d entries (at least 1)", ErrMalformed, at, f.Entries)
		case f.Size < 1 || f.Size > MaxSafeInteger:
			return fmt.Errorf("%w: %s: size %d outside 1..2^53-1", ErrMalformed, at, f.Size)
		case f.SHA256 == [32]byte{}:
			return fmt.Errorf("%w: %s: sha256 is all zero", ErrMalformed, at)
		case f.Size > x.Archive.Size-end:
			return fmt.Errorf("%w: %s: bytes %d..%d lie past the end of the %d-byte archive", ErrMalformed, at, end, end+f.Size, x.Archive.Size)
		}
		end += f.Size
		entries += int64(f.Entries)
		if entries > MaxSafeInteger {
			return fmt.Errorf("%w: %s: too many entries", ErrMalformed, at)
		}
	}
	if end != x.Archive.Size {
		return fmt.Errorf("%w: %s: the frames cover %d of the archive's %d bytes", ErrMalformed, where, end, x.Archive.Size)
	}
	return nil
}

// MarshalFrameIndex validates x and returns its canonical bytes
// (ErrTooLarge beyond MaxFrameIndexSize).
func MarshalFrameIndex(x *FrameIndex) ([]byte, error) {
	if err := x.Validate(); err != nil {
		return nil, err
	}
	return encodeJSON(x.wire(), MaxFrameIndexSize)
}

// SignFrameIndex returns the minisign signature file of the frame-index
// bytes raw, which must parse (ParseFrameIndex). Its trusted comment reads
//
//	deltaup frame-index app:APP version:V sha256:HEX
//
// with HEX the SHA-256 of raw; clients do not rely on it.
func SignFrameIndex(priv PrivateKey, raw []byte) ([]byte, error) {
	if !priv.set {
		return nil, errors.New("manifest: SignFrameIndex: zero PrivateKey")
	}
	x, err := ParseFrameIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return signBytes(priv, raw, fmt.Sprintf("deltaup frame-index app:%s version:%s sha256:%x", x.App, x.Version, sha256.Sum256(raw))), nil
}

// ParseFrameIndex parses frame-index bytes strictly (size cap, canonical
// form, known members only, schema, Validate, re-encoding to the same
// bytes) WITHOUT checking a signature: for publishers and the fuzzer;
// clients use OpenFrameIndex.
func ParseFrameIndex(raw []byte) (*FrameIndex, error) {
	if int64(len(raw)) > MaxFrameIndexSize {
		return nil, fmt.Errorf("%w: frame index is %d bytes, the cap is %d", ErrTooLarge, len(raw), MaxFrameIndexSize)
	}
	if err := checkCanonical(raw, MaxFrameIndexSize); err != nil {
		return nil, fmt.Errorf("frame index: %w", err)
	}
	if err := checkSchema(raw); err != nil {
		return nil, fmt.Errorf("frame index: %w", err)
	}
	var w wireFrameIndex
	if err := decodeStrict(raw, &w); err != nil {
		return nil, fmt.Errorf("frame index: %w", err)
	}
	x := &FrameIndex{Schema: w.Schema, App: w.App, Version: w.Version}
	var err error
	if x.TreeDigest, err = parseHash("frame index tree_digest", w.TreeDigest); err != nil {
		return nil, err
	}
	if x.Archive, err = fromWireArtifact("frame index archive", w.Archive.Path, w.Archive.SHA256, w.Archive.Size); err != nil {
		return nil, err
	}
	x.Frames = make([]IndexFrame, 0, len(w.Frames))
	for i, f := range w.Frames {
		h, err := parseHash(fmt.Sprintf("frame index frames[%d].sha256", i), f.SHA256)
		if err != nil {
			return nil, err
		}
		x.Frames = append(x.Frames, IndexFrame{Entries: f.Entries, Size: f.Size, SHA256: h})
	}
	if err := x.Validate(); err != nil {
		return nil, err
	}
	enc, err := encodeJSON(x.wire(), MaxFrameIndexSize)
	if err != nil {
		return nil, err
	}
	if err := sameBytes(raw, enc); err != nil {
		return nil, fmt.Errorf("frame index: %w", err)
	}
	return x, nil
}

// OpenFrameIndex is a client's way to a frame index: raw and sig as
// fetched (FrameIndexPath, plus FrameIndexSigSuffix), app the client's
// application, r the release (from a manifest Open accepted) and entries
// the number of its tree entries. In order: the size cap (ErrTooLarge),
// the signature by pub over the exact bytes before any parsing
// (ErrSignature), ParseFrameIndex (ErrMalformed), and that the index
// describes this very release: its app, version and tree digest, and
// frames holding exactly entries entries (ErrMalformed).
func OpenFrameIndex(raw, sig []byte, pub PublicKey, app string, r *Release, entries int) (*FrameIndex, error) {
	if int64(len(raw)) > MaxFrameIndexSize {
		return nil, fmt.Errorf("%w: frame index of %s is %d bytes, the cap is %d", ErrTooLarge, r.Version, len(raw), MaxFrameIndexSize)
	}
	if _, err := Verify(pub, raw, sig); err != nil {
		return nil, fmt.Errorf("frame index of %s: %w", r.Version, err)
	}
	x, err := ParseFrameIndex(raw)
	if err != nil {
		return nil, err
	}
	var n int64
	for _, f := range x.Frames {
		n += int64(f.Entries)
	}
	switch {
	case x.App != app:
		return nil, fmt.Errorf("%w: the frame index is for app %q, not %q: the repository is inconsistent", ErrMalformed, x.App, app)
	case x.Version != r.Version || x.TreeDigest != r.TreeDigest:
		return nil, fmt.Errorf("%w: the frame index describes %s (tree %x), not release %s (tree %x): the repository is inconsistent", ErrMalformed, x.Version, x.TreeDigest[:8], r.Version, r.TreeDigest[:8])
	case n != int64(entries):
		return nil, fmt.Errorf("%w: the frame index of %s holds %d entries, the release %d: the repository is inconsistent", ErrMalformed, r.Version, n, entries)
	}
	return x, nil
}
