package fallback

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/deltaup/deltaup/internal/tree"
)

// Defaults and fixed caps of Extract.
const (
	// DefaultMaxTotalSize caps the sum of the file sizes: 4 GiB.
	DefaultMaxTotalSize = 4 << 30
	// DefaultMaxFiles caps the number of entries (files, directories and
	// symlinks): one million.
	DefaultMaxFiles = 1_000_000
	// DefaultMaxFileSize caps one file's size: 2 GiB.
	DefaultMaxFileSize = 2 << 30
	// MaxZstdWindow caps the zstd window, and so the decoder's history
	// buffer: 64 MiB. Frames asking for more (zstd --long=27 and above,
	// --ultra levels, single-segment frames over 64 MiB) fail with ErrLimit.
	MaxZstdWindow = 64 << 20
	// MaxTrailingZeros caps the zero bytes allowed after the tar
	// end-of-archive marker (GNU tar pads to 10 KiB records): 1 MiB.
	MaxTrailingZeros = 1 << 20
	// The metadata budget: the bytes of the tar stream that are not file
	// content (headers, PAX and GNU long-name records, padding) may not
	// exceed metaBase + metaPerEntry per entry so far.
	metaBase     = 64 << 20
	metaPerEntry = 4 << 10
)

// ExtractOptions tune Extract. The zero value (or nil) gives the defaults.
type ExtractOptions struct {
	// MaxTotalSize caps the sum of the file sizes (0: DefaultMaxTotalSize).
	MaxTotalSize int64
	// MaxFiles caps the number of entries of any type (0: DefaultMaxFiles).
	MaxFiles int
	// MaxFileSize caps one file's size (0: DefaultMaxFileSize).
	MaxFileSize int64
	// Expected, when non-nil, is the exact list of entries the archive must
	// hold, e.g. from a signed manifest: every entry must be in it with the
	// same type and, for files, size, permission bits and SHA-256; for
	// directories, permission bits; for symlinks, target. Every expected
	// entry must be in the archive. Files must carry their SHA-256 (a zero
	// hash is an error). An empty non-nil list means the archive must be
	// empty.
	Expected []tree.Entry
	// Sync fsyncs every file after writing it, every directory after its
	// contents, dest and dest's parent, before Extract returns.
	Sync bool
}

// Extract extracts the archive read from r, in format, into the directory
// dest, which must not exist: Extract creates it (mode 0755; its parent
// must exist) and, on any error, removes it with everything extracted so
// far. It returns the extracted entries sorted by path, files with their
// SHA-256.
//
// Names may carry one leading "./" (GNU tar's `-C dir .`), which is
// stripped; the "./" root entry is skipped. Each entry must be a regular
// file, a directory or a symlink, its name a safe relative path
// (tree.CheckPath, elements up to 255 bytes), its parent directory an
// earlier directory entry of the archive, and its name new, also
// case-insensitively and after Unicode normalization. Symlinks must stay
// inside the tree lexically (tree.CheckLink) and when followed through the
// archive's other symlinks. Permission bits come from the header's mode
// (setuid, setgid and sticky bits are dropped); owners, times, PAX
// attributes and xattrs are ignored. The tar stream must end with its two
// zero blocks followed by nothing but at most MaxTrailingZeros zero bytes,
// and the compressed stream must be valid to its end (zstd checksums,
// gzip CRC-32 and size). See the error classes (ErrUnsafeEntry, ...) for
// what fails how.
//
// Extract never follows a symlink: files are created with O_CREATE|O_EXCL
// (which fails on an existing name, symlink or not) through an os.Root
// opened on dest, directories with Mkdir, and symlinks only after every
// file and directory is written and the whole archive, trailer and
// Expected list are checked. Directories are created 0700 and get their
// mode after everything else. File sizes are checked against the caps from
// the header before a byte is written, and a file never receives more
// bytes than its header (and Expected) says.
//
// Cost: one pass over the archive; memory is the zstd window (at most
// MaxZstdWindow) plus O(entries) bookkeeping. Errors of r, of the file
// system and of ctx are returned wrapped, without a class.
func Extract(ctx context.Context, r io.Reader, format Format, dest string, opts *ExtractOptions) ([]tree.Entry, error) {
	if err := format.valid(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &ExtractOptions{}
	}
	x := &extractor{
		ctx: ctx, dest: dest, opts: *opts,
		seen: map[string]tree.Type{}, folded: map[string]string{},
	}
	if x.opts.MaxTotalSize <= 0 {
		x.opts.MaxTotalSize = DefaultMaxTotalSize
	}
	if x.opts.MaxFiles <= 0 {
		x.opts.MaxFiles = DefaultMaxFiles
	}
	if x.opts.MaxFileSize <= 0 {
		x.opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.Expected != nil {
		var err error
		if x.expected, err = expectedMap(opts.Expected); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dest, 0o755); err != nil {
		return nil, fmt.Errorf("fallback: creating %s: %w", dest, err)
	}
	entries, err := x.run(r, format)
	if err != nil {
		if cerr := x.cleanup(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("fallback: removing %s: %w", dest, cerr))
		}
		return nil, err
	}
	return entries, nil
}

