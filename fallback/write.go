package fallback

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/deltaup/deltaup/internal/tree"
)

// Compression parameters of the archives Write makes. They are part of the
// format's determinism: changing one changes the bytes of every archive.
const (
	// ZstdWindow is the largest zstd window (maximum back-reference
	// distance) of the archives Write makes: 32 MiB, half of what Extract
	// accepts (MaxZstdWindow). Releases are often several binaries that
	// share code; on Go's 65 MiB tool directory 8, 16 and 32 MiB windows
	// give 27.9%, 25.0% and 22.0% of the tar size (zstd -19: 24.9%). The
	// decoder needs about 40 MiB of memory for it. A smaller tree gets a
	// smaller window (see archiveWindow): the same compressed blocks, and
	// a decoder (and encoder) that allocates only what the tree needs.
	ZstdWindow = 32 << 20
	// MinZstdWindow is the smallest window archiveWindow picks: 1 MiB.
	MinZstdWindow = 1 << 20
	// GzipLevel is the gzip (deflate) level of the archives Write makes.
	GzipLevel = 9
)

// WriteOptions tune Write. The zero value (or nil) is the default.
type WriteOptions struct {
	// ModTime is the modification time recorded for every entry; the zero
	// value means the Unix epoch (0). It is truncated to whole seconds and
	// must lie in [1970, 2242) (what a USTAR header holds).
	ModTime time.Time
	// Skip, when set, is called with each relative path (see
	// tree.ScanOptions.Skip); returning true leaves the entry (and a
	// directory's contents) out of the archive.
	Skip func(rel string) bool
	// Modes says which permission bits are recorded (tree.ScanOptions.Modes);
	// tree.ModesPortable makes an archive for Windows clients.
	Modes tree.Modes
	// Framed writes a tar.zst archive as independent zstd frames (see
	// Frame and FrameTarget) instead of one: a client can then fetch and
	// decompress the frames holding the files it lacks, and nothing else.
	// Files no longer share a compression window, which costs little on
	// trees of distinct binaries and much on trees of similar files (Go's
	// tool directory: 34% of the tar size instead of 22%; prettier's
	// package: 24.5% instead of 12.6%). Ignored for tar.gz.
	Framed bool
}

// FrameTarget is how a tar.zst archive is cut into frames: consecutive
// entries share a frame while their tar bytes (headers, data, padding) stay
// within FrameTarget; an entry larger than that has a frame of its own. So
// a client can fetch one small file for at most about FrameTarget
// compressed bytes, and one large file for its own compressed size. Part
// of the format's determinism, like ZstdWindow.
const FrameTarget = 32 << 10

// Frame is one independent zstd frame of a tar.zst archive: the archive
// bytes [Offset, Offset+Size) decompress, on their own, to the tar bytes
// [TarOffset, TarOffset+TarSize), which hold exactly the entries
// Stats.Entries[First:First+Count] (their headers, data and padding) and,
// in the last frame, the end-of-archive marker. The frames are contiguous:
// the archive is their concatenation, and so is the tar stream.
type Frame struct {
	Offset, Size       int64
	SHA256             [32]byte // of the compressed bytes
	First, Count       int
	TarOffset, TarSize int64
}

// Stats describes an archive Write made.
type Stats struct {
	// Entries are the archived entries in archive order (sorted by path),
	// files with their SHA-256 computed while archiving.
	Entries []tree.Entry
	// Files, Dirs and Symlinks count the entries by type.
	Files, Dirs, Symlinks int
	// ContentBytes is the sum of the file sizes.
	ContentBytes int64
	// TarBytes is the size of the uncompressed tar stream.
	TarBytes int64
	// ArchiveBytes is the number of bytes written to w.
	ArchiveBytes int64
	// Frames are the zstd frames of a tar.zst archive, in order (one
	// unless WriteOptions.Framed); nil for tar.gz.
	Frames []Frame
}

