package delta

// Tree-wide matching ("solid" bundles, version 2; docs/FORMAT.md, "Directory
// bundle, version 2: the solid stream"). Every NEW file that would need a
// payload is instead put, in entry order, into one stream, coded as ONE
// native patch whose old file is the "tree window": the OLD tree's regular
// files concatenated in path order (up to TreeWindowMax bytes). A new file
// then copies from any file of the OLD tree, and from the new files before
// it, as a solid archive would: renames, splits and code duplicated across
// files cost almost nothing. Each file of the stream is still verified by
// its own size and SHA-256 as it comes out. DiffBundle keeps the solid form
// only when the bundle gets smaller than with per-file payloads.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/deltaup/deltaup/internal/tree"
)

const (
	// bundleVersionSolid is the version of a bundle with a solid stream.
	bundleVersionSolid = 2
	// bundleVersionSolid2 is the version of a bundle with two solid
	// streams, the second coded against the window and the first.
	bundleVersionSolid2 = 3
	// TreeWindowMax caps the tree window: OLD files are taken in path order
	// as long as the running total stays at most this size (a file that
	// would pass it is left out, and the next ones are still tried).
	// Applying a solid bundle holds the window in memory.
	TreeWindowMax = 128 << 20
	// solidMaxNew caps the solid stream (the NEW files it carries, in
	// total); the writer uses no solid stream above it.
	solidMaxNew = 128 << 20
)

// solidState is the decoder's view of the solid streams.
type solidState struct {
	part [2]solidPart // the first stream (EntrySolid) and the second (EntrySolid2)
	// apply consumes the payload of stream i (d.pending) once its header is
	// read; ReadBundleIndex skips it, ApplyBundle decodes it.
	apply func(i int) error
}

// solidPart is one solid stream.
type solidPart struct {
	n       int   // entries read
	total   int64 // their total size: the stream's length
	method  Method
	sum     [32]byte // SHA-256 of the stream
	bodyLen int64
	size    int64 // payload length
}

// solidFields reads the fields of a solid entry: mode, size, SHA-256.
func (d *bundleDecoder) solidFields(e *BundleEntry, what string) error {
	var err error
	if e.Mode, err = d.mode(what); err != nil {
		return err
	}
	n, err := d.r.uvarint(what + " size")
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %s: solid entry for an empty file", ErrCorrupt, what)
	}
	if n > uint64(d.o.MaxFileSize) {
		return fmt.Errorf("%w: %s: file of %d bytes exceeds the cap of %d", ErrTooLarge, what, n, d.o.MaxFileSize)
	}
	if err := d.r.full(e.SHA256[:], what+" hash"); err != nil {
		return err
	}
	e.Size = int64(n)
	sp := &d.solid.part[0]
	if e.Kind == EntrySolid2 {
		sp = &d.solid.part[1]
	}
	if sp.total += e.Size; sp.total > MaxFileSize || d.solid.part[0].total+d.solid.part[1].total > MaxFileSize {
		return fmt.Errorf("%w: %s: solid streams of more than %d bytes", ErrTooLarge, what, int64(MaxFileSize))
	}
	sp.n++
	if d.old != nil {
		if d.total += e.Size; d.total > d.hdr.newSize {
			return fmt.Errorf("%w: %s: files add up to more than the header's %d bytes", ErrCorrupt, what, d.hdr.newSize)
		}
	}
	return nil
}

