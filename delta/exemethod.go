package delta

import (
	"context"
	"io"
	"runtime/debug"
)

// exeCandidate codes newb against old with the exe-bsdiff-cm method when
// both are x86-64 or arm64 executables of the same architecture that
// exeCode understands; ok is false (and nothing is spent beyond parsing the
// section tables) otherwise. Cost: a second bsdiff pass over filtered
// copies of both files (memory: len(old)+len(newb) for the copies plus the
// suffix array, 4*len(old)).
func exeCandidate(ctx context.Context, old, newb []byte, workers int) (body []byte, ok bool, err error) {
	archO, oldR := exeCode(old)
	archN, newR := exeCode(newb)
	if archO == 0 || archO != archN {
		return nil, false, nil
	}
	fo := append([]byte(nil), old...)
	fn := append([]byte(nil), newb...)
	filterAll(fo, archO, oldR, true)
	filterAll(fn, archN, newR, true)
	m, err := newMatcher(fo)
	if err != nil {
		return nil, false, err
	}
	ops, err := diffOps(ctx, m, fn, workers, nil)
	if err != nil {
		return nil, false, err
	}
	m.sa, m.bucket = nil, nil
	debug.FreeOSMemory()
	h := exeHeader(archO, oldR, newR)
	return append(h, encodeSegments(fo, fn, ops, workers)...), true, nil
}

// applyExe rebuilds the new file of an exe-bsdiff-cm body: the old file is
// copied and filtered (the only extra memory: len(old)), the bsdiff-cm
// segments decode against it, and the output is unfiltered as it streams
// to w. gate is the old file's check; nothing reaches w before it passes.
func applyExe(ctx context.Context, old, body []byte, hd header, w io.Writer, gate func() error) error {
	arch, oldR, newR, rest, err := parseExeHeader(body, hd.oldSize, hd.newSize)
	if err != nil {
		return err
	}
	segs, err := parseSegments(rest, hd.newSize)
	if err != nil {
		return err
	}
	fo := append([]byte(nil), old...)
	filterAll(fo, arch, oldR, true)
	uw := &unfilterWriter{w: w, f: exeFilter{arch: arch, ranges: newR}}
	if err := decodeSegmentsStream(ctx, fo, segs, uw, gate); err != nil {
		return err
	}
	return uw.flush()
}