// Write archives the tree at root as a tar stream compressed in format and
// writes it to w. The archive is deterministic: the same tree (same paths,
// types, permission bits, file contents and symlink targets) and the same
// options give the same bytes, whatever the owners, timestamps, creation
// order or file system. Entries come from tree.Scan, sorted by path (so each
// directory comes before its contents), named relative to root with no
// wrapper directory ("bin/app", directories with a trailing slash "bin/");
// each header has uid/gid 0, empty user and group names, mode = the
// entry's permission bits, mtime = opts.ModTime (epoch 0 by default), no
// access or change time. A header is USTAR when the name and link target are
// ASCII and fit the USTAR fields (name up to 100 bytes, or split at a slash
// into a 155-byte prefix and a 100-byte name; link target up to 100 bytes)
// and the size is below 8 GiB, else PAX with only the records that do not
// fit (path, linkpath, size), sorted by key, in an extended header named
// "<dir>/PaxHeaders.0/<base>" with mode 0 and mtime 0. The tar ends with two
// zero blocks and is not padded to a record size. docs/FORMAT.md describes
// the bytes in full.
//
// zstd: one frame at klauspost's SpeedBestCompression, window
// archiveWindow(entries) (the smallest power of two from 1 MiB that holds
// the whole tar stream, at most ZstdWindow, 32 MiB), content checksum, single-threaded (encoder concurrency 1), no
// content size in the header. With opts.Framed, one such frame per group of
// consecutive entries (see FrameTarget), each frame compressed on its own
// and ending at an entry boundary, the end-of-archive marker in the last:
// the concatenation is still an ordinary tar.zst (`tar --zstd -xf` and
// `zstd -d` read it), and Stats.Frames says where each frame lies and
// which entries it holds. gzip: one member at level GzipLevel (9), empty
// name and comment, MTIME 0, OS 255.
//
// Write refuses trees that Extract would refuse: unsafe names and
// escaping or special files (from tree.Scan), path elements over 255 bytes
// (ErrUnsafeEntry), names that collide case-insensitively or after Unicode
// normalization (ErrDuplicate), and symlinks that escape through other
// symlinks or loop (ErrLinkEscape). A file that changes size while being
// archived is an error. On error, w has received part of an archive.
//
// Cost: one tree.Scan, one read of every file, and the compressor: zstd at
// this level, single-threaded, runs at 10-25 MB/s on binaries and uses
// about 100 MiB of memory; gzip -9 at tens of MB/s with little memory.
func Write(ctx context.Context, w io.Writer, root string, format Format, opts *WriteOptions) (Stats, error) {
	var st Stats
	if err := format.valid(); err != nil {
		return st, err
	}
	if opts == nil {
		opts = &WriteOptions{}
	}
	mtime := time.Unix(0, 0)
	if !opts.ModTime.IsZero() {
		mtime = time.Unix(opts.ModTime.Unix(), 0)
		if mtime.Unix() < 0 || mtime.Unix() >= 1<<33 {
			return st, fmt.Errorf("fallback: ModTime %v outside [1970, 2242)", opts.ModTime)
		}
	}
	entries, err := tree.Scan(ctx, root, tree.ScanOptions{Skip: opts.Skip, Modes: opts.Modes})
	if err != nil {
		// Give the tree's refusals the classes Extract would use.
		switch {
		case errors.Is(err, tree.ErrCollision):
			err = fmt.Errorf("%w: %w", ErrDuplicate, err)
		case errors.Is(err, tree.ErrLinkEscape):
			err = fmt.Errorf("%w: %w", ErrLinkEscape, err)
		case errors.Is(err, tree.ErrUnsafePath):
			err = fmt.Errorf("%w: %w", ErrUnsafeEntry, err)
		case errors.Is(err, tree.ErrUnsupported):
			err = fmt.Errorf("%w: %w", ErrUnsupportedEntry, err)
		}
		return st, fmt.Errorf("fallback: scanning %s: %w", root, err)
	}
	if err := checkWriteTree(entries); err != nil {
		return st, err
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return st, fmt.Errorf("fallback: %w", err)
	}
	defer rt.Close()

	aw := &countWriter{w: w}
	out := newFramer(aw, format, opts.Framed)
	out.window = archiveWindow(entries)
	tc := &countWriter{w: out}
	tw := tar.NewWriter(tc)
	buf := make([]byte, 256<<10)
	for i := range entries {
		e := &entries[i]
		if err := ctx.Err(); err != nil {
			return st, err
		}
		hdr := &tar.Header{Name: e.Path, ModTime: mtime, Mode: int64(e.Mode.Perm())}
		switch e.Type {
		case tree.Dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.Path+"/"
			st.Dirs++
		case tree.Symlink:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.Target, 0o777
			st.Symlinks++
		case tree.File:
			hdr.Typeflag, hdr.Size = tar.TypeReg, e.Size
			st.Files++
			st.ContentBytes += e.Size
		default:
			return st, fmt.Errorf("fallback: %s: %w", e.Path, tree.ErrUnsupported)
		}
		// Frames end at entry boundaries: the previous entry's padding
		// goes out (Flush) before a frame is closed.
		size := entryTarSize(e)
		big := size > FrameTarget
		if out.cut(big, size) {
			if err := tw.Flush(); err != nil {
				return st, fmt.Errorf("fallback: %w", err)
			}
			if err := out.closeFrame(tc.n); err != nil {
				return st, err
			}
		}
		if err := out.openFrame(i, tc.n); err != nil {
			return st, err
		}
		if err := writeHeader(tw, hdr); err != nil {
			return st, fmt.Errorf("fallback: writing header of %s: %w", e.Path, err)
		}
		if e.Type == tree.File {
			if e.SHA256, err = copyFile(ctx, tw, rt, e, buf); err != nil {
				return st, err
			}
		}
		out.added(size, big && i < len(entries)-1) // the last entry keeps the end marker company
	}
	if err := out.openFrame(len(entries), tc.n); err != nil {
		return st, err
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("fallback: %w", err)
	}
	if err := out.closeFrame(tc.n); err != nil {
		return st, err
	}
	out.release()
	st.Entries, st.TarBytes, st.ArchiveBytes, st.Frames = entries, tc.n, aw.n, out.frames
	return st, nil
}

