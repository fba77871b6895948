package delta

// Directory bundles ("DUPB"; docs/FORMAT.md, "Directory bundle (DUPB)"):
// one stream that turns an OLD directory tree into a NEW one. This file
// holds the types, the byte layout (encoder helpers and the validating
// decoder) and ReadBundleIndex; bundle_diff.go writes bundles,
// bundle_apply.go applies them.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"path"
	"unicode/utf8"

	"github.com/deltaup/deltaup/internal/tree"
)

const (
	bundleMagic       = "DUPB"
	bundleVersion     = 1
	bundleHeaderSize  = 88
	bundleTrailerSize = sha256.Size

	// DefaultMaxEntries is BundleApplyOptions.MaxEntries when it is zero.
	DefaultMaxEntries = 1 << 20
	// DefaultMaxTotalSize is BundleApplyOptions.MaxTotalSize when it is
	// zero: 16 GiB of NEW files.
	DefaultMaxTotalSize = 16 << 30
)

// EntryKind says how a bundle entry makes its NEW path.
type EntryKind uint8

// Entry kinds, with their byte in the format.
const (
	// EntryDir: a directory (possibly empty).
	EntryDir EntryKind = 1
	// EntrySymlink: a symlink whose target stays inside the tree.
	EntrySymlink EntryKind = 2
	// EntryUnchanged: the OLD file at the same path, same content and mode.
	EntryUnchanged EntryKind = 3
	// EntryCopy: the content of an OLD file (another path: a rename or
	// move, or the same path with other mode bits).
	EntryCopy EntryKind = 4
	// EntryPatch: a native patch (DUPT) applied to an OLD file.
	EntryPatch EntryKind = 5
	// EntryNew: a native patch against an empty old file (in effect the
	// file compressed); no payload for an empty file.
	EntryNew EntryKind = 6
	// EntrySolid: the file's bytes come from the bundle's solid stream
	// (version 2 only; see bundle_solid.go): all solid files, in entry
	// order, coded as one native patch against the OLD tree's window.
	EntrySolid EntryKind = 7
	// EntrySolid2: the file's bytes come from the bundle's second solid
	// stream (version 3 only): its files, in entry order, coded as one
	// native patch against the window followed by the first solid stream,
	// so that a file copies from the new files of the first stream (a
	// package's .mjs from its .js).
	EntrySolid2 EntryKind = 8
)

