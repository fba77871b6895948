// Package delta turns an (old file, new file) pair into a small patch and
// back. See docs/FORMAT.md for the byte layout of every format here.
//
// Diff runs the bsdiff algorithm (suffix array of the old file built in
// linear time with SA-IS, 32-bit indices; the scan split over the available
// cores) and codes the edit script with a context-mixing range coder that
// models the difference bytes from the old bytes under them. It also tries,
// where they can win, zstd with the old file as a raw dictionary (what
// `zstd --patch-from` does) and plain zstd of the new file, and keeps the
// smallest. Classic BSDIFF40 patches (bzip2) are written on request and read.
//
// Apply checks everything in a patch against the caps the caller gives and
// against the old file before it writes a byte, writes the new file as a
// stream, and verifies the SHA-256 the patch carries.
package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/klauspost/compress/zstd"
)

// Method says how a native patch encodes the new file.
type Method uint8

// Methods of the native format.
const (
	// MethodBsdiffCM: bsdiff edit script coded with the cm1 context-mixing
	// range coder.
	MethodBsdiffCM Method = 1
	// MethodZstdDict: zstd frame of the new file with the old file as a raw
	// dictionary (like `zstd --patch-from`).
	MethodZstdDict Method = 2
	// MethodZstd: plain zstd frame of the new file.
	MethodZstd Method = 3
	// MethodExeBsdiffCM: the code ranges of an x86-64 or arm64 executable
	// filtered (relative branch targets made absolute) on both sides, then
	// bsdiff-cm; see exefilter.go.
	MethodExeBsdiffCM Method = 4
	// MethodExeZstdDict: the same filter, then zstd of the filtered new
	// file with the filtered old file as a raw dictionary.
	MethodExeZstdDict Method = 5
	// MethodBsdiffCM2: method 1's segments coded with cm2, cm1 plus a
	// prediction of each non-zero difference byte from the last one coded
	// over the same old byte (docs/FORMAT.md "Methods 6 and 7").
	MethodBsdiffCM2 Method = 6
	// MethodExeBsdiffCM2: method 4 with its segments coded with cm2.
	MethodExeBsdiffCM2 Method = 7
	// MethodExe2BsdiffCM: method 4 with an adaptive reference prediction:
	// a reference's target is predicted first from the new target its old
	// target had when last coded, and RELA record offsets from the last
	// record's shift (docs/FORMAT.md "Methods 8 and 9"). Diff writes it
	// instead of method 4.
	MethodExe2BsdiffCM Method = 8
	// MethodExe2BsdiffCM2: method 8 with its segments coded with cm2; Diff
	// writes it instead of method 7.
	MethodExe2BsdiffCM2 Method = 9
)

// supersededMethods are read but no longer written unless asked for by
// name (DiffOptions.Methods): methods 8 and 9 replace them.
var supersededMethods = []Method{MethodExeBsdiffCM, MethodExeBsdiffCM2}

// methodsBeforeCM2 are the methods clients read before cm2 (methods 6 and
// 7): what a bundle for older clients (BundleOptions.NoSolid) keeps to.
var methodsBeforeCM2 = []Method{MethodBsdiffCM, MethodZstdDict, MethodZstd, MethodExeBsdiffCM, MethodExeZstdDict}

// lastMethod is the highest method this build reads.
const lastMethod = MethodExe2BsdiffCM2

func (m Method) String() string {
	switch m {
	case MethodBsdiffCM:
		return "bsdiff-cm"
	case MethodZstdDict:
		return "zstd-dict"
	case MethodZstd:
		return "zstd"
	case MethodExeBsdiffCM:
		return "exe-bsdiff-cm"
	case MethodExeZstdDict:
		return "exe-zstd-dict"
	case MethodBsdiffCM2:
		return "bsdiff-cm2"
	case MethodExeBsdiffCM2:
		return "exe-bsdiff-cm2"
	case MethodExe2BsdiffCM:
		return "exe2-bsdiff-cm"
	case MethodExe2BsdiffCM2:
		return "exe2-bsdiff-cm2"
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// Format selects the patch container that Diff writes.
type Format int

const (
	// FormatNative is deltaup's own format (magic "DUPT").
	FormatNative Format = iota
	// FormatBSDIFF40 is the classic bsdiff 4.x format (bzip2 streams), for
	// the bsdiff/bspatch tools. It carries no hash.
	FormatBSDIFF40
)

func (f Format) String() string {
	switch f {
	case FormatNative:
		return "native"
	case FormatBSDIFF40:
		return "bsdiff40"
	}
	return fmt.Sprintf("format(%d)", int(f))
}

// ParseFormat maps "native" and "bsdiff40" to their Format.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "native", "":
		return FormatNative, nil
	case "bsdiff40", "BSDIFF40", "bsdiff":
		return FormatBSDIFF40, nil
	}
	return 0, fmt.Errorf("delta: unknown patch format %q (want native or bsdiff40)", s)
}