// archiveWindow is the zstd window of an archive of entries: the smallest
// power of two, from MinZstdWindow to ZstdWindow, not below an upper bound
// of the tar stream's size (each entry's header, a PAX header as large as
// its names could need, padded data; the end marker). While the window
// holds the whole stream, every match the encoder finds is the same as
// with a larger one, so only the frame header's window descriptor differs;
// the decoder's history buffer is then sized to the tree, not to 32 MiB.
func archiveWindow(entries []tree.Entry) int {
	bound := int64(1024)
	for i := range entries {
		e := &entries[i]
		bound += 1024 + int64(len(e.Path)+len(e.Target)+64+511)&^511 + (e.Size+511)&^511
		if bound >= ZstdWindow {
			return ZstdWindow
		}
	}
	w := MinZstdWindow
	for int64(w) < bound {
		w <<= 1
	}
	return w
}

// entryTarSize is about the tar bytes of e: its header and padded data
// (a PAX header, rare, adds a little).
func entryTarSize(e *tree.Entry) int64 {
	return 512 + (e.Size+511)&^511
}

// framer is the compressed side of Write: gzip as one member, or zstd as
// frames cut at entry boundaries (see Frame). Write calls cut before each
// entry, openFrame (a no-op while a frame is open), then added; closeFrame
// ends the frame.
type framer struct {
	out    *countWriter
	format Format
	framed bool
	window int // zstd window (archiveWindow)

	gz     io.WriteCloser
	enc    *zstd.Encoder
	h      hash.Hash
	open   bool
	frame  Frame
	tar    int64 // estimated tar bytes of the open frame
	full   bool  // the open frame takes no more entries
	frames []Frame
}

func newFramer(out *countWriter, format Format, framed bool) *framer {
	return &framer{out: out, format: format, framed: framed, h: sha256.New()}
}

// cut reports whether the open frame must be closed before an entry of
// about size tar bytes (big: it gets a frame of its own).
func (f *framer) cut(big bool, size int64) bool {
	if f.format != TarZst || !f.framed || !f.open || f.frame.Count == 0 {
		return false
	}
	return f.full || big || f.tar+size > FrameTarget
}