func (k EntryKind) String() string {
	switch k {
	case EntryDir:
		return "dir"
	case EntrySymlink:
		return "symlink"
	case EntryUnchanged:
		return "unchanged"
	case EntryCopy:
		return "copy"
	case EntryPatch:
		return "patch"
	case EntryNew:
		return "new"
	case EntrySolid:
		return "solid"
	case EntrySolid2:
		return "solid2"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// BundleEntry describes one entry of a bundle: one path of the NEW tree.
type BundleEntry struct {
	Kind EntryKind
	Path string      // relative, slash-separated (tree.CheckPath)
	Mode fs.FileMode // permission bits; files and directories
	// Files: size and SHA-256 of the NEW file. The bundle does not repeat
	// them: they are those of the payload's patch header (patch, new) or
	// of the OLD source file (unchanged, copy; zero in a BundleIndex, which
	// is read without the OLD tree).
	Size   int64
	SHA256 [32]byte
	// Unchanged, copy and patch: the OLD file the content comes from
	// (equal to Path when it is the same path).
	Source string
	// Symlink: the target (relative, inside the tree: tree.CheckLink).
	Target string
	// Patch and new: length of the payload (a native DUPT patch; 0 for an
	// empty new file) and its method.
	PayloadSize int64
	Method      Method
}

func (e *BundleEntry) treeEntry() tree.Entry {
	te := tree.Entry{Path: e.Path, Mode: e.Mode, Size: e.Size, SHA256: e.SHA256, Target: e.Target}
	switch {
	case e.Kind == EntryDir:
		te.Type = tree.Dir
	case e.Kind == EntrySymlink:
		te.Type, te.Mode = tree.Symlink, 0o777
	default:
		te.Type = tree.File
	}
	return te
}

// BundleCounts counts a bundle's entries by kind, and its removals.
type BundleCounts struct {
	Dirs, Symlinks, Unchanged, Copied, Patched, New int
	// Solid: files carried by the solid streams (EntrySolid, EntrySolid2).
	Solid int
	// Removed: paths of the OLD tree that the NEW tree does not have (or
	// has with another type).
	Removed int
}

// Files is the number of file entries.
func (c BundleCounts) Files() int { return c.Unchanged + c.Copied + c.Patched + c.New + c.Solid }

func (c *BundleCounts) add(k EntryKind) {
	switch k {
	case EntryDir:
		c.Dirs++
	case EntrySymlink:
		c.Symlinks++
	case EntryUnchanged:
		c.Unchanged++
	case EntryCopy:
		c.Copied++
	case EntryPatch:
		c.Patched++
	case EntryNew:
		c.New++
	case EntrySolid, EntrySolid2:
		c.Solid++
	}
}

// BundleIndex is the listing of a bundle, without the payloads.
type BundleIndex struct {
	OldDigest, NewDigest [32]byte // tree.Digest of the OLD and NEW trees
	NewSize              int64    // total size of the NEW files
	Entries              []BundleEntry
	Removed              []string // OLD paths absent from NEW, in path order
	Size                 int64    // bundle size in bytes
}

// Counts counts the index's entries by kind.
func (ix *BundleIndex) Counts() BundleCounts {
	var c BundleCounts
	for i := range ix.Entries {
		c.add(ix.Entries[i].Kind)
	}
	c.Removed = len(ix.Removed)
	return c
}

// BundleApplyOptions tune ApplyBundle and ReadBundleIndex. The zero value
// is valid. Every length a bundle declares is checked against these caps
// before anything is allocated for it.
type BundleApplyOptions struct {
	// MaxEntries caps the number of entries, and separately the number of
	// removals; default DefaultMaxEntries (1 Mi). The listing is held in
	// memory: about (path length + 100) bytes per entry.
	MaxEntries int
	// MaxFileSize caps each NEW file and each OLD file read as a patch
	// source; default DefaultMaxNewSize (1 GiB). A payload may not exceed
	// what a native patch of its file can be (new size + 1/64 + 64 KiB +
	// header).
	MaxFileSize int64
	// MaxTotalSize caps the total size of the NEW files; default
	// DefaultMaxTotalSize (16 GiB).
	MaxTotalSize int64
	// NoSync skips the fsyncs of the files and directories written (for
	// tests, or a caller that syncs the tree itself).
	NoSync bool
	// SkipOld, when set, leaves out of the OLD tree the entries it
	// reports true for (slash-separated paths relative to the OLD root; a
	// skipped directory takes its contents along): the OLD tree the bundle
	// was made from is then looked for among the rest, e.g. an installed
	// release beside the user's own files.
	SkipOld func(rel string) bool
}

func (o *BundleApplyOptions) validate() error {
	if o.MaxEntries < 0 || o.MaxFileSize < 0 || o.MaxTotalSize < 0 {
		return errors.New("delta: negative bundle cap")
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxFileSize == 0 {
		o.MaxFileSize = DefaultMaxNewSize
	}
	o.MaxFileSize = min(o.MaxFileSize, MaxFileSize)
	if o.MaxTotalSize == 0 {
		o.MaxTotalSize = DefaultMaxTotalSize
	}
	return nil
}

// maxPayload is the largest payload a file of size n may have: a native
// patch header plus the largest body Apply accepts by default.
func maxPayload(n int64) int64 { return headerSize + n + n/64 + 64<<10 }

// ---- encoding ----

type bundleHeader struct {
	version              byte // bundleVersion, or bundleVersionSolid(2) with solid streams
	entries              uint32
	newSize              int64
	oldDigest, newDigest [32]byte
}

func (h *bundleHeader) bytes() []byte {
	b := make([]byte, bundleHeaderSize)
	copy(b, bundleMagic)
	b[4] = max(h.version, bundleVersion)
	binary.LittleEndian.PutUint32(b[8:], h.entries)
	binary.LittleEndian.PutUint64(b[12:], uint64(h.newSize))
	copy(b[20:], h.oldDigest[:])
	copy(b[52:], h.newDigest[:])
	binary.LittleEndian.PutUint32(b[84:], crc32.Checksum(b[:84], castagnoli))
	return b
}

// appendFrontCoded appends p as (bytes shared with prev, rest length, rest).
func appendFrontCoded(b []byte, prev, p string) []byte {
	n := 0
	for n < len(prev) && n < len(p) && prev[n] == p[n] {
		n++
	}
	b = binary.AppendUvarint(b, uint64(n))
	b = binary.AppendUvarint(b, uint64(len(p)-n))
	return append(b, p[n:]...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendEntry appends the metadata of e (everything but the payload).
func appendEntry(b []byte, e *BundleEntry, prev string) []byte {
	b = append(b, byte(e.Kind))
	b = appendFrontCoded(b, prev, e.Path)
	switch e.Kind {
	case EntryDir:
		b = binary.AppendUvarint(b, uint64(e.Mode.Perm()))
	case EntrySymlink:
		b = appendString(b, e.Target)
	case EntryUnchanged:
	case EntrySolid, EntrySolid2:
		b = binary.AppendUvarint(b, uint64(e.Mode.Perm()))
		b = binary.AppendUvarint(b, uint64(e.Size))
		b = append(b, e.SHA256[:]...)
	default:
		b = binary.AppendUvarint(b, uint64(e.Mode.Perm()))
		if e.Kind == EntryCopy || e.Kind == EntryPatch {
			src := e.Source
			if src == e.Path {
				src = ""
			}
			b = appendString(b, src)
		}
		if e.Kind == EntryPatch || e.Kind == EntryNew {
			b = binary.AppendUvarint(b, uint64(e.PayloadSize))
		}
	}
	return b
}

// ---- decoding ----

// bundleReader hashes and counts every byte read through it.
type bundleReader struct {
	r   *bufio.Reader
	h   hash.Hash
	n   int64
	one [1]byte
}

func (b *bundleReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	return n, err
}

func (b *bundleReader) ReadByte() (byte, error) {
	c, err := b.r.ReadByte()
	if err != nil {
		return 0, err
	}
	b.one[0] = c
	b.h.Write(b.one[:])
	b.n++
	return c, nil
}

func truncated(what string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: bundle truncated in %s", ErrCorrupt, what)
	}
	return fmt.Errorf("reading bundle (%s): %w", what, err)
}

// uvarint reads a minimally encoded unsigned LEB128 integer of at most 64
// bits.
func (b *bundleReader) uvarint(what string) (uint64, error) {
	var x uint64
	for i := 0; ; i++ {
		c, err := b.ReadByte()
		if err != nil {
			return 0, truncated(what, err)
		}
		if i == 9 && c > 1 {
			return 0, fmt.Errorf("%w: %s: integer overflows 64 bits", ErrCorrupt, what)
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, fmt.Errorf("%w: %s: integer not minimally encoded", ErrCorrupt, what)
			}
			return x, nil
		}
	}
}

func (b *bundleReader) full(p []byte, what string) error {
	if _, err := io.ReadFull(b, p); err != nil {
		return truncated(what, err)
	}
	return nil
}

// bundleDecoder reads and validates a bundle's structure entry by entry.
// After an entry with a payload the caller consumes the payload (see
// payload) before the next call of next.
//
// With old set (ApplyBundle), unchanged and copy entries take their size,
// hash (and, unchanged, mode) from the OLD tree, and the decoder checks the
// NEW total size and digest; without (ReadBundleIndex) it cannot.
type bundleDecoder struct {
	r       *bundleReader
	o       *BundleApplyOptions
	old     map[string]tree.Entry
	hdr     bundleHeader
	n       int // entries read
	prev    string
	dirs    map[string]bool
	folded  map[string]string // tree.FoldKey of each path -> path
	total   int64
	phdr    []byte            // the last entry's payload header
	pending *io.LimitedReader // and the rest of its payload
	tes     []tree.Entry
	removed []string
	solid   solidState
}

func newBundleDecoder(r io.Reader, o *BundleApplyOptions) (*bundleDecoder, error) {
	d := &bundleDecoder{
		r:      &bundleReader{r: bufio.NewReaderSize(r, 64<<10), h: sha256.New()},
		o:      o,
		dirs:   map[string]bool{},
		folded: map[string]string{},
	}
	h := make([]byte, bundleHeaderSize)
	n, err := io.ReadFull(d.r, h)
	if n >= 4 && string(h[:4]) != bundleMagic {
		if string(h[:4]) == nativeMagic || (n >= 8 && string(h[:8]) == bsdiffMagic) {
			return nil, fmt.Errorf("%w: a single-file patch, not a directory bundle", ErrFormat)
		}
		return nil, fmt.Errorf("%w: unknown magic %q (want %q)", ErrFormat, h[:4], bundleMagic)
	}
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: bundle shorter than its %d-byte header", ErrCorrupt, bundleHeaderSize)
		}
		return nil, fmt.Errorf("reading bundle: %w", err)
	}
	if binary.LittleEndian.Uint32(h[84:]) != crc32.Checksum(h[:84], castagnoli) {
		return nil, fmt.Errorf("%w: bundle header checksum mismatch", ErrCorrupt)
	}
	if h[4] < bundleVersion || h[4] > bundleVersionSolid2 {
		return nil, fmt.Errorf("%w: bundle version %d (this build reads %d to %d; update deltaup)", ErrFormat, h[4], bundleVersion, bundleVersionSolid2)
	}
	d.hdr.version = h[4]
	if h[5] != 0 || h[6] != 0 || h[7] != 0 {
		return nil, fmt.Errorf("%w: reserved bundle header bytes are set", ErrCorrupt)
	}
	d.hdr.entries = binary.LittleEndian.Uint32(h[8:])
	ns := binary.LittleEndian.Uint64(h[12:])
	copy(d.hdr.oldDigest[:], h[20:52])
	copy(d.hdr.newDigest[:], h[52:84])
	if uint64(d.hdr.entries) > uint64(o.MaxEntries) {
		return nil, fmt.Errorf("%w: bundle has %d entries, over the cap of %d", ErrTooLarge, d.hdr.entries, o.MaxEntries)
	}
	if ns > uint64(o.MaxTotalSize) {
		return nil, fmt.Errorf("%w: new tree of %d bytes exceeds the cap of %d", ErrTooLarge, ns, o.MaxTotalSize)
	}
	d.hdr.newSize = int64(ns)
	return d, nil
}

func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// frontCoded reads a front-coded path following prev and checks it is safe
// and sorts strictly after prev.
func (d *bundleDecoder) frontCoded(prev, what string) (string, error) {
	pre, err := d.r.uvarint(what)
	if err != nil {
		return "", err
	}
	if pre > uint64(len(prev)) {
		return "", fmt.Errorf("%w: %s shares %d bytes with a %d-byte previous path", ErrCorrupt, what, pre, len(prev))
	}
	n, err := d.r.uvarint(what)
	if err != nil {
		return "", err
	}
	if n == 0 || n > uint64(tree.MaxPathLen)-pre {
		return "", fmt.Errorf("%w: %s: length %d+%d out of range", ErrCorrupt, what, pre, n)
	}
	b := make([]byte, pre+n)
	copy(b, prev[:pre])
	if err := d.r.full(b[pre:], what); err != nil {
		return "", err
	}
	p := string(b)
	if err := tree.CheckPath(p); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	if p <= prev {
		return "", fmt.Errorf("%w: %s %q does not sort after %q (duplicate or out of order)", ErrCorrupt, what, p, prev)
	}
	return p, nil
}

// str reads a length-prefixed string of at most tree.MaxPathLen bytes.
func (d *bundleDecoder) str(what string) (string, error) {
	n, err := d.r.uvarint(what)
	if err != nil {
		return "", err
	}
	if n > tree.MaxPathLen {
		return "", fmt.Errorf("%w: %s of %d bytes (at most %d)", ErrCorrupt, what, n, tree.MaxPathLen)
	}
	b := make([]byte, n)
	if err := d.r.full(b, what); err != nil {
		return "", err
	}
	return string(b), nil
}

func (d *bundleDecoder) mode(what string) (fs.FileMode, error) {
	m, err := d.r.uvarint(what)
	if err != nil {
		return 0, err
	}
	if m > 0o777 {
		return 0, fmt.Errorf("%w: %s: mode %#o has bits above 0777", ErrCorrupt, what, m)
	}
	return fs.FileMode(m), nil
}

// next reads the next entry's metadata.
func (d *bundleDecoder) next() (BundleEntry, error) {
	var e BundleEntry
	if d.pending != nil && d.pending.N != 0 {
		return e, errors.New("delta: internal error: bundle payload not consumed")
	}
	d.pending, d.phdr = nil, nil
	what := fmt.Sprintf("entry %d", d.n)
	k, err := d.r.ReadByte()
	if err != nil {
		return e, truncated(what, err)
	}
	e.Kind = EntryKind(k)
	if e.Kind < EntryDir || e.Kind > EntrySolid2 || (e.Kind == EntrySolid && d.hdr.version < bundleVersionSolid) || (e.Kind == EntrySolid2 && d.hdr.version != bundleVersionSolid2) {
		return e, fmt.Errorf("%w: %s: unknown kind %d", ErrCorrupt, what, k)
	}
	if e.Path, err = d.frontCoded(d.prev, what+" path"); err != nil {
		return e, err
	}
	what = fmt.Sprintf("entry %q", e.Path)
	if dir := path.Dir(e.Path); dir != "." && !d.dirs[dir] {
		return e, fmt.Errorf("%w: %s: parent %q is not a directory of the bundle", ErrCorrupt, what, dir)
	}
	// Two paths one file on Windows or macOS would overwrite each other.
	fk := tree.FoldKey(e.Path)
	if other, ok := d.folded[fk]; ok {
		return e, fmt.Errorf("%w: %w: %q and %q", ErrCorrupt, tree.ErrCollision, other, e.Path)
	}
	d.folded[fk] = e.Path
	switch e.Kind {
	case EntryDir:
		if e.Mode, err = d.mode(what); err != nil {
			return e, err
		}
		d.dirs[e.Path] = true
	case EntrySolid, EntrySolid2:
		if err := d.solidFields(&e, what); err != nil {
			return e, err
		}
	case EntrySymlink:
		if e.Target, err = d.str(what + " target"); err != nil {
			return e, err
		}
		if !validText(e.Target) {
			return e, fmt.Errorf("%w: %s: target is not valid UTF-8 text", ErrCorrupt, what)
		}
		if err := tree.CheckLink(e.Path, e.Target); err != nil {
			return e, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		e.Mode = 0o777
	default:
		if err := d.fileFields(&e, what); err != nil {
			return e, err
		}
	}
	d.prev = e.Path
	d.n++
	d.tes = append(d.tes, e.treeEntry())
	return e, nil
}

func (d *bundleDecoder) fileFields(e *BundleEntry, what string) error {
	var err error
	if e.Kind != EntryUnchanged {
		if e.Mode, err = d.mode(what); err != nil {
			return err
		}
	}
	if e.Kind != EntryNew {
		e.Source = e.Path
	}
	if e.Kind == EntryCopy || e.Kind == EntryPatch {
		src, err := d.str(what + " source")
		if err != nil {
			return err
		}
		switch {
		case src == e.Path:
			return fmt.Errorf("%w: %s: source spelled out though it is the entry's own path", ErrCorrupt, what)
		case src != "":
			if err := tree.CheckPath(src); err != nil {
				return fmt.Errorf("%w: %s source: %w", ErrCorrupt, what, err)
			}
			e.Source = src
		}
	}
	var oe tree.Entry
	if d.old != nil && e.Kind != EntryNew {
		var ok bool
		if oe, ok = d.old[e.Source]; !ok || oe.Type != tree.File {
			return fmt.Errorf("%w: %s: source %q is not a file of the old tree", ErrCorrupt, what, e.Source)
		}
		if e.Kind == EntryUnchanged || e.Kind == EntryCopy {
			e.Size, e.SHA256 = oe.Size, oe.SHA256
		}
		if e.Kind == EntryUnchanged {
			e.Mode = oe.Mode
		}
		if e.Kind == EntryPatch && oe.Size > d.o.MaxFileSize {
			return fmt.Errorf("%w: %s: old file %q of %d bytes exceeds the cap of %d", ErrTooLarge, what, e.Source, oe.Size, d.o.MaxFileSize)
		}
	}
	if e.Kind == EntryPatch || e.Kind == EntryNew {
		if err := d.payloadHeader(e, what); err != nil {
			return err
		}
	}
	if e.Size > d.o.MaxFileSize {
		return fmt.Errorf("%w: %s: file of %d bytes exceeds the cap of %d", ErrTooLarge, what, e.Size, d.o.MaxFileSize)
	}
	if d.old != nil {
		if d.total += e.Size; d.total > d.hdr.newSize {
			return fmt.Errorf("%w: %s: files add up to more than the header's %d bytes", ErrCorrupt, what, d.hdr.newSize)
		}
	}
	return nil
}

// A payload is a native patch without the parts the bundle already pins:
//
//	method     1 byte (MethodBsdiffCM .. MethodExeBsdiffCM2)
//	new size   uvarint (> 0)
//	new SHA-256 32 bytes
//	body       the native patch body, CRC-32C trailer included
//
// The old file's size and SHA-256 come from the OLD tree (its digest is
// checked first), so the reader rebuilds the full native header and hands
// the patch to Apply, which checks everything as for a standalone patch.
// This saves 64 bytes per file against embedding whole native patches.
const minPayloadHeader = 1 + 1 + 32

// compactPayload turns a native patch into a payload.
func compactPayload(patch []byte) ([]byte, error) {
	hd, err := parseHeader(patch[:headerSize])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(patch)-headerSize+minPayloadHeader+9)
	out = append(out, byte(hd.method))
	out = binary.AppendUvarint(out, uint64(hd.newSize))
	out = append(out, hd.newSum[:]...)
	return append(out, patch[headerSize:]...), nil
}

// payloadHeader reads the payload length and the payload's header, which
// gives the NEW file's size and hash, checks them against the caps, and
// rebuilds the native patch header (when the OLD tree is known).
func (d *bundleDecoder) payloadHeader(e *BundleEntry, what string) error {
	pl, err := d.r.uvarint(what + " payload length")
	if err != nil {
		return err
	}
	if pl == 0 {
		if e.Kind == EntryPatch {
			return fmt.Errorf("%w: %s: patch entry without a payload", ErrCorrupt, what)
		}
		e.Size, e.SHA256 = 0, sha256.Sum256(nil)
		return nil
	}
	if pl < minPayloadHeader+4 {
		return fmt.Errorf("%w: %s: payload of %d bytes is shorter than a payload header", ErrCorrupt, what, pl)
	}
	if pl > uint64(maxPayload(d.o.MaxFileSize)) {
		return fmt.Errorf("%w: %s: payload of %d bytes exceeds the cap of %d", ErrTooLarge, what, pl, maxPayload(d.o.MaxFileSize))
	}
	m, newSize, sum, hlen, err := d.payloadHead(what + " payload")
	if err != nil {
		return err
	}
	switch {
	case newSize == 0:
		return fmt.Errorf("%w: %s: payload for an empty file", ErrCorrupt, what)
	case newSize > uint64(d.o.MaxFileSize):
		return fmt.Errorf("%w: %s: file of %d bytes exceeds the cap of %d", ErrTooLarge, what, newSize, d.o.MaxFileSize)
	case pl > uint64(maxPayload(int64(newSize))):
		return fmt.Errorf("%w: %s: payload of %d bytes exceeds the cap of %d for a %d-byte file", ErrTooLarge, what, pl, maxPayload(int64(newSize)), newSize)
	case pl < uint64(hlen)+4:
		return fmt.Errorf("%w: %s: payload of %d bytes is shorter than its header", ErrCorrupt, what, pl)
	}
	bodyLen := int64(pl) - hlen
	e.Size, e.SHA256, e.Method, e.PayloadSize = int64(newSize), sum, m, int64(pl)
	d.phdr = nil
	if e.Kind == EntryNew {
		d.phdr = makeHeader(m, 0, e.Size, sha256.Sum256(nil), sum, bodyLen)
	} else if oe, ok := d.old[e.Source]; ok {
		d.phdr = makeHeader(m, oe.Size, e.Size, oe.SHA256, sum, bodyLen)
	}
	d.pending = &io.LimitedReader{R: d.r, N: bodyLen}
	return nil
}

// payload returns the last entry's payload: its header, then a reader of
// the rest (which the caller drains).
func (d *bundleDecoder) payload() ([]byte, *io.LimitedReader) { return d.phdr, d.pending }

// skipPayload discards the rest of the last entry's payload.
func (d *bundleDecoder) skipPayload() error {
	lr := d.pending
	if lr == nil {
		return nil
	}
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return truncated("payload", err)
	}
	if lr.N != 0 {
		return truncated("payload", io.ErrUnexpectedEOF)
	}
	return nil
}

