package delta

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	dsbzip2 "github.com/dsnet/compress/bzip2"
)

// The classic bsdiff 4.x container (Colin Percival's BSDIFF40):
//
//	0      8  "BSDIFF40"
//	8      8  X = length of bzip2(control block)
//	16     8  Y = length of bzip2(diff block)
//	24     8  size of the new file
//	32     X  bzip2(control block): triples (add, extra, seek)
//	32+X   Y  bzip2(diff block)
//	32+X+Y .. bzip2(extra block)
//
// Integers are 64-bit little-endian sign-magnitude (the top bit of the last
// byte is the sign).
const bsdiffMagic = "BSDIFF40"

func offtout(x int64, b []byte) {
	u := uint64(x)
	if x < 0 {
		u = uint64(-x) | 1<<63
	}
	binary.LittleEndian.PutUint64(b, u)
}

// offtin decodes a sign-magnitude integer; ok is false for "negative zero"
// and magnitudes over 2^62, which no real patch holds.
func offtin(b []byte) (v int64, ok bool) {
	u := binary.LittleEndian.Uint64(b)
	mag := u &^ (1 << 63)
	if mag > 1<<62 {
		return 0, false
	}
	if u>>63 != 0 {
		if mag == 0 {
			return 0, false
		}
		return -int64(mag), true
	}
	return int64(mag), true
}