type dirMode struct {
	path string
	mode fs.FileMode
}

type extractor struct {
	ctx      context.Context
	dest     string
	opts     ExtractOptions
	expected map[string]tree.Entry
	matched  int

	root   *os.Root
	src    *srcReader
	seen   map[string]tree.Type // extracted paths and their types
	folded map[string]string    // foldKey -> path
	dirs   []dirMode
	links  []tree.Entry
	out    []tree.Entry
	total  int64 // file bytes so far
	buf    []byte
	chmods bool // directory modes are being applied
}

func (x *extractor) run(r io.Reader, format Format) ([]tree.Entry, error) {
	if err := os.Chmod(x.dest, 0o755); err != nil { // exact, whatever the umask
		return nil, fmt.Errorf("fallback: %w", err)
	}
	var err error
	if x.root, err = os.OpenRoot(x.dest); err != nil {
		return nil, fmt.Errorf("fallback: %w", err)
	}
	// srcReader also hides r's concrete type, so the zstd decoder never
	// takes its decode-everything-in-memory path for *bytes.Buffer.
	x.src = &srcReader{r: r}
	dec, closeDec, err := newDecompressor(x.src, format)
	if err != nil {
		return nil, x.streamErr(err)
	}
	defer closeDec()
	cr := &countReader{r: dec, ctx: x.ctx}
	tr := tar.NewReader(cr)
	x.buf = make([]byte, 256<<10)

	var dataEnd, pad int64 // where the last entry's data ended; its padding
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// archive/tar also reports a clean EOF for a stream cut at a
			// header boundary, after one zero block, or after a PAX or GNU
			// long-name header: insist on the full marker, exactly the
			// last entry's padding and then two zero blocks.
			if got := cr.n - dataEnd; got != pad+2*512 || cr.zeros < 2*512 {
				return nil, fmt.Errorf("%w: missing end-of-archive marker (tar stream ends %d bytes after the last entry)", ErrCorrupt, got)
			}
			break
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			// ErrInsecurePath (GODEBUG=tarinsecurepath=0) comes with a valid
			// header; our own name checks refuse such names below.
			return nil, x.streamErr(err)
		}
		if meta := cr.n - x.total; meta > metaBase+metaPerEntry*int64(len(x.out)) {
			return nil, fmt.Errorf("%w: %d bytes of tar metadata for %d entries", ErrLimit, meta, len(x.out))
		}
		e, skip, err := x.check(hdr)
		if err != nil {
			return nil, err
		}
		pad = 0
		if skip {
			dataEnd = cr.n
			continue
		}
		switch e.Type {
		case tree.Dir:
			if err := x.root.Mkdir(e.Path, 0o700); err != nil {
				return nil, fmt.Errorf("fallback: %w", err)
			}
			x.dirs = append(x.dirs, dirMode{e.Path, e.Mode})
		case tree.File:
			if err := x.writeFile(tr, &e); err != nil {
				return nil, err
			}
			pad = -e.Size & 511
		case tree.Symlink:
			x.links = append(x.links, e)
		}
		x.seen[e.Path] = e.Type
		x.out = append(x.out, e)
		dataEnd = cr.n
	}
	if err := checkTrailer(cr); err != nil {
		return nil, x.streamErr(err)
	}
	if x.expected != nil && x.matched != len(x.expected) {
		var missing []string
		for p := range x.expected {
			if _, ok := x.seen[p]; !ok {
				missing = append(missing, p)
			}
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("%w: %d expected entries not in the archive: %q", ErrMismatch, len(missing), missing[:min(len(missing), 5)])
	}
	links := make(map[string]string, len(x.links))
	for _, l := range x.links {
		links[l.Path] = l.Target
	}
	if err := tree.CheckLinkChains(links); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLinkEscape, err)
	}
	for _, l := range x.links {
		if err := x.ctx.Err(); err != nil {
			return nil, err
		}
		if err := x.root.Symlink(filepath.FromSlash(l.Target), l.Path); err != nil {
			return nil, fmt.Errorf("fallback: %w", err)
		}
	}
	if err := x.finishDirs(); err != nil {
		return nil, err
	}
	if err := x.root.Close(); err != nil {
		return nil, fmt.Errorf("fallback: %w", err)
	}
	x.root = nil
	tree.Sort(x.out)
	return x.out, nil
}