// openFrame starts a frame holding entries from first on, at tar offset
// tarOff, unless one is open.
func (f *framer) openFrame(first int, tarOff int64) error {
	if f.open {
		return nil
	}
	if f.format == TarGz {
		if f.gz == nil {
			gz, err := newCompressor(f.out, TarGz, 0)
			if err != nil {
				return err
			}
			f.gz = gz
		}
		f.open = true
		return nil
	}
	if f.enc == nil {
		if pe, ok := encoderPool(f.window).Get().(*zstd.Encoder); ok {
			f.enc = pe
		} else {
			enc, err := newCompressor(nil, TarZst, f.window)
			if err != nil {
				return err
			}
			f.enc = enc.(*zstd.Encoder)
		}
	}
	f.h.Reset()
	f.enc.Reset(io.MultiWriter(f.out, f.h))
	f.open, f.tar, f.full = true, 0, false
	f.frame = Frame{Offset: f.out.n, First: first, TarOffset: tarOff}
	return nil
}

// added counts an entry of about size tar bytes into the open frame;
// full closes the frame before the next entry.
func (f *framer) added(size int64, full bool) {
	f.frame.Count++
	f.tar += size
	f.full = full
}

// closeFrame ends the open frame at tar offset tarOff.
func (f *framer) closeFrame(tarOff int64) error {
	if !f.open {
		return nil
	}
	f.open = false
	if f.format == TarGz {
		if err := f.gz.Close(); err != nil {
			return fmt.Errorf("fallback: %w", err)
		}
		return nil
	}
	if err := f.enc.Close(); err != nil {
		return fmt.Errorf("fallback: %w", err)
	}
	f.frame.Size = f.out.n - f.frame.Offset
	f.frame.TarSize = tarOff - f.frame.TarOffset
	copy(f.frame.SHA256[:], f.h.Sum(nil))
	f.frames = append(f.frames, f.frame)
	return nil
}

// encoderPools holds, per window size, the zstd encoders of finished
// archives. The best level's encoder is about 40 MiB of tables: allocating
// (and faulting in) a new one per archive cost more than compressing a
// small tree. A reused encoder's output is the same: Reset moves its
// position past every entry its tables hold, so none of them is a match.
var encoderPools sync.Map // int -> *sync.Pool

func encoderPool(window int) *sync.Pool {
	p, _ := encoderPools.LoadOrStore(window, new(sync.Pool))
	return p.(*sync.Pool)
}

// release gives the zstd encoder back for the next archive, once its
// last frame closed without error (an encoder that failed is dropped).
func (f *framer) release() {
	if f.enc != nil && !f.open {
		f.enc.Reset(nil)
		encoderPool(f.window).Put(f.enc)
	}
	f.enc = nil
}

func (f *framer) Write(p []byte) (int, error) {
	if f.format == TarGz {
		return f.gz.Write(p)
	}
	return f.enc.Write(p)
}

// writeHeader writes hdr as USTAR when archive/tar can encode it so, else
// as PAX: an explicit choice, so neither GNU headers nor the rounding and
// time fields of an unspecified format can come in.
func writeHeader(tw *tar.Writer, hdr *tar.Header) error {
	hdr.Format = tar.FormatUSTAR
	if err := tw.WriteHeader(hdr); err == nil {
		return nil
	}
	// Either archive/tar cannot encode hdr as USTAR and wrote nothing (a
	// non-fatal error), or the writer failed, and then its error is sticky
	// and the second call returns it again.
	hdr.Format = tar.FormatPAX
	return tw.WriteHeader(hdr)
}