// solidSection reads each solid stream's length and payload header
// (versions 2 and 3, after the removal list), has d.solid.apply consume the
// payload, and checks it was consumed whole.
func (d *bundleDecoder) solidSection() error {
	if d.hdr.version < bundleVersionSolid {
		return nil
	}
	if d.solid.part[0].n == 0 || (d.hdr.version == bundleVersionSolid2) != (d.solid.part[1].n > 0) {
		return fmt.Errorf("%w: a version %d bundle without its solid entries", ErrCorrupt, d.hdr.version)
	}
	for i := range d.solid.part {
		sp := &d.solid.part[i]
		if sp.n == 0 {
			continue
		}
		what := "solid stream"
		if i == 1 {
			what = "second solid stream"
		}
		pl, err := d.r.uvarint(what + " length")
		if err != nil {
			return err
		}
		if pl < minPayloadHeader+4 {
			return fmt.Errorf("%w: %s of %d bytes is shorter than a payload header", ErrCorrupt, what, pl)
		}
		if pl > uint64(maxPayload(sp.total)) {
			return fmt.Errorf("%w: %s of %d bytes exceeds the cap of %d for %d bytes of files", ErrTooLarge, what, pl, maxPayload(sp.total), sp.total)
		}
		m, ns, sum, hlen, err := d.payloadHead(what)
		if err != nil {
			return err
		}
		if ns != uint64(sp.total) {
			return fmt.Errorf("%w: %s of %d bytes, its entries add up to %d", ErrCorrupt, what, ns, sp.total)
		}
		sp.sum = sum
		if pl < uint64(hlen)+4 {
			return fmt.Errorf("%w: %s of %d bytes is shorter than its header", ErrCorrupt, what, pl)
		}
		sp.method, sp.bodyLen, sp.size = m, int64(pl)-hlen, int64(pl)
		d.pending = &io.LimitedReader{R: d.r, N: sp.bodyLen}
		apply := d.solid.apply
		if apply == nil {
			apply = func(int) error { return d.skipPayload() }
		}
		if err := apply(i); err != nil {
			return err
		}
		if d.pending.N != 0 {
			return fmt.Errorf("%w: %s longer than its patch", ErrCorrupt, what)
		}
	}
	return nil
}

// payloadHead reads the head of a payload (entry or solid stream): method,
// new size, new SHA-256; hlen is its length in bytes.
func (d *bundleDecoder) payloadHead(what string) (m Method, newSize uint64, sum [32]byte, hlen int64, err error) {
	var mb [1]byte
	if err = d.r.full(mb[:], what+" method"); err != nil {
		return
	}
	if m = Method(mb[0]); m < MethodBsdiffCM || m > lastMethod {
		err = fmt.Errorf("%w: %s method %d", ErrFormat, what, mb[0])
		return
	}
	before := d.r.n
	if newSize, err = d.r.uvarint(what + " size"); err != nil {
		return
	}
	hlen = 1 + (d.r.n - before) + 32
	err = d.r.full(sum[:], what+" hash")
	return
}

// windowFiles returns the OLD files of the tree window, in window order:
// first the OLD files at the solid entries' paths, in entry order (so that
// each new file and its old version sit at about the same distance in the
// window and the stream: the copy offsets change little from file to
// file), then the other OLD files in path order; regular files of size > 0
// only, each taken only if the running total stays at most TreeWindowMax.
func windowFiles(oldEs []tree.Entry, solidPaths []string) ([]tree.Entry, int64) {
	byPath := make(map[string]int, len(oldEs))
	var rest []tree.Entry
	for i, e := range oldEs {
		if e.Type == tree.File && e.Size > 0 {
			byPath[e.Path] = i
			rest = append(rest, e)
		}
	}
	slices.SortFunc(rest, func(a, b tree.Entry) int { return strings.Compare(a.Path, b.Path) })
	var out []tree.Entry
	var total int64
	taken := map[string]bool{}
	take := func(e tree.Entry) {
		if !taken[e.Path] && total+e.Size <= TreeWindowMax {
			out = append(out, e)
			total += e.Size
			taken[e.Path] = true
		}
	}
	for _, p := range solidPaths {
		if i, ok := byPath[p]; ok {
			take(oldEs[i])
		}
	}
	for _, e := range rest {
		take(e)
	}
	return out, total
}

// readWindowCap reads the tree window of the OLD tree at root, checking
// each file's size and SHA-256 against its scanned entry (ErrOldMismatch),
// into a buffer with room for extra more bytes after the window (the second
// solid stream's window goes on with the first stream).
func readWindowCap(ctx context.Context, root string, oldEs []tree.Entry, solidPaths []string, extra int64) ([]byte, error) {
	fs, total := windowFiles(oldEs, solidPaths)
	win := make([]byte, total, total+extra)
	off := int64(0)
	for _, e := range fs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(e.Path)))
		if err != nil {
			return nil, err
		}
		part := win[off : off+e.Size]
		_, err = io.ReadFull(f, part)
		var one [1]byte
		if err == nil {
			if n, _ := f.Read(one[:]); n != 0 {
				err = io.ErrUnexpectedEOF
			}
		}
		f.Close()
		if err != nil || sha256.Sum256(part) != e.SHA256 {
			return nil, fmt.Errorf("%w: old file %q changed since it was checked", ErrOldMismatch, e.Path)
		}
		off += e.Size
	}
	return win, nil
}