// check validates one header and returns its entry, or skip for the root
// entry ("./").
func (x *extractor) check(hdr *tar.Header) (e tree.Entry, skip bool, err error) {
	name := strings.TrimPrefix(hdr.Name, "./")
	switch hdr.Typeflag {
	case tar.TypeReg: // archive/tar turns the legacy TypeRegA into TypeReg or TypeDir
		e.Type = tree.File
	case tar.TypeDir:
		e.Type = tree.Dir
		if name == "" || name == "." {
			return e, true, nil
		}
		name = strings.TrimSuffix(name, "/")
	case tar.TypeSymlink:
		e.Type = tree.Symlink
	}
	e.Path = name
	if err := tree.CheckPath(name); err != nil {
		return e, false, fmt.Errorf("%w: %w", ErrUnsafeEntry, err)
	}
	if err := checkElements(name); err != nil {
		return e, false, err
	}
	var sparse bool
	for k := range hdr.PAXRecords {
		sparse = sparse || strings.HasPrefix(k, "GNU.sparse.")
	}
	switch {
	case e.Type == "":
		return e, false, fmt.Errorf("%w: %s: %s (%w)", ErrUnsupportedEntry, name, typeName(hdr.Typeflag), tree.ErrUnsupported)
	case sparse:
		return e, false, fmt.Errorf("%w: %s: sparse file (%w)", ErrUnsupportedEntry, name, tree.ErrUnsupported)
	case e.Type != tree.File && hdr.Size != 0:
		return e, false, fmt.Errorf("%w: %s: %s with size %d", ErrCorrupt, name, e.Type, hdr.Size)
	}
	if len(x.out) >= x.opts.MaxFiles {
		return e, false, fmt.Errorf("%w: more than %d entries", ErrLimit, x.opts.MaxFiles)
	}
	if t, ok := x.seen[name]; ok {
		return e, false, fmt.Errorf("%w: %s (already a %s)", ErrDuplicate, name, t)
	}
	k := tree.FoldKey(name)
	if prev, ok := x.folded[k]; ok {
		return e, false, fmt.Errorf("%w: %+q and %+q are the same name on case-insensitive or Unicode-normalizing file systems", ErrDuplicate, prev, name)
	}
	if dir := path.Dir(name); dir != "." {
		switch t, ok := x.seen[dir]; {
		case !ok:
			return e, false, fmt.Errorf("%w: %s comes before (or without) its parent directory", ErrCorrupt, name)
		case t != tree.Dir:
			return e, false, fmt.Errorf("%w: %s: parent %s is a %s, not a directory (%w)", ErrUnsafeEntry, name, dir, t, tree.ErrUnsafePath)
		}
	}
	e.Mode = fs.FileMode(hdr.Mode) & fs.ModePerm
	switch e.Type {
	case tree.File:
		e.Size = hdr.Size
		if e.Size > x.opts.MaxFileSize {
			return e, false, fmt.Errorf("%w: %s: %d bytes, over the %d-byte file cap", ErrLimit, name, e.Size, x.opts.MaxFileSize)
		}
		if e.Size > x.opts.MaxTotalSize-x.total {
			return e, false, fmt.Errorf("%w: %s: total size over the %d-byte cap", ErrLimit, name, x.opts.MaxTotalSize)
		}
	case tree.Symlink:
		e.Target, e.Mode = hdr.Linkname, 0o777
		if err := checkTarget(name, e.Target); err != nil {
			return e, false, err
		}
	}
	if x.expected != nil {
		if err := x.checkExpected(e); err != nil {
			return e, false, err
		}
	}
	x.folded[k] = name
	return e, false, nil
}