// copyFile copies the file of e into tw and returns its SHA-256. The file
// must still be a regular file of the scanned size.
func copyFile(ctx context.Context, tw io.Writer, rt *os.Root, e *tree.Entry, buf []byte) ([32]byte, error) {
	var sum [32]byte
	f, err := rt.Open(e.Path)
	if err != nil {
		return sum, fmt.Errorf("fallback: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return sum, fmt.Errorf("fallback: %w", err)
	} else if !fi.Mode().IsRegular() || fi.Size() != e.Size {
		return sum, fmt.Errorf("fallback: %s changed while archiving", e.Path)
	}
	h := sha256.New()
	var n int64
	for n < e.Size {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		m, err := f.Read(buf[:min(int64(len(buf)), e.Size-n)])
		if m > 0 {
			h.Write(buf[:m])
			if _, werr := tw.Write(buf[:m]); werr != nil {
				return sum, fmt.Errorf("fallback: writing %s: %w", e.Path, werr)
			}
			n += int64(m)
		}
		if err == io.EOF {
			return sum, fmt.Errorf("fallback: %s changed while archiving (shrank)", e.Path)
		}
		if err != nil {
			return sum, fmt.Errorf("fallback: reading %s: %w", e.Path, err)
		}
	}
	if m, _ := f.Read(buf[:1]); m != 0 {
		return sum, fmt.Errorf("fallback: %s changed while archiving (grew)", e.Path)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// checkWriteTree refuses trees Extract would refuse beyond what tree.Scan
// checks.
func checkWriteTree(entries []tree.Entry) error {
	seen := make(map[string]string, len(entries))
	links := map[string]string{}
	for _, e := range entries {
		if err := checkElements(e.Path); err != nil {
			return err
		}
		k := tree.FoldKey(e.Path)
		if prev, ok := seen[k]; ok {
			return fmt.Errorf("%w: %+q and %+q are the same name on case-insensitive or Unicode-normalizing file systems", ErrDuplicate, prev, e.Path)
		}
		seen[k] = e.Path
		if e.Type == tree.Symlink {
			if err := checkTarget(e.Path, e.Target); err != nil {
				return err
			}
			links[e.Path] = e.Target
		}
	}
	if err := tree.CheckLinkChains(links); err != nil {
		return fmt.Errorf("%w: %w", ErrLinkEscape, err)
	}
	return nil
}

// maxElement caps one path element, in bytes (NAME_MAX on Linux and the
// BSDs; NTFS and APFS allow 255 UTF-16 units or UTF-8 bytes).
const maxElement = 255

// checkElements refuses path elements longer than maxElement bytes.
func checkElements(p string) error {
	for el := range strings.SplitSeq(p, "/") {
		if len(el) > maxElement {
			return fmt.Errorf("%w: %q: element longer than %d bytes (%w)", ErrUnsafeEntry, p, maxElement, tree.ErrUnsafePath)
		}
	}
	return nil
}

// checkTarget checks a symlink target: lexically inside the tree
// (tree.CheckLink), valid UTF-8 without control characters, at most
// tree.MaxPathLen bytes.
func checkTarget(p, target string) error {
	if err := tree.CheckLink(p, target); err != nil {
		return fmt.Errorf("%w: %w", ErrLinkEscape, err)
	}
	if len(target) > tree.MaxPathLen || !validText(target) {
		return fmt.Errorf("%w: %s -> %q: target too long, invalid UTF-8 or control character (%w)", ErrUnsafeEntry, p, target, tree.ErrUnsafePath)
	}
	return nil
}

func validText(s string) bool {
	for _, r := range s {
		if r == 0xFFFD || r < 0x20 || r == 0x7F {
			return false
		}
	}
	return true
}

// newCompressor returns the compressing writer of format over w; window
// is the zstd window (a power of two up to ZstdWindow).
func newCompressor(w io.Writer, format Format, window int) (io.WriteCloser, error) {
	switch format {
	case TarZst:
		enc, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithWindowSize(window),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(true),
			// The same output with a history buffer of the window plus a
			// block instead of two windows (32 MiB less to allocate).
			zstd.WithLowerEncoderMem(true),
		)
		if err != nil {
			return nil, fmt.Errorf("fallback: zstd: %w", err)
		}
		return enc, nil
	case TarGz:
		gz, err := gzip.NewWriterLevel(w, GzipLevel)
		if err != nil {
			return nil, fmt.Errorf("fallback: gzip: %w", err)
		}
		gz.Name, gz.Comment, gz.ModTime, gz.OS, gz.Extra = "", "", time.Time{}, 255, nil
		return gz, nil
	}
	return nil, format.valid()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