// applySolid decodes solid stream i into its entries' files. The first
// stream's window is the OLD tree's; the second's is that window followed
// by the first stream, which is kept in memory for it.
func (a *applier) applySolid(i int) error {
	sp := &a.d.solid.part[i]
	two := a.d.solid.part[1].n > 0
	var win []byte
	if i == 0 {
		var extra int64
		if two {
			extra = sp.total
		}
		var err error
		if win, err = readWindowCap(a.ctx, a.oldRoot, a.oldEs, a.solidPaths, extra); err != nil {
			return err
		}
		a.win = win
	} else {
		// The window, then the first stream (appended after it, in the
		// room readWindowCap left).
		win, a.win = a.win, nil
	}
	hdr := makeHeader(sp.method, int64(len(win)), sp.total, sha256.Sum256(win), sp.sum, sp.bodyLen)
	lr := a.d.pending
	sw := &solidWriter{a: a, es: a.solid[i]}
	defer sw.abort()
	var out io.Writer = sw
	if i == 0 && two {
		aw := appendWriter(win)
		out = io.MultiWriter(sw, &aw)
		defer func() { a.win = aw }()
	}
	pi, err := applyPatch(a.ctx, win, io.MultiReader(bytes.NewReader(hdr), lr), output{w: out},
		&ApplyOptions{MaxNewSize: sp.total, MaxPatchSize: lr.N})
	if err != nil {
		return fmt.Errorf("solid stream %d: %w", i+1, err)
	}
	if lr.N != 0 {
		return fmt.Errorf("%w: solid stream %d longer than its patch", ErrCorrupt, i+1)
	}
	if sw.i != len(sw.es) || sw.f != nil || pi.NewSize != sp.total {
		return fmt.Errorf("%w: solid stream %d ends before its files do", ErrCorrupt, i+1)
	}
	return nil
}

// appendWriter appends what it is written to its slice.
type appendWriter []byte

func (w *appendWriter) Write(p []byte) (int, error) {
	*w = append(*w, p...)
	return len(p), nil
}

// solidWriter splits the solid stream into the solid entries' files,
// creating each (O_EXCL), hashing it as it is written and checking its
// SHA-256 when its last byte arrives.
type solidWriter struct {
	a    *applier
	es   []BundleEntry
	i    int // next entry to open
	f    *os.File
	bw   *bufio.Writer
	h    hash.Hash
	left int64
}