func (x *extractor) checkExpected(e tree.Entry) error {
	want, ok := x.expected[e.Path]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s (%s) is not in the expected list", ErrMismatch, e.Path, e.Type)
	case want.Type != e.Type:
		return fmt.Errorf("%w: %s is a %s, expected a %s", ErrMismatch, e.Path, e.Type, want.Type)
	case e.Type == tree.File && want.Size != e.Size:
		return fmt.Errorf("%w: %s has %d bytes, expected %d", ErrMismatch, e.Path, e.Size, want.Size)
	case e.Type != tree.Symlink && want.Mode.Perm() != e.Mode:
		return fmt.Errorf("%w: %s has mode %04o, expected %04o", ErrMismatch, e.Path, e.Mode, want.Mode.Perm())
	case e.Type == tree.Symlink && want.Target != e.Target:
		return fmt.Errorf("%w: %s -> %q, expected -> %q", ErrMismatch, e.Path, e.Target, want.Target)
	}
	x.matched++
	return nil
}

// writeFile creates e's file and copies exactly e.Size bytes from tr into
// it, hashing them; the hash is checked against Expected.
func (x *extractor) writeFile(tr io.Reader, e *tree.Entry) error {
	f, err := x.root.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("fallback: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	for n := int64(0); n < e.Size; {
		m, rerr := tr.Read(x.buf[:min(int64(len(x.buf)), e.Size-n)])
		if m > 0 {
			h.Write(x.buf[:m])
			if _, err := f.Write(x.buf[:m]); err != nil {
				return fmt.Errorf("fallback: %w", err)
			}
			n += int64(m)
			x.total += int64(m)
		}
		if rerr == io.EOF && n < e.Size {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil && rerr != io.EOF {
			return x.streamErr(rerr)
		}
	}
	copy(e.SHA256[:], h.Sum(nil))
	if want, ok := x.expected[e.Path]; ok && want.SHA256 != e.SHA256 {
		return fmt.Errorf("%w: %s has SHA-256 %x, expected %x", ErrMismatch, e.Path, e.SHA256, want.SHA256)
	}
	if err := f.Chmod(e.Mode); err != nil {
		return fmt.Errorf("fallback: %w", err)
	}
	if x.opts.Sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fallback: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("fallback: %w", err)
	}
	return nil
}

// finishDirs applies the directory modes, deepest first, fsyncing each
// directory (with its new mode) when asked, then dest and its parent.
func (x *extractor) finishDirs() error {
	x.chmods = true
	dirs := slices.Clone(x.dirs)
	slices.SortFunc(dirs, func(a, b dirMode) int { return strings.Compare(b.path, a.path) })
	for _, d := range dirs {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		// Open before the chmod, which may take away our own access.
		f, err := x.root.Open(d.path)
		if err != nil {
			return fmt.Errorf("fallback: %w", err)
		}
		err = x.root.Chmod(d.path, d.mode)
		if err == nil && x.opts.Sync {
			err = syncDir(f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("fallback: %w", err)
		}
	}
	if !x.opts.Sync {
		return nil
	}
	for _, p := range []string{x.dest, filepath.Dir(x.dest)} {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("fallback: %w", err)
		}
		err = syncDir(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("fallback: syncing %s: %w", p, err)
		}
	}
	return nil
}