// finish reads the removal list and the trailer after the last entry and
// checks that nothing follows and that the entries make the NEW digest.
func (d *bundleDecoder) finish() error {
	if d.pending != nil && d.pending.N != 0 {
		return errors.New("delta: internal error: bundle payload not consumed")
	}
	n, err := d.r.uvarint("removal count")
	if err != nil {
		return err
	}
	if n > uint64(d.o.MaxEntries) {
		return fmt.Errorf("%w: %d removals, over the cap of %d", ErrTooLarge, n, d.o.MaxEntries)
	}
	prev := ""
	for i := uint64(0); i < n; i++ {
		p, err := d.frontCoded(prev, fmt.Sprintf("removal %d", i))
		if err != nil {
			return err
		}
		d.removed = append(d.removed, p)
		prev = p
	}
	if err := d.solidSection(); err != nil {
		return err
	}
	sum := d.r.h.Sum(nil)
	var tr [bundleTrailerSize]byte
	if _, err := io.ReadFull(d.r.r, tr[:]); err != nil {
		return truncated("trailer", err)
	}
	if string(tr[:]) != string(sum) {
		return fmt.Errorf("%w: bundle checksum mismatch (trailer)", ErrCorrupt)
	}
	if _, err := d.r.r.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("reading bundle: %w", err)
		}
		return fmt.Errorf("%w: trailing data after the bundle", ErrCorrupt)
	}
	d.r.n += bundleTrailerSize
	// Each symlink stays inside the tree, also when resolving it follows
	// the others (CheckLink alone is lexical).
	links := map[string]string{}
	for _, e := range d.tes {
		if e.Type == tree.Symlink {
			links[e.Path] = e.Target
		}
	}
	if err := tree.CheckLinkChains(links); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if d.old == nil {
		return nil
	}
	if d.total != d.hdr.newSize {
		return fmt.Errorf("%w: files add up to %d bytes, header says %d", ErrCorrupt, d.total, d.hdr.newSize)
	}
	if tree.Digest(d.tes) != d.hdr.newDigest {
		return fmt.Errorf("%w: the entries do not make the header's NEW tree digest", ErrCorrupt)
	}
	return nil
}