func (s *solidWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if s.f == nil {
			if s.i == len(s.es) {
				return n, fmt.Errorf("%w: solid stream longer than its files", ErrCorrupt)
			}
			e := &s.es[s.i]
			f, err := os.OpenFile(s.a.dst(e.Path), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return n, err
			}
			s.f, s.left, s.i = f, e.Size, s.i+1
			if s.bw == nil {
				s.bw, s.h = bufio.NewWriterSize(f, 256<<10), sha256.New()
			} else {
				s.bw.Reset(f)
				s.h.Reset()
			}
		}
		k := int(min(int64(len(p)), s.left))
		if _, err := s.bw.Write(p[:k]); err != nil {
			return n, err
		}
		s.h.Write(p[:k])
		n, p, s.left = n+k, p[k:], s.left-int64(k)
		if s.left == 0 {
			if err := s.closeFile(&s.es[s.i-1]); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (s *solidWriter) closeFile(e *BundleEntry) error {
	var sum [32]byte
	s.h.Sum(sum[:0])
	err := s.bw.Flush()
	if err == nil && sum != e.SHA256 {
		err = fmt.Errorf("%w: entry %q: file from the solid stream has another SHA-256 than its entry", ErrHashMismatch, e.Path)
	}
	if err == nil {
		err = s.f.Chmod(e.Mode)
	}
	if err == nil && !s.a.o.NoSync {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}

// abort closes a file left open by a failed decode (ApplyBundle then
// removes the whole output tree).
func (s *solidWriter) abort() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// solidStreams is the solid form of a bundle being written: one stream,
// or two when the second (the files in second) is smaller coded against
// the window followed by the first.
type solidStreams struct {
	payload [2][]byte
	method  [2]Method
	second  map[string]bool
}

// stem is a NEW path up to the first dot of its name: files of one stem in
// one directory (a package's .js, .mjs and .cjs builds; .d.ts and .d.mts)
// tend to carry the same change.
func stem(p string) string {
	dir, name := path.Split(p)
	if i := strings.IndexByte(name, '.'); i > 0 {
		name = name[:i]
	}
	return dir + name
}

// solidPayload makes the solid form of a bundle being written: the NEW
// files of plan that need a payload (in plan order) diffed as one stream
// against the OLD tree's window; and, when some of them share a stem
// (dir/name before the first dot) with an earlier one, also as two
// streams: the first file of each stem against the window, the others
// against the window and the first stream, where a file copies from its
// sibling's new bytes. The smaller form is kept. It returns nil when no
// file needs a payload or the stream would exceed solidMaxNew.
func solidPayload(ctx context.Context, oldRoot, newRoot string, oldEs []tree.Entry, plan []*planned, o *BundleOptions) (*solidStreams, error) {
	var total int64
	var paths []string
	for _, pe := range plan {
		if len(pe.cands) > 0 {
			total += pe.Size
			paths = append(paths, pe.Path)
		}
	}
	if total == 0 || total > solidMaxNew {
		return nil, nil
	}
	win, err := readWindowCap(ctx, oldRoot, oldEs, paths, total)
	if err != nil {
		return nil, fmt.Errorf("delta: old tree changed while the bundle was made: %w", err)
	}
	stream := make([]byte, 0, total)
	var first, rest []byte
	second := map[string]bool{}
	stems := map[string]bool{}
	for _, pe := range plan {
		if len(pe.cands) == 0 {
			continue
		}
		b, err := readFileCapped(filepath.Join(newRoot, filepath.FromSlash(pe.Path)), MaxFileSize)
		if err != nil {
			return nil, err
		}
		if int64(len(b)) != pe.Size || sha256.Sum256(b) != pe.SHA256 {
			return nil, fmt.Errorf("delta: new file %s changed while the bundle was made", pe.Path)
		}
		stream = append(stream, b...)
		if st := stem(pe.Path); stems[st] {
			second[pe.Path] = true
			rest = append(rest, b...)
		} else {
			stems[st] = true
			first = append(first, b...)
		}
	}
	diff := func(win, stream []byte) ([]byte, Method, error) {
		var buf bytes.Buffer
		ds, err := Diff(ctx, win, stream, &buf, &DiffOptions{Workers: o.Workers, Methods: o.Methods})
		if err != nil {
			return nil, 0, fmt.Errorf("solid stream: %w", err)
		}
		payload, err := compactPayload(buf.Bytes())
		return payload, ds.Method, err
	}
	one := &solidStreams{}
	if one.payload[0], one.method[0], err = diff(win, stream); err != nil {
		return nil, err
	}
	if len(second) == 0 || len(rest) == 0 || len(first) == 0 {
		return one, nil
	}
	two := &solidStreams{second: second}
	if two.payload[0], two.method[0], err = diff(win, first); err != nil {
		return nil, err
	}
	if two.payload[1], two.method[1], err = diff(append(win, first...), rest); err != nil {
		return nil, err
	}
	// Two streams cost one more length and payload header: compared whole.
	if len(two.payload[0])+len(two.payload[1])+binary.MaxVarintLen64 < len(one.payload[0]) {
		return two, nil
	}
	return one, nil
}

// solidCost is what the solid form adds to a bundle: the solid entries'
// fields and the stream; perFileCost is the same entries' fields and
// payloads as kind patch or new. The entries are those of plan with
// candidates, their per-file payloads done.
func solidCosts(plan []*planned, ss *solidStreams) (solidCost, perFileCost int) {
	var b []byte
	for _, pe := range plan {
		if len(pe.cands) == 0 {
			continue
		}
		e := pe.BundleEntry
		e.Kind, e.Source = EntryPatch, pe.Source
		if pe.Source == "" {
			e.Kind = EntryNew
		}
		e.PayloadSize = int64(len(pe.payload))
		perFileCost += len(appendEntry(b[:0], &e, "")) + len(pe.payload)
		e.Kind = EntrySolid
		solidCost += len(appendEntry(b[:0], &e, ""))
	}
	for _, p := range ss.payload {
		if p != nil {
			solidCost += len(binary.AppendUvarint(nil, uint64(len(p)))) + len(p)
		}
	}
	return solidCost, perFileCost
}