// cleanup removes dest and everything in it.
func (x *extractor) cleanup() error {
	if x.root != nil {
		if x.chmods { // give back the access the directory modes took
			for _, d := range x.dirs {
				x.root.Chmod(d.path, 0o700)
			}
		}
		x.root.Close()
	}
	return os.RemoveAll(x.dest)
}

// streamErr classifies an error met while reading the archive.
func (x *extractor) streamErr(err error) error {
	switch {
	case x.ctx.Err() != nil:
		return x.ctx.Err()
	case x.src.err != nil:
		return fmt.Errorf("fallback: reading archive: %w", x.src.err)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("%w: zstd frame needs more than the %d-byte window cap: %w", ErrLimit, MaxZstdWindow, err)
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

var errNonZero = errors.New("non-zero data after the end-of-archive marker")

// checkTrailer reads the rest of the decompressed stream: at most
// MaxTrailingZeros zero bytes, then a clean end of the compressed stream.
func checkTrailer(r io.Reader) error {
	n, err := io.Copy(zeroWriter{}, io.LimitReader(r, MaxTrailingZeros+1))
	if err != nil {
		return err
	}
	if n > MaxTrailingZeros {
		return fmt.Errorf("more than %d bytes after the end-of-archive marker", MaxTrailingZeros)
	}
	return nil
}

type zeroWriter struct{}

func (zeroWriter) Write(p []byte) (int, error) {
	for i, b := range p {
		if b != 0 {
			return i, errNonZero
		}
	}
	return len(p), nil
}

// expectedMap indexes opts.Expected, refusing lists that cannot be meant.
func expectedMap(es []tree.Entry) (map[string]tree.Entry, error) {
	m := make(map[string]tree.Entry, len(es))
	for _, e := range es {
		if err := tree.CheckPath(e.Path); err != nil {
			return nil, fmt.Errorf("fallback: invalid Expected entry: %w", err)
		}
		if _, dup := m[e.Path]; dup {
			return nil, fmt.Errorf("fallback: invalid Expected: %s listed twice", e.Path)
		}
		switch e.Type {
		case tree.File:
			if e.SHA256 == ([32]byte{}) {
				return nil, fmt.Errorf("fallback: invalid Expected: file %s has no SHA-256", e.Path)
			}
		case tree.Dir, tree.Symlink:
		default:
			return nil, fmt.Errorf("fallback: invalid Expected: %s has type %q", e.Path, e.Type)
		}
		m[e.Path] = e
	}
	return m, nil
}

// newDecompressor returns the decompressing reader of format over r and a
// function releasing it.
func newDecompressor(r io.Reader, format Format) (io.Reader, func(), error) {
	switch format {
	case TarZst:
		d, err := zstd.NewReader(r,
			zstd.WithDecoderMaxWindow(MaxZstdWindow),
			zstd.WithDecoderMaxMemory(MaxZstdWindow),
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
		)
		if err != nil {
			if d != nil {
				d.Close()
			}
			return nil, nil, err
		}
		return d, d.Close, nil
	case TarGz:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { z.Close() }, nil
	}
	return nil, nil, format.valid()
}

func typeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "named pipe"
	case tar.TypeXGlobalHeader:
		return "PAX global header"
	case tar.TypeGNUSparse:
		return "GNU sparse file"
	case tar.TypeCont:
		return "contiguous file"
	}
	return fmt.Sprintf("entry type %q", t)
}

// srcReader remembers the first error of the archive's reader other than
// io.EOF, so that it is not mistaken for a corrupt archive.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// countReader counts the decompressed bytes and the zero bytes that end
// them, and stops on ctx.
type countReader struct {
	r     io.Reader
	ctx   context.Context
	n     int64
	zeros int64 // length of the run of zero bytes at the end of what was read
}

func (c *countReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	i := n - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 {
		c.zeros += int64(n)
	} else {
		c.zeros = int64(n - 1 - i)
	}
	return n, err
}