// ReadBundleIndex reads a whole bundle from r, skipping the payloads, and
// returns its listing. It checks everything ApplyBundle checks that needs
// neither the OLD tree nor the payloads' bodies: caps, paths, order,
// parents, symlink targets, payload headers and the trailer checksum.
// Without the OLD tree, unchanged and copy entries have no size or hash
// here, and unchanged ones no mode.
func ReadBundleIndex(ctx context.Context, r io.Reader, opts *BundleApplyOptions) (*BundleIndex, error) {
	var o BundleApplyOptions
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	d, err := newBundleDecoder(r, &o)
	if err != nil {
		return nil, err
	}
	ix := &BundleIndex{OldDigest: d.hdr.oldDigest, NewDigest: d.hdr.newDigest, NewSize: d.hdr.newSize}
	for range d.hdr.entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := d.next()
		if err != nil {
			return nil, err
		}
		if err := d.skipPayload(); err != nil {
			return nil, fmt.Errorf("entry %q: %w", e.Path, err)
		}
		ix.Entries = append(ix.Entries, e)
	}
	d.solid.apply = func(int) error { return d.skipPayload() }
	if err := d.finish(); err != nil {
		return nil, err
	}
	ix.Removed = d.removed
	ix.Size = d.r.n
	return ix, nil
}