func writeBSDIFF40(w io.Writer, old, newb []byte, ops []op) error {
	compress := func(fill func(io.Writer) error) ([]byte, error) {
		var buf bytes.Buffer
		zw, err := dsbzip2.NewWriter(&buf, &dsbzip2.WriterConfig{Level: 9})
		if err != nil {
			return nil, err
		}
		bw := bufio.NewWriterSize(zw, 64<<10)
		if err := fill(bw); err != nil {
			return nil, err
		}
		if err := bw.Flush(); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	ctrl, err := compress(func(w io.Writer) error {
		var b [24]byte
		for i, o := range ops {
			seek := int64(0)
			if i+1 < len(ops) {
				seek = ops[i+1].oldPos - (o.oldPos + o.addLen)
			}
			offtout(o.addLen, b[0:])
			offtout(o.extraLen, b[8:])
			offtout(seek, b[16:])
			if _, err := w.Write(b[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delta: bzip2: %w", err)
	}
	diff, err := compress(func(w io.Writer) error {
		var np int64
		buf := make([]byte, 0, 64<<10)
		for _, o := range ops {
			for i := int64(0); i < o.addLen; i++ {
				buf = append(buf, newb[np+i]-old[o.oldPos+i])
				if len(buf) == cap(buf) {
					if _, err := w.Write(buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
			}
			np += o.addLen + o.extraLen
		}
		_, err := w.Write(buf)
		return err
	})
	if err != nil {
		return fmt.Errorf("delta: bzip2: %w", err)
	}
	hdr := make([]byte, 32)
	copy(hdr, bsdiffMagic)
	offtout(int64(len(ctrl)), hdr[8:])
	offtout(int64(len(diff)), hdr[16:])
	offtout(int64(len(newb)), hdr[24:])
	for _, b := range [][]byte{hdr, ctrl, diff} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	zw, err := dsbzip2.NewWriter(w, &dsbzip2.WriterConfig{Level: 9})
	if err != nil {
		return fmt.Errorf("delta: bzip2: %w", err)
	}
	var np int64
	for _, o := range ops {
		np += o.addLen
		if _, err := zw.Write(newb[np : np+o.extraLen]); err != nil {
			return err
		}
		np += o.extraLen
	}
	return zw.Close()
}

// applyBSDIFF40 applies a classic patch. Unlike bspatch it rejects add
// regions that reach outside the old file (bsdiff never makes them).
func applyBSDIFF40(ctx context.Context, old []byte, r io.Reader, w io.Writer, o *ApplyOptions) (PatchInfo, error) {
	info := PatchInfo{Format: FormatBSDIFF40}
	maxPatch := o.MaxPatchSize
	if maxPatch == 0 {
		maxPatch = o.MaxNewSize + 64<<10
	}
	// The header first: the new size is checked against the cap before the
	// rest of the patch is read into memory.
	patch := make([]byte, 32)
	if n, err := io.ReadFull(r, patch); err != nil {
		if n < 32 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
			return info, fmt.Errorf("%w: BSDIFF40 header truncated", ErrCorrupt)
		}
		return info, fmt.Errorf("delta: reading patch: %w", err)
	}
	x, ok1 := offtin(patch[8:])
	y, ok2 := offtin(patch[16:])
	newSize, ok3 := offtin(patch[24:])
	if !ok1 || !ok2 || !ok3 || x < 0 || y < 0 || newSize < 0 {
		return info, fmt.Errorf("%w: BSDIFF40 header has negative or oversized lengths", ErrCorrupt)
	}
	info.NewSize = newSize
	if err := o.checkNewSize(newSize); err != nil {
		return info, err
	}
	pb := bytes.NewBuffer(patch)
	if _, err := pb.ReadFrom(io.LimitReader(r, maxPatch+1-32)); err != nil {
		return info, fmt.Errorf("delta: reading patch: %w", err)
	}
	patch = pb.Bytes()
	if int64(len(patch)) > maxPatch {
		return info, fmt.Errorf("%w: patch exceeds the cap of %d bytes", ErrTooLarge, maxPatch)
	}
	if x > int64(len(patch))-32 || y > int64(len(patch))-32-x {
		return info, fmt.Errorf("%w: BSDIFF40 block lengths (%d, %d) exceed the %d-byte patch", ErrCorrupt, x, y, len(patch))
	}
	ctrl := bzip2.NewReader(bytes.NewReader(patch[32 : 32+x]))
	diff := bzip2.NewReader(bytes.NewReader(patch[32+x : 32+x+y]))
	extra := bzip2.NewReader(bytes.NewReader(patch[32+x+y:]))
	hw := &hashWriter{w: w, h: sha256.New()}
	bw := bufio.NewWriterSize(hw, 64<<10)
	buf := make([]byte, 64<<10)
	readFull := func(r io.Reader, b []byte, what string) error {
		if _, err := io.ReadFull(r, b); err != nil {
			var se bzip2.StructuralError
			if errors.As(err, &se) {
				return fmt.Errorf("%w: %s block: %v", ErrCorrupt, what, err)
			}
			return fmt.Errorf("%w: %s block truncated: %v", ErrCorrupt, what, err)
		}
		return nil
	}
	oldSize := int64(len(old))
	var np, oldPos int64
	var t [24]byte
	for step := 0; np < newSize; step++ {
		if step&1023 == 0 && ctx.Err() != nil {
			return info, ctx.Err()
		}
		if err := readFull(ctrl, t[:], "control"); err != nil {
			return info, err
		}
		add, ok1 := offtin(t[0:])
		ext, ok2 := offtin(t[8:])
		seek, ok3 := offtin(t[16:])
		if !ok1 || !ok2 || !ok3 || add < 0 || ext < 0 {
			return info, fmt.Errorf("%w: control triple %d has negative or oversized lengths", ErrCorrupt, step)
		}
		if add > newSize-np || ext > newSize-np-add {
			return info, fmt.Errorf("%w: control triple %d (%d+%d bytes) overruns the %d-byte output at %d", ErrCorrupt, step, add, ext, newSize, np)
		}
		if oldPos < 0 || oldPos > oldSize || add > oldSize-oldPos {
			return info, fmt.Errorf("%w: control triple %d reads old bytes [%d,%d) outside the %d-byte old file", ErrCorrupt, step, oldPos, oldPos+add, oldSize)
		}
		for done := int64(0); done < add; {
			n := min(int64(len(buf)), add-done)
			if err := readFull(diff, buf[:n], "diff"); err != nil {
				return info, err
			}
			src := old[oldPos+done : oldPos+done+n]
			for i := range src {
				buf[i] += src[i]
			}
			if _, err := bw.Write(buf[:n]); err != nil {
				return info, err
			}
			done += n
		}
		np += add
		oldPos += add
		for done := int64(0); done < ext; {
			n := min(int64(len(buf)), ext-done)
			if err := readFull(extra, buf[:n], "extra"); err != nil {
				return info, err
			}
			if _, err := bw.Write(buf[:n]); err != nil {
				return info, err
			}
			done += n
		}
		np += ext
		oldPos += seek // |seek| <= 2^62 and |oldPos| <= 2^62: no overflow; range checked at next use
		if oldPos < -(1<<62) || oldPos > 1<<62 {
			return info, fmt.Errorf("%w: control triple %d seeks to %d", ErrCorrupt, step, oldPos)
		}
	}
	for _, s := range []struct {
		r    io.Reader
		name string
	}{{ctrl, "control"}, {diff, "diff"}, {extra, "extra"}} {
		if n, err := s.r.Read(buf[:1]); n != 0 || (err != nil && err != io.EOF) {
			return info, fmt.Errorf("%w: trailing data in the %s block", ErrCorrupt, s.name)
		}
	}
	if err := bw.Flush(); err != nil {
		return info, err
	}
	copy(info.NewSum[:], hw.h.Sum(nil))
	return info, nil
}
