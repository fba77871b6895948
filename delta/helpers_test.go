package delta_test

// Shared helpers of the black-box tests: deterministic test data, hand-built
// native headers and BSDIFF40 patches, error classification.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dsbzip2 "github.com/dsnet/compress/bzip2"

	"github.com/deltaup/deltaup/delta"
)

// update regenerates the committed fixtures (testdata/delta/hostile and the
// seed corpora under delta/testdata/fuzz):
//
//	go test ./delta -run 'TestHostileFiles|TestFuzzSeeds' -update
var update = flag.Bool("update", false, "rewrite the fixture files under testdata/")

// classes are the six error classes of the package, in the order the
// names of className use.
var classes = []struct {
	name string
	err  error
}{
	{"format", delta.ErrFormat},
	{"corrupt", delta.ErrCorrupt},
	{"toolarge", delta.ErrTooLarge},
	{"oldmismatch", delta.ErrOldMismatch},
	{"hashmismatch", delta.ErrHashMismatch},
	{"nospace", delta.ErrNoSpace},
}

// className names the class err wraps: "ok" for nil, one of the names above,
// "multiple" when it wraps more than one (the package promises exactly one)
// and "unclassified" when it wraps none.
func className(err error) string {
	if err == nil {
		return "ok"
	}
	var got []string
	for _, c := range classes {
		if errors.Is(err, c.err) {
			got = append(got, c.name)
		}
	}
	switch len(got) {
	case 0:
		return "unclassified"
	case 1:
		return got[0]
	}
	return "multiple"
}

// wantClass checks that err wraps exactly one class and that it is among
// want ("corrupt|hashmismatch" style alternatives allowed).
func wantClass(t testing.TB, what string, err error, want string) {
	t.Helper()
	got := className(err)
	for _, w := range strings.Split(want, "|") {
		if got == w {
			return
		}
	}
	t.Errorf("%s: got %s (%v), want %s", what, got, err, want)
}

// applyBytes runs Apply and returns the output and what Apply returned. A
// panic inside Apply fails the test instead of crashing the binary, so one
// bad case is reported with its name.
func applyBytes(t testing.TB, old, patch []byte, opts *delta.ApplyOptions) (out []byte, info delta.PatchInfo, err error) {
	t.Helper()
	var buf bytes.Buffer
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Apply panicked: %v (patch %d bytes, old %d bytes)", r, len(patch), len(old))
			}
		}()
		info, err = delta.Apply(context.Background(), old, bytes.NewReader(patch), &buf, opts)
	}()
	return buf.Bytes(), info, err
}

// diffBytes runs Diff and fails the test on error.
func diffBytes(t testing.TB, old, newb []byte, opts *delta.DiffOptions) ([]byte, delta.DiffStats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := delta.Diff(context.Background(), old, newb, &buf, opts)
	if err != nil {
		t.Fatalf("Diff(%d, %d bytes, %+v): %v", len(old), len(newb), opts, err)
	}
	if st.PatchSize != int64(buf.Len()) {
		t.Errorf("DiffStats.PatchSize = %d, wrote %d bytes", st.PatchSize, buf.Len())
	}
	return buf.Bytes(), st
}

