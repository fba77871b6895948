// Package manifest reads, writes, signs and checks the repository index of a
// deltaup repository: manifest.json, signed by manifest.json.minisig, and the
// optional per-release file-list documents it references.
//
// A client fetches both files from the repository root and calls Open, which
// checks, in this order: the size cap, the minisign signature (before any
// parsing), canonical JSON, the schema, the application name, every
// consistency rule of Validate, the sequence number against the highest one
// seen before, and the validity period. Only then are releases, archives and
// patches trusted; a file-list document is trusted once OpenFileList has
// matched it against the size and SHA-256 the manifest records. The publisher builds a Manifest, calls Marshal for its
// canonical bytes and Sign for the signature file; the stock minisign CLI
// verifies the pair (`minisign -V -H -m manifest.json -p KEY.pub`).
//
// The wire format is described in docs/FORMAT.md, "Repository manifest".
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deltaup/deltaup/internal/tree"
)

// Format constants.
const (
	// SchemaVersion is the only schema version this package reads and
	// writes.
	SchemaVersion = 1

	// ManifestName and SignatureName are the file names at the repository
	// root.
	ManifestName  = "manifest.json"
	SignatureName = "manifest.json.minisig"

	// MaxManifestSize caps manifest.json (Open's default MaxSize).
	MaxManifestSize = 4 << 20
	// MaxFileListSize caps a file-list document, and any document
	// Canonicalize accepts.
	MaxFileListSize = 16 << 20
	// MaxSignatureSize caps a .minisig file (a minisign signature with a
	// trusted comment of up to 1 KiB is under 1.5 KiB).
	MaxSignatureSize = 4 << 10

	// InlineFilesMax is the publisher's rule of thumb: a release with more
	// tree entries than this lists them in a separate file-list document
	// (Release.FileList) rather than inline. Not enforced when reading.
	InlineFilesMax = 200

	// ClockSkew is how far in the future a manifest's issue time may lie
	// before Open refuses it.
	ClockSkew = 5 * time.Minute

	// MaxNameLen caps app and channel names; MaxVersionLen caps versions.
	MaxNameLen    = 64
	MaxVersionLen = 64
)

// Archive formats.
const (
	FormatTarZst = "tar.zst"
	FormatTarGz  = "tar.gz"
)

// timeLayout is the only accepted form of times: RFC 3339, UTC, seconds.
const timeLayout = "2006-01-02T15:04:05Z"

// Manifest is the repository index.
type Manifest struct {
	Schema   int      // SchemaVersion
	App      string   // application name, [A-Za-z0-9][A-Za-z0-9._-]*, at most MaxNameLen bytes
	Channels []string // declared channels (same syntax as App), at least one, unique
	// Sequence grows with every published manifest; clients refuse a
	// lower one than they have seen (ErrRollback). 1..MaxSafeInteger.
	Sequence uint64
	Issued   time.Time // UTC, whole seconds
	Expires  time.Time // after Issued
	Releases []Release // any order; see Sorted and Latest

	hash   [32]byte // SHA-256 of the bytes parsed, when parsed
	parsed bool
}

// Release is one version of the application.
type Release struct {
	Version string // strict semantic version (semver.org 2.0.0), no "v" prefix
	Channel string // one of Manifest.Channels

	// The version's tree: either Files, inline (sorted by path, unique,
	// every parent directory listed), or FileList, a reference to a
	// separate file-list document; exactly one is set.
	Files    []tree.Entry
	FileList *FileListRef
	// TreeDigest is tree.Digest of the entries.
	TreeDigest [32]byte

	Archives []Archive // full archives, at least one, one per format
	Patches  []Patch   // deltas into this version (To == Version), one per From
}

// Archive is a full archive of a release's tree.
type Archive struct {
	Format string // FormatTarZst or FormatTarGz; Path ends in "." + Format
	Artifact
}

// Patch is a delta bundle from release From to release To.
type Patch struct {
	From, To string // versions of existing releases, From < To
	Artifact
}

// Artifact is a file in the repository: path relative to the repository
// root (tree.CheckPath), size in bytes (> 0) and SHA-256.
type Artifact struct {
	Path   string
	Size   int64
	SHA256 [32]byte
}

// FileListRef points to a file-list document holding a release's entries.
type FileListRef Artifact