const (
	nativeMagic   = "DUPT"
	nativeVersion = 1
	headerSize    = 100

	// MaxFileSize is the largest old or new file Diff accepts: the suffix
	// array uses 32-bit indices.
	MaxFileSize = 1<<31 - 1

	// DefaultMaxNewSize is ApplyOptions.MaxNewSize when it is zero.
	DefaultMaxNewSize = 1 << 30

	// zstdTryBelow: files up to this size always get the zstd candidates.
	zstdTryBelow = 4 << 20
)

// DiffOptions tune Diff. The zero value is valid: native format, every core.
type DiffOptions struct {
	// Format of the patch; default FormatNative.
	Format Format
	// Workers is the number of goroutines that scan the new file; 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// Methods restricts the native methods tried; nil means all but the
	// superseded methods 4 and 7, where the
	// zstd ones are tried only when they can plausibly win: new files up to
	// 4 MiB, or when the bsdiff patch exceeds 20% of the new file (on close
	// versions the bsdiff-cm patch is several times smaller than zstd's, and
	// each zstd pass costs seconds and a window the size of both files).
	Methods []Method
}

func (o *DiffOptions) validate() error {
	if o.Format != FormatNative && o.Format != FormatBSDIFF40 {
		return fmt.Errorf("delta: unknown format %d", o.Format)
	}
	if o.Workers < 0 {
		return fmt.Errorf("delta: Workers is %d, want >= 0", o.Workers)
	}
	for _, m := range o.Methods {
		if m < MethodBsdiffCM || m > lastMethod {
			return fmt.Errorf("delta: unknown method %d", m)
		}
	}
	return nil
}

// DiffStats reports what Diff did.
type DiffStats struct {
	// Index, Scan and Encode are the wall times of building the suffix
	// array, scanning for matches and coding the patch.
	Index, Scan, Encode time.Duration

	Format     Format
	Method     Method           // the method kept (native format)
	PatchSize  int64            // bytes written
	Candidates map[Method]int64 // body size of every method tried
}

// Diff writes to w a patch that turns old into newb.
//
// Cost: time O(n) for the suffix array plus the scan (about 1 s for 10 MB on
// one core of a 2020s CPU, the scan shared among Workers); memory about
// len(old)*5 + len(newb) + 12 MiB for the native format. Both files must be
// under MaxFileSize.
func Diff(ctx context.Context, old, newb []byte, w io.Writer, opts *DiffOptions) (DiffStats, error) {
	return diff(ctx, old, newb, w, opts, nil)
}

