package fallback

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/deltaup/deltaup/internal/tree"
)

// FrameTarBound is the most tar bytes a frame holding entries may
// decompress to: per entry a header with room for PAX records (512 + 4 KiB)
// and the data padded to 512 bytes, plus the end-of-archive marker and the
// trailing zeros Extract allows. ReadFrame stops there (ErrLimit).
func FrameTarBound(entries []tree.Entry) int64 {
	n := int64(2*512 + MaxTrailingZeros)
	for _, e := range entries {
		n += 512 + metaPerEntry
		if e.Type == tree.File && e.Size > 0 {
			n += (e.Size + 511) &^ 511
		}
	}
	return n
}

// ReadFrame reads one frame of a framed tar.zst archive (Write with
// WriteOptions.Framed; Stats.Frames): r yields the frame's compressed
// bytes, which the caller has already checked against a signed SHA-256, and
// entries are the entries the frame holds, in order, as a signed file list
// gives them (files with their size and SHA-256). For each file ReadFrame
// calls file (when not nil) with the entry and a reader of exactly its
// bytes; after file returns, the rest of the file is read and its SHA-256
// checked. So an error from ReadFrame means the caller must discard what
// file wrote.
//
// The frame must decompress (zstd, window at most MaxZstdWindow, at most
// FrameTarBound(entries) bytes) to exactly these entries — same path, type,
// permission bits, size, target and content — followed by nothing or by
// zeros (the end-of-archive marker of the last frame). Errors: ErrMismatch
// (another entry, field or content), ErrCorrupt (a bad zstd or tar
// stream, data after the entries), ErrLimit (the bound or the window),
// ErrUnsafeEntry (an entry of entries with an unsafe path); errors of r,
// file and ctx are returned as they are.
func ReadFrame(ctx context.Context, r io.Reader, entries []tree.Entry, file func(e tree.Entry, r io.Reader) error) error {
	for _, e := range entries {
		if err := tree.CheckPath(e.Path); err != nil {
			return fmt.Errorf("%w: %w", ErrUnsafeEntry, err)
		}
	}
	src := &srcReader{r: r}
	dec, closeDec, err := newDecompressor(src, TarZst)
	if err != nil {
		return frameErr(ctx, src, err)
	}
	defer closeDec()
	bound := FrameTarBound(entries)
	lr := &io.LimitedReader{R: dec, N: bound + 1}
	cr := &countReader{r: lr, ctx: ctx}
	tr := tar.NewReader(cr)
	buf := make([]byte, 64<<10)
	for i, want := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if lr.N <= 0 {
				return fmt.Errorf("%w: the frame decompresses to more than %d bytes", ErrLimit, bound)
			}
			return fmt.Errorf("%w: the frame ends after %d of its %d entries (%s is not in it)", ErrMismatch, i, len(entries), want.Path)
		}
		if err != nil {
			return frameErr(ctx, src, limitErr(lr, bound, err))
		}
		if err := frameEntryMatches(hdr, want); err != nil {
			return err
		}
		if want.Type != tree.File {
			continue
		}
		h := sha256.New()
		body := &srcReader{r: io.TeeReader(io.LimitReader(tr, want.Size), h)}
		if file != nil {
			if err := file(want, body); err != nil {
				if body.err != nil { // the frame's fault, not the callback's
					return frameErr(ctx, src, limitErr(lr, bound, body.err))
				}
				return err
			}
		}
		if _, err := io.CopyBuffer(io.Discard, body, buf); err != nil {
			return frameErr(ctx, src, limitErr(lr, bound, err))
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		if sum != want.SHA256 {
			return fmt.Errorf("%w: %s in the frame has SHA-256 %x, the file list says %x", ErrMismatch, want.Path, sum, want.SHA256)
		}
	}
	hdr, err := tr.Next()
	switch {
	case err == nil:
		return fmt.Errorf("%w: the frame holds %s after its %d entries", ErrMismatch, strings.TrimSuffix(hdr.Name, "/"), len(entries))
	case err != io.EOF:
		return frameErr(ctx, src, limitErr(lr, bound, err))
	}
	if err := checkTrailer(cr); err != nil {
		return frameErr(ctx, src, limitErr(lr, bound, err))
	}
	if lr.N <= 0 {
		return fmt.Errorf("%w: the frame decompresses to more than %d bytes", ErrLimit, bound)
	}
	return nil
}

// frameEntryMatches checks a frame's header against the entry the file
// list has at its place.
func frameEntryMatches(hdr *tar.Header, want tree.Entry) error {
	var typ tree.Type
	switch hdr.Typeflag {
	case tar.TypeReg:
		typ = tree.File
	case tar.TypeDir:
		typ = tree.Dir
	case tar.TypeSymlink:
		typ = tree.Symlink
	default:
		return fmt.Errorf("%w: %s in the frame is a %s, the file list has a %s", ErrMismatch, hdr.Name, typeName(hdr.Typeflag), want.Type)
	}
	name := strings.TrimPrefix(hdr.Name, "./")
	if typ == tree.Dir {
		name = strings.TrimSuffix(name, "/")
	}
	switch {
	case name != want.Path:
		return fmt.Errorf("%w: the frame holds %q where the file list has %q", ErrMismatch, name, want.Path)
	case typ != want.Type:
		return fmt.Errorf("%w: %s is a %s in the frame, a %s in the file list", ErrMismatch, name, typ, want.Type)
	case typ == tree.File && hdr.Size != want.Size:
		return fmt.Errorf("%w: %s has %d bytes in the frame, %d in the file list", ErrMismatch, name, hdr.Size, want.Size)
	case typ != tree.File && hdr.Size != 0:
		return fmt.Errorf("%w: %s: %s with size %d", ErrCorrupt, name, typ, hdr.Size)
	case typ != tree.Symlink && hdr.Mode&0o777 != int64(want.Mode.Perm()):
		return fmt.Errorf("%w: %s has mode %04o in the frame, %04o in the file list", ErrMismatch, name, hdr.Mode&0o777, want.Mode.Perm())
	case typ == tree.Symlink && hdr.Linkname != want.Target:
		return fmt.Errorf("%w: %s -> %q in the frame, -> %q in the file list", ErrMismatch, name, hdr.Linkname, want.Target)
	}
	return nil
}

// limitErr turns an error met once the bound was reached into ErrLimit.
func limitErr(lr *io.LimitedReader, bound int64, err error) error {
	if lr.N <= 0 {
		return fmt.Errorf("%w: the frame decompresses to more than %d bytes", ErrLimit, bound)
	}
	return err
}

// frameErr classifies an error met while reading a frame.
func frameErr(ctx context.Context, src *srcReader, err error) error {
	x := &extractor{ctx: ctx, src: src}
	switch {
	case errors.Is(err, ErrLimit), errors.Is(err, ErrMismatch):
		return err
	}
	return x.streamErr(err)
}