// ContentHash returns the SHA-256 of the exact bytes m was parsed from
// (Open, ParseUnverified). A client that sees the same Sequence again with a
// different ContentHash is being served a forked repository (see
// OpenOptions.SeenHash). For a Manifest built in memory it hashes Marshal(m),
// or returns zero if m does not marshal.
func (m *Manifest) ContentHash() [32]byte {
	if m.parsed {
		return m.hash
	}
	b, err := Marshal(m)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(b)
}

// Wire types: field names and JSON shapes of the documents. Keys are listed
// in canonical (sorted) order.

type wireManifest struct {
	App      string        `json:"app"`
	Channels []string      `json:"channels"`
	Expires  string        `json:"expires"`
	Issued   string        `json:"issued"`
	Releases []wireRelease `json:"releases"`
	Schema   int           `json:"schema"`
	Sequence uint64        `json:"sequence"`
}

type wireRelease struct {
	Archives   []wireArchive `json:"archives"`
	Channel    string        `json:"channel"`
	FileList   *wireArtifact `json:"file_list,omitempty"`
	Files      []wireEntry   `json:"files,omitempty"`
	Patches    []wirePatch   `json:"patches"`
	TreeDigest string        `json:"tree_digest"`
	Version    string        `json:"version"`
}

type wireArtifact struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

type wireArchive struct {
	Format string `json:"format"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

type wirePatch struct {
	From   string `json:"from"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	To     string `json:"to"`
}

type wireEntry struct {
	Mode   string `json:"mode,omitempty"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256,omitempty"`
	Size   *int64 `json:"size,omitempty"`
	Target string `json:"target,omitempty"`
	Type   string `json:"type"`
}

type wireFileList struct {
	Files   []wireEntry `json:"files"`
	Schema  int         `json:"schema"`
	Version string      `json:"version"`
}

func hexOf(b [32]byte) string { return hex.EncodeToString(b[:]) }

func toWireEntries(es []tree.Entry) []wireEntry {
	out := make([]wireEntry, 0, len(es))
	for _, e := range es {
		w := wireEntry{Path: e.Path, Type: string(e.Type)}
		switch e.Type {
		case tree.File:
			size := e.Size
			w.Mode, w.Size, w.SHA256 = formatMode(e.Mode), &size, e.Hex()
		case tree.Dir:
			w.Mode = formatMode(e.Mode)
		case tree.Symlink:
			w.Target = e.Target
		}
		out = append(out, w)
	}
	return out
}

func formatMode(m fs.FileMode) string { return fmt.Sprintf("%04o", uint32(m)) }

func toWire(m *Manifest) *wireManifest {
	w := &wireManifest{
		App:      m.App,
		Channels: append(make([]string, 0, len(m.Channels)), m.Channels...),
		Expires:  m.Expires.UTC().Format(timeLayout),
		Issued:   m.Issued.UTC().Format(timeLayout),
		Releases: make([]wireRelease, 0, len(m.Releases)),
		Schema:   m.Schema,
		Sequence: m.Sequence,
	}
	for _, r := range m.Releases {
		wr := wireRelease{
			Archives:   make([]wireArchive, 0, len(r.Archives)),
			Channel:    r.Channel,
			Patches:    make([]wirePatch, 0, len(r.Patches)),
			TreeDigest: hexOf(r.TreeDigest),
			Version:    r.Version,
		}
		if r.FileList != nil {
			wr.FileList = &wireArtifact{Path: r.FileList.Path, SHA256: hexOf(r.FileList.SHA256), Size: r.FileList.Size}
		}
		if r.Files != nil {
			wr.Files = toWireEntries(r.Files)
		}
		for _, a := range r.Archives {
			wr.Archives = append(wr.Archives, wireArchive{Format: a.Format, Path: a.Path, SHA256: hexOf(a.SHA256), Size: a.Size})
		}
		for _, p := range r.Patches {
			wr.Patches = append(wr.Patches, wirePatch{From: p.From, Path: p.Path, SHA256: hexOf(p.SHA256), Size: p.Size, To: p.To})
		}
		w.Releases = append(w.Releases, wr)
	}
	return w
}

// Marshal validates m and returns its canonical JSON bytes: what the
// publisher writes to manifest.json and signs. It fails with ErrMalformed if
// Validate does, and with ErrTooLarge beyond MaxManifestSize (move long file
// lists to file-list documents). Cost: linear in the output size, plus the
// tree digest of every inline file list.
func Marshal(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return encode(m)
}