// diff is Diff; release, when set, is called with each range of newb the
// scan is done with (DiffFile drops those pages of its memory-mapped new
// file, so that the new file is not resident beside the suffix array).
func diff(ctx context.Context, old, newb []byte, w io.Writer, opts *DiffOptions, release func(start, end int)) (DiffStats, error) {
	var o DiffOptions
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return DiffStats{}, err
	}
	if len(old) > MaxFileSize || len(newb) > MaxFileSize {
		return DiffStats{}, fmt.Errorf("%w: files over %d bytes are not supported", ErrTooLarge, MaxFileSize)
	}
	if err := ctx.Err(); err != nil {
		return DiffStats{}, err
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	want := func(m Method) bool {
		if o.Methods == nil {
			return !slices.Contains(supersededMethods, m)
		}
		for _, x := range o.Methods {
			if x == m {
				return true
			}
		}
		return false
	}
	st := DiffStats{Format: o.Format, Candidates: map[Method]int64{}}
	// The old file's hash is computed on another core while the suffix
	// array (single-threaded) is built; the new file's after the scan, so
	// that its pages need not be resident during it.
	oldSumc := make(chan [32]byte, 1)
	if o.Format == FormatNative {
		go func() { oldSumc <- sha256.Sum256(old) }()
	}

	var ops []op
	near := inPlaceEdit(old, newb)
	scan := o.Format == FormatBSDIFF40 || want(MethodBsdiffCM) || want(MethodBsdiffCM2)
	if near && scan {
		// The edit script a scan would find, without the suffix array.
		ops = []op{{oldPos: 0, addLen: int64(len(newb))}}
		if release != nil {
			release(0, len(newb))
		}
	} else if scan {
		t0 := time.Now()
		m, err := newMatcher(old)
		if err != nil {
			return st, err
		}
		t1 := time.Now()
		st.Index = t1.Sub(t0)
		ops, err = diffOps(ctx, m, newb, o.Workers, release)
		if err != nil {
			return st, err
		}
		st.Scan = time.Since(t1)
		// The suffix array is four times the old file: give it back before
		// the coders allocate.
		m.sa, m.bucket = nil, nil
		if len(old) >= freeOSMemoryFrom {
			debug.FreeOSMemory()
		}
	}
	if o.Format == FormatBSDIFF40 {
		cw := &countWriter{w: w}
		err := writeBSDIFF40(cw, old, newb, ops)
		st.PatchSize = cw.n
		return st, err
	}

	var best []byte
	if ops != nil {
		t2 := time.Now()
		for _, m := range []Method{MethodBsdiffCM, MethodBsdiffCM2} {
			if !want(m) {
				continue
			}
			body := encodeSegmentsCoder(old, newb, ops, o.Workers, m == MethodBsdiffCM2)
			st.Candidates[m] = int64(len(body))
			if best == nil || len(body) < len(best) {
				best, st.Method = body, m
			}
		}
		st.Encode = time.Since(t2)
	}
	var ex *exeInput
	exeBsdiff := slices.ContainsFunc(exeBsdiffMethods, want)
	if (exeBsdiff || want(MethodExeZstdDict)) && len(old) > 0 && (!near || ops == nil) {
		ex = prepareExe(old, newb)
	}
	if ex != nil && exeBsdiff {
		bodies, err := ex.bsdiffBodies(ctx, o.Workers, want)
		if err != nil {
			return st, err
		}
		for _, m := range exeBsdiffMethods {
			if body := bodies[m]; body != nil {
				st.Candidates[m] = int64(len(body))
				if best == nil || len(body) < len(best) {
					best, st.Method = body, m
				}
			}
		}
	}
	tryZstd := o.Methods != nil || len(newb) <= zstdTryBelow || best == nil || int64(len(best)) > int64(len(newb))/5
	for _, m := range []Method{MethodZstdDict, MethodZstd, MethodExeZstdDict} {
		if !want(m) || !tryZstd {
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if m == MethodExeZstdDict {
			if ex == nil {
				continue
			}
			body, err := ex.zstdBody()
			if err != nil {
				return st, err
			}
			st.Candidates[m] = int64(len(body))
			if best == nil || len(body) < len(best) {
				best, st.Method = body, m
			}
			continue
		}
		var dict []byte
		if m == MethodZstdDict {
			if len(old) == 0 && want(MethodZstd) {
				continue // the same as plain zstd
			}
			dict = old
		}
		body, err := zstdEncode(newb, dict)
		if err != nil {
			return st, err
		}
		st.Candidates[m] = int64(len(body))
		if best == nil || len(body) < len(best) {
			best, st.Method = body, m
		}
	}
	if best == nil {
		return st, errors.New("delta: no method selected")
	}
	hdr := makeHeader(st.Method, int64(len(old)), int64(len(newb)), <-oldSumc, sha256.Sum256(newb), int64(len(best))+4)
	if _, err := w.Write(hdr); err != nil {
		return st, err
	}
	if _, err := w.Write(best); err != nil {
		return st, err
	}
	var trailer [4]byte
	binary.LittleEndian.PutUint32(trailer[:], crc32.Checksum(best, castagnoli))
	if _, err := w.Write(trailer[:]); err != nil {
		return st, err
	}
	st.PatchSize = int64(len(hdr) + len(best) + len(trailer))
	return st, nil
}

// inPlaceEdit reports whether newb is old with a few bytes changed in
// place: the same length (at least 64 KiB) and at most one byte in 1,024
// different, as when a rebuild only changes a version string or a stamp.
// The edit script is then one step (every byte a difference, most of them
// zero), which is what the suffix-array scan would find, and no method
// codes it meaningfully smaller; Diff skips the suffix arrays of bsdiff-cm
// and of the executable methods (about a second per 10 MB each). Cost: one
// pass over both files, stopping at the limit.
func inPlaceEdit(old, newb []byte) bool {
	if len(old) != len(newb) || len(old) < 64<<10 {
		return false
	}
	const chunk = 4 << 10
	left := len(old) / 1024
	for i := 0; i < len(old); i += chunk {
		e := min(i+chunk, len(old))
		a, b := old[i:e], newb[i:e]
		if bytes.Equal(a, b) {
			continue
		}
		for j := range a {
			if a[j] != b[j] {
				if left--; left < 0 {
					return false
				}
			}
		}
	}
	return true
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

// zstdWindow returns the window a zstd patch of newb over dict needs.
func zstdWindow(dictLen, newLen int) int {
	need := dictLen + newLen
	w := zstd.MinWindowSize
	for w < need && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

func zstdEncode(newb, dict []byte) ([]byte, error) {
	// The best level costs ~40 ms just to set up its tables, which
	// dominates on small files (trees hold many); below 256 KiB the
	// "better" level takes a few ms (less from the pool) for sizes 3-5%
	// larger (prettier's changed files, where the edit-script coders are
	// smaller than either anyway).
	level := zstd.SpeedBestCompression
	if len(newb) < 256<<10 {
		level = zstd.SpeedBetterCompression
	}
	window := zstdWindow(len(dict), len(newb))
	if level == zstd.SpeedBetterCompression && window <= zstdPoolWindow {
		return zstdEncodePooled(newb, dict, window)
	}
	enc, err := zstd.NewWriter(nil, zstdOptions(level, window, dict)...)
	if err != nil {
		return nil, fmt.Errorf("delta: zstd encoder: %w", err)
	}
	defer enc.Close()
	return enc.EncodeAll(newb, nil), nil
}

// zstdOptions are the encoder options of the zstd methods.
func zstdOptions(level zstd.EncoderLevel, window int, dict []byte) []zstd.EOption {
	eopts := []zstd.EOption{
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false),
		zstd.WithWindowSize(window),
		// The same output with a history buffer of the window plus a
		// block instead of two windows: each call allocates (and clears)
		// about half the memory.
		zstd.WithLowerEncoderMem(true),
	}
	if len(dict) > 0 {
		eopts = append(eopts, zstd.WithEncoderDictRaw(0, dict))
	}
	return eopts
}

// freeOSMemoryFrom is the old-file size from which Diff returns the suffix
// array's memory to the OS before coding (a forced collection: its cost,
// paid on every small file of a tree, is not worth a few MiB).
const freeOSMemoryFrom = 8 << 20

// zstdPoolWindow is the largest window whose encoders zstdEncodePooled
// keeps: an encoder holds about 17 MiB of tables plus twice its window.
const zstdPoolWindow = 4 << 20

type zstdPoolKey struct {
	window int
	dict   bool
}

// zstdPools holds encoders of the "better" level by window and by whether
// they take a dictionary. A tree has many small files, and each one's
// candidates cost a new encoder: its tables (about 8 MiB) allocated,
// cleared and faulted in cost more than coding a small file. A pooled
// encoder only rebuilds its dictionary tables. Its output is the same
// bytes (TestZstdEncodePooled). The pools empty at garbage collection.
var zstdPools sync.Map // zstdPoolKey -> *sync.Pool

func zstdEncodePooled(newb, dict []byte, window int) ([]byte, error) {
	pv, _ := zstdPools.LoadOrStore(zstdPoolKey{window, len(dict) > 0}, new(sync.Pool))
	pool := pv.(*sync.Pool)
	enc, _ := pool.Get().(*zstd.Encoder)
	if enc == nil {
		var err error
		if enc, err = zstd.NewWriter(nil, zstdOptions(zstd.SpeedBetterCompression, window, dict)...); err != nil {
			return nil, fmt.Errorf("delta: zstd encoder: %w", err)
		}
	} else if len(dict) > 0 {
		if err := enc.ResetWithOptions(nil, zstd.WithEncoderDictRaw(0, dict)); err != nil {
			return nil, fmt.Errorf("delta: zstd encoder: %w", err)
		}
	}
	out := enc.EncodeAll(newb, nil)
	pool.Put(enc)
	return out, nil
}

// header layout (docs/FORMAT.md): magic, version, method, 2 reserved bytes,
// old size, new size, old SHA-256, new SHA-256, body size, CRC-32C of the
// preceding 96 bytes.
type header struct {
	method  Method
	oldSize int64
	newSize int64
	oldSum  [32]byte
	newSum  [32]byte
	bodyLen int64
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func makeHeader(m Method, oldSize, newSize int64, oldSum, newSum [32]byte, bodyLen int64) []byte {
	h := make([]byte, headerSize)
	copy(h, nativeMagic)
	h[4] = nativeVersion
	h[5] = byte(m)
	binary.LittleEndian.PutUint64(h[8:], uint64(oldSize))
	binary.LittleEndian.PutUint64(h[16:], uint64(newSize))
	copy(h[24:], oldSum[:])
	copy(h[56:], newSum[:])
	binary.LittleEndian.PutUint64(h[88:], uint64(bodyLen))
	binary.LittleEndian.PutUint32(h[96:], crc32.Checksum(h[:96], castagnoli))
	return h
}

func parseHeader(h []byte) (header, error) {
	var hd header
	if string(h[:4]) != nativeMagic {
		return hd, fmt.Errorf("%w: bad magic %q", ErrFormat, h[:4])
	}
	if binary.LittleEndian.Uint32(h[96:]) != crc32.Checksum(h[:96], castagnoli) {
		return hd, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	if h[4] != nativeVersion {
		return hd, fmt.Errorf("%w: format version %d (this build reads %d; update deltaup)", ErrFormat, h[4], nativeVersion)
	}
	hd.method = Method(h[5])
	if hd.method < MethodBsdiffCM || hd.method > lastMethod {
		return hd, fmt.Errorf("%w: unknown method %d", ErrFormat, h[5])
	}
	if h[6] != 0 || h[7] != 0 {
		return hd, fmt.Errorf("%w: reserved header bytes are set", ErrCorrupt)
	}
	o := binary.LittleEndian.Uint64(h[8:])
	n := binary.LittleEndian.Uint64(h[16:])
	b := binary.LittleEndian.Uint64(h[88:])
	if o > MaxFileSize || n > 1<<62 || b > 1<<62 {
		return hd, fmt.Errorf("%w: header sizes out of range (old %d, new %d, body %d)", ErrCorrupt, o, n, b)
	}
	hd.oldSize, hd.newSize, hd.bodyLen = int64(o), int64(n), int64(b)
	copy(hd.oldSum[:], h[24:56])
	copy(hd.newSum[:], h[56:88])
	return hd, nil
}

// ApplyOptions tune Apply. The zero value is valid.
type ApplyOptions struct {
	// MaxNewSize caps the new file size a patch may declare; default
	// DefaultMaxNewSize (1 GiB). A patch over it fails with ErrTooLarge
	// before anything is allocated or written.
	MaxNewSize int64
	// MaxPatchSize caps the patch size; default the new size plus 1/64 plus
	// 64 KiB for native patches (no valid patch is larger), and MaxNewSize
	// for BSDIFF40 ones.
	MaxPatchSize int64
}

func (o *ApplyOptions) validate() error {
	if o.MaxNewSize < 0 || o.MaxPatchSize < 0 {
		return fmt.Errorf("delta: negative size cap")
	}
	if o.MaxNewSize == 0 {
		o.MaxNewSize = DefaultMaxNewSize
	}
	return nil
}

// checkNewSize refuses a declared new size over the cap.
func (o *ApplyOptions) checkNewSize(n int64) error {
	if n > o.MaxNewSize {
		return fmt.Errorf("%w: new file of %d bytes exceeds the cap of %d", ErrTooLarge, n, o.MaxNewSize)
	}
	return nil
}

// PatchInfo describes an applied patch.
type PatchInfo struct {
	Format  Format
	Method  Method // native format only
	NewSize int64
	HasHash bool     // the patch carried the new file's SHA-256 (native)
	NewSum  [32]byte // SHA-256 of the written output
}

// Apply reads a native or BSDIFF40 patch from patch (told apart by magic),
// applies it to old and streams the new file to w.
//
// It fails with an error wrapping ErrFormat, ErrCorrupt, ErrTooLarge,
// ErrOldMismatch or ErrHashMismatch. Header problems (caps, wrong old file)
// are found before anything is written to w; a corrupt body or wrong hash can
// only be found while or after streaming, so w may then hold partial output:
// ApplyFile writes to a temporary file and never leaves one behind.
//
// Memory, besides old (held by the caller; ApplyFile maps it): the patch
// body, plus for bsdiff-cm per decoding core a model of about 1.5 MiB and
// 4 MiB of output lookahead, for zstd methods the frame's window (at most
// the new size rounded up to a power of two, and 512 MiB), for BSDIFF40
// about 12 MiB of bzip2 state. The new file is streamed, never held; see
// docs/FORMAT.md ("Memory when applying"). If old is a memory-mapped file
// that shrinks meanwhile, Apply returns ErrOldMismatch instead of crashing.
func Apply(ctx context.Context, old []byte, patch io.Reader, w io.Writer, opts *ApplyOptions) (PatchInfo, error) {
	return applyPatch(ctx, old, patch, output{w: w}, opts)
}

// output is where applyPatch writes the new file: w, in order; or, when at
// is set (an empty file), a bsdiff-cm body of several segments is decoded
// in parallel straight to its offsets in at (w unused), which is then read
// back for the SHA-256.
type output struct {
	w  io.Writer
	at interface {
		io.WriterAt
		io.ReaderAt
	}
}

func applyPatch(ctx context.Context, old []byte, patch io.Reader, out output, opts *ApplyOptions) (info PatchInfo, err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true), old)
	var o ApplyOptions
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return PatchInfo{}, err
	}
	br := newPeekReader(patch)
	magic, err := br.peek(8)
	if err != nil {
		return PatchInfo{}, fmt.Errorf("%w: patch shorter than any header", ErrCorrupt)
	}
	if string(magic) == bsdiffMagic {
		return applyBSDIFF40(ctx, old, br, out.w, &o)
	}
	if string(magic[:4]) != nativeMagic {
		return PatchInfo{}, fmt.Errorf("%w: unknown magic %q (want %q or %q)", ErrFormat, magic[:4], nativeMagic, bsdiffMagic)
	}
	h := make([]byte, headerSize)
	if _, err := io.ReadFull(br, h); err != nil {
		return PatchInfo{}, fmt.Errorf("%w: truncated header: %v", ErrCorrupt, err)
	}
	hd, err := parseHeader(h)
	if err != nil {
		return PatchInfo{}, err
	}
	info = PatchInfo{Format: FormatNative, Method: hd.method, NewSize: hd.newSize, HasHash: true}
	if err := o.checkNewSize(hd.newSize); err != nil {
		return info, err
	}
	maxBody := o.MaxPatchSize
	if maxBody == 0 {
		maxBody = hd.newSize + hd.newSize/64 + 64<<10
	}
	if hd.bodyLen > maxBody {
		return info, fmt.Errorf("%w: patch body of %d bytes exceeds the cap of %d", ErrTooLarge, hd.bodyLen, maxBody)
	}
	if hd.oldSize != int64(len(old)) {
		return info, fmt.Errorf("%w: patch wants an old file of %d bytes, got %d", ErrOldMismatch, hd.oldSize, len(old))
	}
	// The old file's hash is checked before any output reaches w; for
	// bsdiff-cm it is computed on another core while the body is read and
	// the first segments decode.
	chk := startOldCheck(old, hd.oldSum)
	defer chk.cancel()
	if hd.method == MethodZstdDict || hd.method == MethodZstd {
		if err := chk.wait(); err != nil {
			return info, err
		}
	}
	// Read the body as it arrives rather than allocating its declared
	// length up front: a short patch must not make us allocate gigabytes.
	var bb bytes.Buffer
	bb.Grow(int(min(hd.bodyLen, 1<<20)))
	if n, err := bb.ReadFrom(io.LimitReader(br, hd.bodyLen)); err != nil {
		return info, fmt.Errorf("delta: reading patch: %w", err)
	} else if n != hd.bodyLen {
		return info, fmt.Errorf("%w: body truncated (%d of %d bytes)", ErrCorrupt, n, hd.bodyLen)
	}
	body := bb.Bytes()
	if n, _ := br.Read(make([]byte, 1)); n != 0 {
		return info, fmt.Errorf("%w: trailing data after the %d-byte body", ErrCorrupt, hd.bodyLen)
	}
	// Verify before parsing: the body ends with its CRC-32C.
	if len(body) < 4 {
		return info, fmt.Errorf("%w: body of %d bytes has no checksum", ErrCorrupt, len(body))
	}
	body, sum := body[:len(body)-4], binary.LittleEndian.Uint32(body[len(body)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return info, fmt.Errorf("%w: body checksum mismatch (damaged in transit or storage)", ErrCorrupt)
	}
	if err := ctx.Err(); err != nil {
		return info, err
	}
	hw := &hashWriter{w: out.w, h: sha256.New()}
	switch hd.method {
	case MethodBsdiffCM, MethodBsdiffCM2:
		var segs []segment
		segs, err = parseSegments(body, hd.newSize)
		for i := range segs {
			segs[i].cm2 = hd.method == MethodBsdiffCM2
		}
		switch {
		case err != nil:
		case out.at != nil && len(segs) > 1 && runtime.GOMAXPROCS(0) > 1:
			err = decodeSegmentsAt(ctx, old, segs, out.at)
			if oerr := chk.wait(); oerr != nil {
				return info, oerr
			}
			if err == nil {
				info.NewSum, err = hashSection(ctx, out.at, hd.newSize)
			}
			if err != nil {
				return info, err
			}
			return info, checkNewSum(info.NewSum, hd.newSum)
		default:
			err = decodeSegmentsStream(ctx, old, segs, hw, chk.wait)
		}
		if oerr := chk.wait(); oerr != nil {
			return info, oerr
		}
	case MethodExeBsdiffCM, MethodExeZstdDict, MethodExeBsdiffCM2, MethodExe2BsdiffCM, MethodExe2BsdiffCM2:
		err = applyExe(ctx, old, body, hd, hw, chk.wait)
		if oerr := chk.wait(); oerr != nil {
			return info, oerr
		}
	case MethodZstdDict, MethodZstd:
		var dict []byte
		if hd.method == MethodZstdDict && len(old) > 0 {
			dict = old
		}
		err = zstdDecode(body, dict, hd.newSize, hw)
	}
	if err != nil {
		return info, err
	}
	if hw.n != hd.newSize {
		return info, fmt.Errorf("%w: output is %d bytes, header says %d", ErrCorrupt, hw.n, hd.newSize)
	}
	copy(info.NewSum[:], hw.h.Sum(nil))
	return info, checkNewSum(info.NewSum, hd.newSum)
}

func checkNewSum(got, want [32]byte) error {
	if got != want {
		return fmt.Errorf("%w: rebuilt file's SHA-256 %x differs from the patch's %x", ErrHashMismatch, got[:8], want[:8])
	}
	return nil
}

// hashSection returns the SHA-256 of the first n bytes of r.
func hashSection(ctx context.Context, r io.ReaderAt, n int64) ([32]byte, error) {
	var sum [32]byte
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < n; {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		k, err := r.ReadAt(buf[:min(int64(len(buf)), n-off)], off)
		h.Write(buf[:k])
		off += int64(k)
		if err != nil && off < n {
			return sum, fmt.Errorf("delta: reading back the output: %w", err)
		}
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// oldCheck compares the old file's SHA-256 with the patch's on another
// goroutine.
type oldCheck struct {
	res  chan error
	stop atomic.Bool
	once sync.Once
	err  error
}

func startOldCheck(old []byte, want [32]byte) *oldCheck {
	c := &oldCheck{res: make(chan error, 1)}
	go func() { c.res <- c.run(old, want) }()
	return c
}

func (c *oldCheck) run(old []byte, want [32]byte) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true), old)
	h := sha256.New()
	for p := old; len(p) > 0; {
		if c.stop.Load() {
			return errStopped
		}
		k := min(len(p), 4<<20)
		h.Write(p[:k])
		p = p[k:]
	}
	if [32]byte(h.Sum(nil)) != want {
		return fmt.Errorf("%w: old file's SHA-256 differs from the one the patch was made against", ErrOldMismatch)
	}
	return nil
}

// wait returns the result of the check.
func (c *oldCheck) wait() error {
	c.once.Do(func() { c.err = <-c.res })
	return c.err
}

// cancel stops the check and waits for it: the old file, which may be
// unmapped once Apply returns, is not read after.
func (c *oldCheck) cancel() {
	c.stop.Store(true)
	c.wait()
}

// catchFault, deferred with the previous debug.SetPanicOnFault setting,
// restores it and turns a memory fault inside old (a mapped old file that
// was truncated while it was read) into ErrOldMismatch; any other panic goes
// on.
func catchFault(errp *error, prev bool, old []byte) {
	debug.SetPanicOnFault(prev)
	r := recover()
	if r == nil {
		return
	}
	if f, ok := r.(interface{ Addr() uintptr }); ok && len(old) > 0 {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(old)))
		if a := f.Addr(); a >= base && a-base < uintptr(len(old)) {
			*errp = fmt.Errorf("%w: the old file shrank while it was being read (memory fault at offset %d); leave it unchanged while applying, then run again", ErrOldMismatch, a-base)
			return
		}
	}
	panic(r)
}