// ---- deterministic data ----

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func randomBytes(seed uint64, n int) []byte {
	r := newRand(seed)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fakeBinary makes n bytes that look a little like an executable: runs of
// "instructions" from a small alphabet with 4-byte little-endian address
// fields, string tables, zero padding and random tables.
func fakeBinary(seed uint64, n int) []byte {
	r := newRand(seed)
	words := []string{"runtime", "error", "main", "init", "buffer", "len", "cap", "index", "out of range", "nil", "pointer", "go:", "type.", "sync.Mutex", "func"}
	opcodes := []byte{0x48, 0x89, 0x8b, 0xe8, 0xe9, 0x0f, 0x85, 0x84, 0xc3, 0x90, 0x55, 0x5d, 0x31, 0xc0, 0x83, 0xec}
	b := make([]byte, 0, n+64)
	for len(b) < n {
		switch k := r.IntN(10); {
		case k < 6: // code
			for range 16 + r.IntN(200) {
				b = append(b, opcodes[r.IntN(len(opcodes))])
				if r.IntN(3) == 0 {
					b = append(b, opcodes[r.IntN(len(opcodes))])
				}
				if r.IntN(4) == 0 {
					b = binary.LittleEndian.AppendUint32(b, uint32(0x400000+r.IntN(1<<20)))
				}
			}
		case k < 8: // strings
			for range 4 + r.IntN(40) {
				b = append(b, words[r.IntN(len(words))]...)
				b = append(b, 0)
			}
		case k < 9: // padding
			b = append(b, make([]byte, 8+r.IntN(300))...)
		default: // table
			for range 8 + r.IntN(64) {
				b = binary.LittleEndian.AppendUint32(b, r.Uint32())
			}
		}
	}
	return b[:n]
}

// mutateBinary derives a "next version" of b: inserted and deleted blocks,
// and many 4-byte fields shifted by a constant (what relinking does to
// addresses).
func mutateBinary(seed uint64, b []byte) []byte {
	r := newRand(seed)
	out := append([]byte(nil), b...)
	for range 12 {
		at := r.IntN(len(out))
		ins := fakeBinary(r.Uint64(), 200+r.IntN(3000))
		out = append(out[:at], append(ins, out[at:]...)...)
	}
	for range 6 {
		at := r.IntN(len(out) - 5000)
		out = append(out[:at], out[at+100+r.IntN(2000):]...)
	}
	shift := uint32(0x1000 + r.IntN(0x100))
	for i := r.IntN(64); i+4 <= len(out); i += 16 + r.IntN(200) {
		v := binary.LittleEndian.Uint32(out[i:])
		binary.LittleEndian.PutUint32(out[i:], v+shift)
	}
	return out
}

// ---- native headers ----

// nativeHeader is the 100-byte header of a native patch, field by field, so
// tests can build headers the encoder never writes.
type nativeHeader struct {
	Magic    [4]byte
	Version  byte
	Method   byte
	Reserved [2]byte
	OldSize  uint64
	NewSize  uint64
	OldSum   [32]byte
	NewSum   [32]byte
	BodyLen  uint64
	CRC      uint32 // ignored by bytes(); see bytesRawCRC
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func headerFor(m delta.Method, old, newb []byte, bodyLen int) nativeHeader {
	h := nativeHeader{Version: 1, Method: byte(m), OldSize: uint64(len(old)), NewSize: uint64(len(newb)),
		OldSum: sha256.Sum256(old), NewSum: sha256.Sum256(newb), BodyLen: uint64(bodyLen)}
	copy(h.Magic[:], "DUPT")
	return h
}

func parseNativeHeader(t testing.TB, p []byte) nativeHeader {
	t.Helper()
	if len(p) < 100 || string(p[:4]) != "DUPT" {
		t.Fatalf("not a native patch: % x", p[:min(len(p), 8)])
	}
	var h nativeHeader
	copy(h.Magic[:], p)
	h.Version, h.Method = p[4], p[5]
	copy(h.Reserved[:], p[6:8])
	h.OldSize = binary.LittleEndian.Uint64(p[8:])
	h.NewSize = binary.LittleEndian.Uint64(p[16:])
	copy(h.OldSum[:], p[24:56])
	copy(h.NewSum[:], p[56:88])
	h.BodyLen = binary.LittleEndian.Uint64(p[88:])
	h.CRC = binary.LittleEndian.Uint32(p[96:])
	return h
}

// bytes encodes h with a correct CRC-32C (Castagnoli, over bytes 0..96,
// little-endian at 96), so that checks behind the CRC can be reached.
func (h nativeHeader) bytes() []byte {
	b := h.bytesRawCRC()
	fixCRC(b)
	return b
}

// bytesRawCRC encodes h with h.CRC as the checksum, right or not.
func (h nativeHeader) bytesRawCRC() []byte {
	b := make([]byte, 100)
	copy(b, h.Magic[:])
	b[4], b[5] = h.Version, h.Method
	copy(b[6:8], h.Reserved[:])
	binary.LittleEndian.PutUint64(b[8:], h.OldSize)
	binary.LittleEndian.PutUint64(b[16:], h.NewSize)
	copy(b[24:], h.OldSum[:])
	copy(b[56:], h.NewSum[:])
	binary.LittleEndian.PutUint64(b[88:], h.BodyLen)
	binary.LittleEndian.PutUint32(b[96:], h.CRC)
	return b
}

// fixCRC rewrites the checksums of the native patch p in place: the body's
// CRC-32C trailer (its last 4 bytes, when the body has them) and the
// header's.
func fixCRC(p []byte) {
	if len(p) >= 104 {
		binary.LittleEndian.PutUint32(p[len(p)-4:], crc32.Checksum(p[100:len(p)-4], castagnoli))
	}
	binary.LittleEndian.PutUint32(p[96:], crc32.Checksum(p[:96], castagnoli))
}

// ---- BSDIFF40 ----

// offtout encodes x as bsdiff does: 64-bit little-endian sign-magnitude.
func offtout(x int64) []byte {
	u := uint64(x)
	if x < 0 {
		u = uint64(-x) | 1<<63
	}
	return binary.LittleEndian.AppendUint64(nil, u)
}

// negZero is the sign-magnitude "-0", which no bsdiff writes.
var negZero = binary.LittleEndian.AppendUint64(nil, 1<<63)

type triple struct{ add, extra, seek int64 }

func ctrlBytes(ts ...triple) []byte {
	var b []byte
	for _, t := range ts {
		b = append(b, offtout(t.add)...)
		b = append(b, offtout(t.extra)...)
		b = append(b, offtout(t.seek)...)
	}
	return b
}

// bz compresses b into one bzip2 stream.
func bz(b []byte) []byte {
	var buf bytes.Buffer
	zw, err := dsbzip2.NewWriter(&buf, &dsbzip2.WriterConfig{Level: 9})
	if err != nil {
		panic(err)
	}
	if _, err := zw.Write(b); err != nil {
		panic(err)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// bsPatch assembles a BSDIFF40 patch from already compressed blocks; the
// header lengths are the blocks' true lengths.
func bsPatch(ctrlZ, diffZ, extraZ []byte, newSize int64) []byte {
	return bsPatchRaw(offtout(int64(len(ctrlZ))), offtout(int64(len(diffZ))), offtout(newSize), ctrlZ, diffZ, extraZ)
}

// bsPatchRaw assembles a BSDIFF40 patch with the three header fields given
// as raw 8-byte encodings.
func bsPatchRaw(x, y, n []byte, blocks ...[]byte) []byte {
	p := []byte("BSDIFF40")
	p = append(p, x...)
	p = append(p, y...)
	p = append(p, n...)
	for _, b := range blocks {
		p = append(p, b...)
	}
	return p
}

// bsBlocks splits a BSDIFF40 patch into its header fields and compressed
// blocks (trusting the header).
func bsBlocks(t testing.TB, p []byte) (ctrlZ, diffZ, extraZ []byte, newSize int64) {
	t.Helper()
	if string(p[:8]) != "BSDIFF40" {
		t.Fatalf("not a BSDIFF40 patch")
	}
	x := int64(binary.LittleEndian.Uint64(p[8:]))
	y := int64(binary.LittleEndian.Uint64(p[16:]))
	newSize = int64(binary.LittleEndian.Uint64(p[24:]))
	return p[32 : 32+x], p[32+x : 32+x+y], p[32+x+y:], newSize
}

// ---- files ----

// fixtureDir is where the committed fixtures of these tests live.
var fixtureDir = filepath.Join("..", "testdata", "delta")

// dirEntries lists the names in dir.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func writeFile(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
}

func short(b []byte) string {
	if len(b) <= 16 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes %x…", len(b), b[:8])
}