// encode returns the canonical bytes of m without validating it.
func encode(m *Manifest) ([]byte, error) {
	return encodeJSON(toWire(m), MaxManifestSize)
}

func encodeJSON(v any, limit int64) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return canonicalize(raw, limit)
}

// ParseUnverified parses manifest bytes strictly (size cap, canonical form,
// known fields only, schema version, Validate) WITHOUT checking any
// signature, application name, time or sequence. It is for publishers and
// tools inspecting their own output; clients use Open.
func ParseUnverified(raw []byte) (*Manifest, error) {
	m, err := parse(raw, MaxManifestSize)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := checkRoundTrip(raw, m); err != nil {
		return nil, err
	}
	return m, nil
}

// parse checks the size, the canonical form and the schema version, and
// decodes raw strictly; it does not call Validate.
func parse(raw []byte, limit int64) (*Manifest, error) {
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%w: manifest is %d bytes, the cap is %d", ErrTooLarge, len(raw), limit)
	}
	if err := checkCanonical(raw, limit); err != nil {
		return nil, err
	}
	if err := checkSchema(raw); err != nil {
		return nil, err
	}
	var w wireManifest
	if err := decodeStrict(raw, &w); err != nil {
		return nil, err
	}
	m, err := fromWire(&w)
	if err != nil {
		return nil, err
	}
	m.hash, m.parsed = sha256.Sum256(raw), true
	return m, nil
}

// checkSchema reads only the "schema" member, so that a document of a newer
// schema fails with ErrSchema rather than with an unknown field.
func checkSchema(raw []byte) error { return checkSchemaOf(raw, SchemaVersion) }