// zstdMaxWindow is the largest window a zstd frame of a patch for a new
// file of newSize bytes over a dictionary of dictLen bytes may declare:
// what Diff's encoder writes, never more than the new size rounded up to a
// power of two (the decoder holds a window-sized history, so a short frame
// must not make it allocate more than the file it claims to rebuild).
func zstdMaxWindow(dictLen int, newSize int64) uint64 {
	w := uint64(zstdWindow(dictLen, int(min(newSize, MaxFileSize))))
	return max(min(w, uint64(1)<<bits.Len64(uint64(newSize))), zstd.MinWindowSize)
}

func zstdDecode(body, dict []byte, newSize int64, w io.Writer) error {
	// The decoder holds a history of the frame's window. Diff's encoder
	// writes frames of up to its window as one segment, whose window is
	// the content size (the new size), and a window of at most
	// 2^bits.Len(size) otherwise; the maximum memory doubles as the cap on
	// a single-segment frame's size. The output itself is capped by the
	// LimitReader below.
	win := zstdMaxWindow(len(dict), newSize)
	dopts := []zstd.DOption{
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(win),
		zstd.WithDecoderMaxWindow(win),
	}
	if len(dict) > 0 {
		dopts = append(dopts, zstd.WithDecoderDictRaw(0, dict))
	}
	dec, err := zstd.NewReader(bytes.NewReader(body), dopts...)
	if err != nil {
		return fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
	}
	defer dec.Close()
	n, err := io.Copy(w, io.LimitReader(dec, newSize+1))
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return err
		}
		return fmt.Errorf("%w: zstd body: %v", ErrCorrupt, err)
	}
	if n != newSize {
		return fmt.Errorf("%w: zstd body holds %d bytes, header says %d", ErrCorrupt, n, newSize)
	}
	return nil
}

// writeError marks a failure of the caller's writer, as opposed to a bad
// patch.
type writeError struct{ err error }

func (e *writeError) Error() string { return "delta: writing output: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

type hashWriter struct {
	w interface{ Write([]byte) (int, error) }
	h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	n int64
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	hw.h.Write(p)
	hw.n += int64(len(p))
	n, err := hw.w.Write(p)
	if err != nil {
		return n, &writeError{err}
	}
	return n, nil
}

// peekReader lets Apply look at the magic without consuming it.
type peekReader struct {
	r   io.Reader
	buf []byte
}

func newPeekReader(r io.Reader) *peekReader { return &peekReader{r: r} }

func (p *peekReader) peek(n int) ([]byte, error) {
	for len(p.buf) < n {
		b := make([]byte, n-len(p.buf))
		k, err := p.r.Read(b)
		p.buf = append(p.buf, b[:k]...)
		if err != nil {
			if len(p.buf) >= n {
				break
			}
			return p.buf, err
		}
	}
	return p.buf[:n], nil
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	return p.r.Read(b)
}