// checkSchemaOf is checkSchema for documents of schema want.
func checkSchemaOf(raw []byte, want int64) error {
	if len(raw) == 0 || raw[0] != '{' {
		return fmt.Errorf("%w: the document is not a JSON object", ErrMalformed)
	}
	var s struct {
		Schema *int64 `json:"schema"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%w: \"schema\" is not an integer: %v", ErrMalformed, err)
	}
	switch {
	case s.Schema == nil:
		return fmt.Errorf("%w: no \"schema\" member (expected %d)", ErrMalformed, want)
	case *s.Schema != want:
		return fmt.Errorf("%w: document has schema %d, this client reads %d: update the client", ErrSchema, *s.Schema, want)
	}
	return nil
}

// decodeStrict decodes one JSON value of canonical bytes into v, refusing
// unknown fields and trailing data.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v (the document does not follow schema %d: the publisher's tool and this client disagree on the format)", ErrMalformed, err, SchemaVersion)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON value", ErrMalformed)
	}
	return nil
}

// checkRoundTrip makes sure the typed value re-encodes to exactly raw:
// encoding/json matches keys case-insensitively and maps null or absent
// members to zero values, none of which a canonical document may rely on.
func checkRoundTrip(raw []byte, m *Manifest) error {
	enc, err := encode(m)
	if err != nil {
		return err
	}
	return sameBytes(raw, enc)
}

func sameBytes(raw, enc []byte) error {
	if bytes.Equal(raw, enc) {
		return nil
	}
	return fmt.Errorf("%w: document does not re-encode to the same bytes (%s): a member is missing, null, spelled in another case, or present where it must be omitted",
		ErrMalformed, describeDiff(raw, enc))
}

func fromWire(w *wireManifest) (*Manifest, error) {
	m := &Manifest{
		Schema:   w.Schema,
		App:      w.App,
		Channels: w.Channels,
		Sequence: w.Sequence,
	}
	var err error
	if m.Issued, err = parseTime("issued", w.Issued); err != nil {
		return nil, err
	}
	if m.Expires, err = parseTime("expires", w.Expires); err != nil {
		return nil, err
	}
	if len(w.Releases) > 0 {
		m.Releases = make([]Release, 0, len(w.Releases))
	}
	for i, wr := range w.Releases {
		where := fmt.Sprintf("releases[%d] (%q)", i, wr.Version)
		r := Release{Version: wr.Version, Channel: wr.Channel}
		if r.TreeDigest, err = parseHash(where+".tree_digest", wr.TreeDigest); err != nil {
			return nil, err
		}
		if wr.FileList != nil {
			a, err := fromWireArtifact(where+".file_list", wr.FileList.Path, wr.FileList.SHA256, wr.FileList.Size)
			if err != nil {
				return nil, err
			}
			ref := FileListRef(a)
			r.FileList = &ref
		}
		if wr.Files != nil {
			if r.Files, err = fromWireEntries(where+".files", wr.Files); err != nil {
				return nil, err
			}
		}
		if len(wr.Archives) > 0 {
			r.Archives = make([]Archive, 0, len(wr.Archives))
		}
		for j, wa := range wr.Archives {
			a, err := fromWireArtifact(fmt.Sprintf("%s.archives[%d]", where, j), wa.Path, wa.SHA256, wa.Size)
			if err != nil {
				return nil, err
			}
			r.Archives = append(r.Archives, Archive{Format: wa.Format, Artifact: a})
		}
		if len(wr.Patches) > 0 {
			r.Patches = make([]Patch, 0, len(wr.Patches))
		}
		for j, wp := range wr.Patches {
			a, err := fromWireArtifact(fmt.Sprintf("%s.patches[%d]", where, j), wp.Path, wp.SHA256, wp.Size)
			if err != nil {
				return nil, err
			}
			r.Patches = append(r.Patches, Patch{From: wp.From, To: wp.To, Artifact: a})
		}
		m.Releases = append(m.Releases, r)
	}
	return m, nil
}

func fromWireArtifact(where, path, sum string, size int64) (Artifact, error) {
	h, err := parseHash(where+".sha256", sum)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Path: path, Size: size, SHA256: h}, nil
}

func fromWireEntries(where string, ws []wireEntry) ([]tree.Entry, error) {
	out := make([]tree.Entry, 0, len(ws))
	for i, w := range ws {
		at := fmt.Sprintf("%s[%d] (%q)", where, i, w.Path)
		e := tree.Entry{Path: w.Path, Type: tree.Type(w.Type), Target: w.Target}
		switch e.Type {
		case tree.File:
			if w.Size == nil || w.SHA256 == "" || w.Mode == "" || w.Target != "" {
				return nil, fmt.Errorf("%w: %s: a file has exactly mode, size and sha256", ErrMalformed, at)
			}
			e.Size = *w.Size
			var err error
			if e.SHA256, err = parseHash(at+".sha256", w.SHA256); err != nil {
				return nil, err
			}
			if e.Mode, err = parseMode(at, w.Mode); err != nil {
				return nil, err
			}
		case tree.Dir:
			if w.Size != nil || w.SHA256 != "" || w.Mode == "" || w.Target != "" {
				return nil, fmt.Errorf("%w: %s: a dir has exactly mode", ErrMalformed, at)
			}
			var err error
			if e.Mode, err = parseMode(at, w.Mode); err != nil {
				return nil, err
			}
		case tree.Symlink:
			if w.Size != nil || w.SHA256 != "" || w.Mode != "" || w.Target == "" {
				return nil, fmt.Errorf("%w: %s: a symlink has exactly target", ErrMalformed, at)
			}
			e.Mode = 0o777 // as tree.Scan reports symlinks
		default:
			return nil, fmt.Errorf("%w: %s: type %q is not file, dir or symlink", ErrMalformed, at, w.Type)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil || t.Format(timeLayout) != s {
		return time.Time{}, fmt.Errorf("%w: %s %q is not an RFC 3339 UTC time of the form 2006-01-02T15:04:05Z", ErrMalformed, field, s)
	}
	return t, nil
}

func parseHash(field, s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 64 || strings.ToLower(s) != s {
		return h, fmt.Errorf("%w: %s %q is not 64 lowercase hex digits", ErrMalformed, field, s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: %s %q is not 64 lowercase hex digits", ErrMalformed, field, s)
	}
	return h, nil
}

func parseMode(where, s string) (fs.FileMode, error) {
	if len(s) != 4 || s[0] != '0' {
		return 0, fmt.Errorf("%w: %s: mode %q is not 4 octal digits 0000..0777", ErrMalformed, where, s)
	}
	var m fs.FileMode
	for _, c := range s[1:] {
		if c < '0' || c > '7' {
			return 0, fmt.Errorf("%w: %s: mode %q is not 4 octal digits 0000..0777", ErrMalformed, where, s)
		}
		m = m<<3 | fs.FileMode(c-'0')
	}
	return m, nil
}

// validName reports whether s is a valid app or channel name.
func validName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '-')) {
			return false
		}
	}
	return true
}

// validateEntries checks a tree's entries: safe paths, sorted and unique,
// every parent listed as a directory, no two paths equal when case is
// ignored (they would collide on Windows and macOS), fields as the type
// requires, symlinks inside the tree.
func validateEntries(where string, es []tree.Entry) error {
	seen := make(map[string]tree.Type, len(es))
	folded := make(map[string]string, len(es))
	for i, e := range es {
		at := fmt.Sprintf("%s[%d] (%q)", where, i, e.Path)
		if err := tree.CheckPath(e.Path); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrMalformed, at, err)
		}
		if i > 0 && es[i-1].Path >= e.Path {
			return fmt.Errorf("%w: %s: entries must be sorted by path, bytewise, without duplicates (tree.Sort); %q comes after it", ErrMalformed, at, es[i-1].Path)
		}
		if j := strings.LastIndexByte(e.Path, '/'); j >= 0 {
			if seen[e.Path[:j]] != tree.Dir {
				return fmt.Errorf("%w: %s: parent %q is not listed as a dir", ErrMalformed, at, e.Path[:j])
			}
		}
		low := strings.ToLower(e.Path)
		if other, ok := folded[low]; ok {
			return fmt.Errorf("%w: %s: same name as %q when case is ignored (collides on Windows and macOS)", ErrMalformed, at, other)
		}
		folded[low] = e.Path
		seen[e.Path] = e.Type
		if e.Mode&^fs.ModePerm != 0 {
			return fmt.Errorf("%w: %s: mode %v has bits beyond 0777", ErrMalformed, at, e.Mode)
		}
		switch e.Type {
		case tree.File:
			if e.Size < 0 || e.Size > MaxSafeInteger || e.Target != "" {
				return fmt.Errorf("%w: %s: file needs a size in 0..2^53-1 and no target", ErrMalformed, at)
			}
			if e.SHA256 == ([32]byte{}) {
				return fmt.Errorf("%w: %s: file has no SHA-256 (scan with tree.ScanOptions{Hash: true})", ErrMalformed, at)
			}
		case tree.Dir:
			if e.Size != 0 || e.SHA256 != ([32]byte{}) || e.Target != "" {
				return fmt.Errorf("%w: %s: dir must have no size, hash or target", ErrMalformed, at)
			}
		case tree.Symlink:
			if e.Size != 0 || e.SHA256 != ([32]byte{}) || (e.Mode != 0 && e.Mode != 0o777) {
				return fmt.Errorf("%w: %s: symlink must have no size or hash, and mode 0777 or 0", ErrMalformed, at)
			}
			if !utf8.ValidString(e.Target) || strings.ContainsFunc(e.Target, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return fmt.Errorf("%w: %s: symlink target %q is not printable UTF-8", ErrMalformed, at, e.Target)
			}
			if err := tree.CheckLink(e.Path, e.Target); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrMalformed, at, err)
			}
		default:
			return fmt.Errorf("%w: %s: type %q is not file, dir or symlink", ErrMalformed, at, e.Type)
		}
	}
	// As a whole tree: names that collide after Unicode normalization and
	// case folding, symlinks that escape through other symlinks.
	if err := tree.CheckEntries(es); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, where, err)
	}
	return nil
}

// Validate checks every rule of the format that needs no signature, key or
// clock:
//   - Schema is SchemaVersion; App and Channels are valid names, Channels
//     non-empty and unique; 1 <= Sequence <= MaxSafeInteger; Issued and
//     Expires set, whole seconds, Expires after Issued;
//   - every release: Version a strict semantic version of at most
//     MaxVersionLen bytes, unique in the manifest (semver equality: build
//     metadata is ignored, so 1.0.0+a and 1.0.0+b collide); Channel
//     declared; exactly one of Files (non-empty) and FileList; inline Files
//     valid (sorted, unique, parents listed, safe paths and links) and
//     hashing to TreeDigest; at least one archive, one per format;
//   - every patch: To equal to the release's version, From an existing
//     release and lower than To, one patch per From;
//   - every artifact (archive, patch, file list): path safe (tree.CheckPath),
//     not manifest.json or its signature, unique across the manifest, and
//     naming its version(s) (the version string must appear in the path,
//     not preceded by a digit or '.' nor followed by a digit: an archive or
//     file list of 1.2.0 in "app-1.2.0.tar.zst" or "1.2.0/app.tar.zst", a
//     patch in "app-1.1.0-1.2.0.dup"); size > 0 (file lists at most
//     MaxFileListSize); archive paths end in "." + Format.
//
// It returns the first problem found, wrapping ErrMalformed (ErrSchema for
// the schema version). Cost: linear in the number of entries, plus one
// tree.Digest per inline file list.
func (m *Manifest) Validate() error {
	if m.Schema != SchemaVersion {
		return fmt.Errorf("%w: schema %d, this package knows %d", ErrSchema, m.Schema, SchemaVersion)
	}
	if !validName(m.App) {
		return fmt.Errorf("%w: app %q: want 1..%d of [A-Za-z0-9._-], starting with a letter or digit", ErrMalformed, m.App, MaxNameLen)
	}
	if len(m.Channels) == 0 {
		return fmt.Errorf("%w: no channels declared", ErrMalformed)
	}
	channels := make(map[string]bool, len(m.Channels))
	for _, c := range m.Channels {
		if !validName(c) {
			return fmt.Errorf("%w: channel %q: want 1..%d of [A-Za-z0-9._-], starting with a letter or digit", ErrMalformed, c, MaxNameLen)
		}
		if channels[c] {
			return fmt.Errorf("%w: channel %q declared twice", ErrMalformed, c)
		}
		channels[c] = true
	}
	if m.Sequence == 0 || m.Sequence > MaxSafeInteger {
		return fmt.Errorf("%w: sequence %d outside 1..2^53-1", ErrMalformed, m.Sequence)
	}
	if m.Issued.IsZero() || m.Expires.IsZero() {
		return fmt.Errorf("%w: issued and expires must both be set", ErrMalformed)
	}
	if m.Issued.Nanosecond() != 0 || m.Expires.Nanosecond() != 0 {
		return fmt.Errorf("%w: issued and expires must be whole seconds", ErrMalformed)
	}
	if y := m.Expires.UTC().Year(); y > 9999 || m.Issued.UTC().Year() < 1 {
		return fmt.Errorf("%w: issued or expires outside years 0001..9999", ErrMalformed)
	}
	if !m.Expires.After(m.Issued) {
		return fmt.Errorf("%w: expires %s is not after issued %s", ErrMalformed, m.Expires.UTC().Format(timeLayout), m.Issued.UTC().Format(timeLayout))
	}

	versions := make(map[string]int, len(m.Releases)) // canonical semver -> index
	for i := range m.Releases {
		r := &m.Releases[i]
		v, err := parseVersion(r.Version)
		if err != nil {
			return fmt.Errorf("%w: releases[%d]: %v", ErrMalformed, i, err)
		}
		key := versionKey(v)
		if j, dup := versions[key]; dup {
			return fmt.Errorf("%w: releases[%d]: version %q equals that of releases[%d] (%q); versions must be unique (build metadata does not count)", ErrMalformed, i, r.Version, j, m.Releases[j].Version)
		}
		versions[key] = i
	}

	paths := map[string]string{ManifestName: "the manifest", SignatureName: "the manifest signature"}
	claim := func(where, p string) error {
		if other, ok := paths[p]; ok {
			return fmt.Errorf("%w: %s: path %q is already used by %s", ErrMalformed, where, p, other)
		}
		paths[p] = where
		return nil
	}
	for i := range m.Releases {
		r := &m.Releases[i]
		where := fmt.Sprintf("release %s", r.Version)
		if !channels[r.Channel] {
			return fmt.Errorf("%w: %s: channel %q is not declared (channels: %s)", ErrMalformed, where, r.Channel, strings.Join(m.Channels, ", "))
		}
		switch {
		case r.FileList != nil && r.Files != nil:
			return fmt.Errorf("%w: %s: has both inline files and a file_list; keep one", ErrMalformed, where)
		case r.FileList != nil:
			a := Artifact(*r.FileList)
			if err := checkArtifact(where+": file_list", a, r.Version); err != nil {
				return err
			}
			if a.Size > MaxFileListSize {
				return fmt.Errorf("%w: %s: file_list of %d bytes exceeds the %d-byte cap", ErrMalformed, where, a.Size, MaxFileListSize)
			}
			if err := claim(where+" file_list", a.Path); err != nil {
				return err
			}
		case len(r.Files) == 0:
			return fmt.Errorf("%w: %s: no files: list the tree inline in files or reference a file_list", ErrMalformed, where)
		default:
			if err := validateEntries(where+": files", r.Files); err != nil {
				return err
			}
			if d := tree.Digest(r.Files); d != r.TreeDigest {
				return fmt.Errorf("%w: %s: tree_digest %x does not match the files listed (digest %x)", ErrMalformed, where, r.TreeDigest, d)
			}
		}

		if len(r.Archives) == 0 {
			return fmt.Errorf("%w: %s: no full archive (at least one is needed for fresh installs and fallback)", ErrMalformed, where)
		}
		formats := map[string]bool{}
		for j, a := range r.Archives {
			at := fmt.Sprintf("%s: archives[%d]", where, j)
			if a.Format != FormatTarZst && a.Format != FormatTarGz {
				return fmt.Errorf("%w: %s: format %q is not %q or %q", ErrMalformed, at, a.Format, FormatTarZst, FormatTarGz)
			}
			if formats[a.Format] {
				return fmt.Errorf("%w: %s: a second %s archive", ErrMalformed, at, a.Format)
			}
			formats[a.Format] = true
			if err := checkArtifact(at, a.Artifact, r.Version); err != nil {
				return err
			}
			if !strings.HasSuffix(a.Path, "."+a.Format) {
				return fmt.Errorf("%w: %s: path %q does not end in .%s", ErrMalformed, at, a.Path, a.Format)
			}
			if err := claim(at, a.Path); err != nil {
				return err
			}
		}

		to, _ := parseVersion(r.Version)
		froms := map[string]bool{}
		for j, p := range r.Patches {
			at := fmt.Sprintf("%s: patches[%d] (%s -> %s)", where, j, p.From, p.To)
			if p.To != r.Version {
				return fmt.Errorf("%w: %s: to %q must be the release's own version %q (patches are listed under their target)", ErrMalformed, at, p.To, r.Version)
			}
			from, err := parseVersion(p.From)
			if err != nil {
				return fmt.Errorf("%w: %s: from: %v", ErrMalformed, at, err)
			}
			fi, ok := versions[versionKey(from)]
			if !ok || m.Releases[fi].Version != p.From {
				return fmt.Errorf("%w: %s: from %q is not a release in this manifest", ErrMalformed, at, p.From)
			}
			if from.Compare(to) >= 0 {
				return fmt.Errorf("%w: %s: from must be lower than to (patches only go forward)", ErrMalformed, at)
			}
			if froms[p.From] {
				return fmt.Errorf("%w: %s: a second patch from %s", ErrMalformed, at, p.From)
			}
			froms[p.From] = true
			if err := checkArtifact(at, p.Artifact, p.From, p.To); err != nil {
				return err
			}
			if err := claim(at, p.Path); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkArtifact checks an artifact's path, size and that its path names
// every version given.
func checkArtifact(where string, a Artifact, versions ...string) error {
	if err := tree.CheckPath(a.Path); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, where, err)
	}
	if a.Size <= 0 || a.Size > MaxSafeInteger {
		return fmt.Errorf("%w: %s: size %d outside 1..2^53-1", ErrMalformed, where, a.Size)
	}
	if a.SHA256 == ([32]byte{}) {
		return fmt.Errorf("%w: %s: sha256 is all zero", ErrMalformed, where)
	}
	for _, v := range versions {
		if !pathNames(a.Path, v) {
			return fmt.Errorf("%w: %s: path %q does not contain the version %q", ErrMalformed, where, a.Path, v)
		}
	}
	return nil
}

// pathNames reports whether version v occurs in path p as a whole: not
// preceded by a digit or '.', not followed by a digit.
func pathNames(p, v string) bool {
	for off := 0; ; {
		i := strings.Index(p[off:], v)
		if i < 0 {
			return false
		}
		i += off
		before := i == 0 || !(p[i-1] >= '0' && p[i-1] <= '9' || p[i-1] == '.')
		j := i + len(v)
		after := j == len(p) || !(p[j] >= '0' && p[j] <= '9')
		if before && after {
			return true
		}
		off = i + 1
	}
}
