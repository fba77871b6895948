package delta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

// largePair writes an old file of n bytes and a bsdiff-cm patch (made with
// the package's own encoder, no suffix array) that rebuilds a new file of n
// bytes from it: every 1 MiB block copied from the old file with one byte in
// 4096 changed, its last 64 bytes literal. It returns the new file's SHA-256;
// neither file stays in memory.
func largePair(t *testing.T, oldPath, patchPath string, n int64) [32]byte {
	t.Helper()
	old := make([]byte, n)
	x := uint32(1)
	for i := range old {
		if i&3 == 0 {
			x = x*1664525 + 1013904223
		}
		old[i] = byte(x >> (8 * (i & 3)))
	}
	newb := bytes.Clone(old)
	const block = 1 << 20
	var ops []op
	for p := int64(0); p < n; p += block {
		for k := p + 100; k < p+block; k += 4096 {
			newb[k]++
		}
		for k := p + block - 64; k < p+block; k++ {
			newb[k] = byte(k)
		}
		ops = append(ops, op{oldPos: p, addLen: block - 64, extraLen: 64})
	}
	body := encodeSegments(old, newb, ops, runtime.GOMAXPROCS(0))
	body = binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
	newSum := sha256.Sum256(newb)
	p := append(makeHeader(MethodBsdiffCM, n, n, sha256.Sum256(old), newSum, int64(len(body))), body...)
	if err := os.WriteFile(oldPath, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(patchPath, p, 0o644); err != nil {
		t.Fatal(err)
	}
	return newSum
}

// sumWriter hashes and counts what it is given, allocating nothing.
type sumWriter struct {
	h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	n int64
}

func (s *sumWriter) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	return s.h.Write(p)
}

// TestApplyMemoryBounded applies a 400-KB patch that rebuilds a 256 MiB file
// and checks that the heap it allocates in all (TotalAlloc, so GC timing
// plays no part) stays under 64 MiB, a quarter of the new file: through
// ApplyFile (segments decoded in parallel to their offsets in the output
// file, the old file mapped), and through Apply to a plain writer with
// several cores (segments decoded ahead into bounded lookahead) and with
// one. Before the new file was streamed, each allocated the whole new file
// (and ApplyFile the old one too).
func TestApplyMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and applies a 128 MiB file (seconds); skipped with -short")
	}
	const n = 128 << 20 // twice the limit: a buffered file would exceed it
	const limit = 64 << 20
	dir := t.TempDir()
	oldPath, patchPath, outPath := filepath.Join(dir, "old"), filepath.Join(dir, "patch"), filepath.Join(dir, "out")
	want := largePair(t, oldPath, patchPath, n)
	runtime.GC()
	debug.FreeOSMemory()
	// Where the old file cannot be mapped, ApplyFile reads it.
	oldCost := uint64(0)
	if runtime.GOOS != "linux" {
		oldCost = n
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		procs int
		file  bool
	}{
		{"ApplyFile/4-procs", 4, true},
		{"Apply/4-procs", 4, false},
		{"Apply/1-proc", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(tc.procs))
			var info PatchInfo
			var err error
			var got [32]byte
			var size int64
			var alloc uint64
			if tc.file {
				alloc = AllocatedBy(func() { info, err = ApplyFile(ctx, oldPath, patchPath, outPath, nil) })
				if err == nil {
					fi, serr := os.Stat(outPath)
					if serr != nil {
						t.Fatal(serr)
					}
					size, got = fi.Size(), info.NewSum
					os.Remove(outPath)
				}
			} else {
				old, _, unmap, merr := mapFile(oldPath, MaxFileSize)
				if merr != nil {
					t.Fatal(merr)
				}
				defer unmap()
				pf, perr := os.Open(patchPath)
				if perr != nil {
					t.Fatal(perr)
				}
				defer pf.Close()
				sw := &sumWriter{h: sha256.New()}
				alloc = AllocatedBy(func() { info, err = Apply(ctx, old, pf, sw, nil) })
				size = sw.n
				copy(got[:], sw.h.Sum(nil))
			}
			if err != nil {
				t.Fatal(err)
			}
			if size != n || got != want || info.NewSum != want {
				t.Fatalf("rebuilt %d bytes with SHA-256 %x, want %d bytes with %x", size, got[:8], n, want[:8])
			}
			t.Logf("%d MiB rebuilt, %.1f MiB allocated", n>>20, float64(alloc)/(1<<20))
			if alloc > limit+oldCost {
				t.Errorf("applying allocated %s for a %s new file; want under %s: the new file is not streamed",
					mib(alloc), mib(n), mib(limit+oldCost))
			}
		})
	}
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// segmentedPatch is a native bsdiff-cm patch of newb over old (of the same
// length) whose body has k segments, each one add of its range from the
// same place in old and 64 literal bytes.
func segmentedPatch(old, newb []byte, k int) []byte {
	n := int64(len(newb))
	var table, streams []byte
	table = binary.AppendUvarint(table, uint64(k))
	for i := range int64(k) {
		s, e := n*i/int64(k), n*(i+1)/int64(k)
		st := encodeScript(old, newb[s:e], []op{{oldPos: s, addLen: e - s - 64, extraLen: 64}})
		table = binary.AppendUvarint(table, uint64(e-s))
		table = binary.AppendUvarint(table, uint64(len(st)))
		streams = append(streams, st...)
	}
	body := append(table, streams...)
	body = binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
	return append(makeHeader(MethodBsdiffCM, int64(len(old)), n, sha256.Sum256(old), sha256.Sum256(newb), int64(len(body))), body...)
}

// failWriter fails once it has taken limit bytes.
type failWriter struct {
	buf   bytes.Buffer
	limit int
}

var errDiskFull = errors.New("test: disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.buf.Len()+len(p) > f.limit {
		return 0, errDiskFull
	}
	return f.buf.Write(p)
}

// TestApplySegments applies a patch of 4 segments of 6 MiB (more than the
// lookahead, so decoders wait for the writer) to a plain writer and to a
// file, with 1, 2 (fewer cores than segments) and 8 cores: the output is
// the new file. Then the failures: the writer failing midway, a cancelled
// context, a damaged segment and the wrong old file each end the apply with
// their error (the wrong old file before any output), without hanging.
func TestApplySegments(t *testing.T) {
	const n = 24 << 20
	old := make([]byte, n)
	for i := range old {
		old[i] = byte(i*7 + i>>11)
	}
	newb := bytes.Clone(old)
	for i := 50; i < n; i += 1000 {
		newb[i] ^= 0x20
	}
	p := segmentedPatch(old, newb, 4)
	damaged := bytes.Clone(p)
	damaged[len(p)*5/8] ^= 0xff // inside the third segment's stream
	fix := binary.LittleEndian.AppendUint32(nil, crc32.Checksum(damaged[headerSize:len(p)-4], castagnoli))
	copy(damaged[len(p)-4:], fix)
	wrongOld := bytes.Clone(old)
	wrongOld[n/2]++
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, procs := range []int{1, 2, 8} {
		for _, tc := range []struct {
			name  string
			ctx   context.Context
			old   []byte
			patch []byte
			limit int // the plain writer fails beyond it
			want  error
		}{
			{"ok", context.Background(), old, p, n, nil},
			{"writer fails", context.Background(), old, p, 5 << 20, errDiskFull},
			{"cancelled", cancelled, old, p, n, context.Canceled},
			{"damaged segment", context.Background(), old, damaged, n, ErrCorrupt},
			{"wrong old file", context.Background(), wrongOld, p, n, ErrOldMismatch},
		} {
			t.Run(fmt.Sprintf("%d-procs/%s", procs, tc.name), func(t *testing.T) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				w := &failWriter{limit: tc.limit}
				_, err := Apply(tc.ctx, tc.old, bytes.NewReader(tc.patch), w, nil)
				check := func(what string, err error, out []byte) {
					t.Helper()
					switch {
					case tc.want == nil && err != nil:
						t.Fatalf("%s: %v", what, err)
					case tc.want == nil && !bytes.Equal(out, newb):
						t.Fatalf("%s: wrong output (%d bytes)", what, len(out))
					case tc.want == ErrCorrupt && (errors.Is(err, ErrCorrupt) || errors.Is(err, ErrHashMismatch)):
					case tc.want != nil && !errors.Is(err, tc.want):
						t.Fatalf("%s: got %v, want %v", what, err, tc.want)
					}
				}
				check("Apply", err, w.buf.Bytes())
				if tc.want == ErrOldMismatch && w.buf.Len() != 0 {
					t.Errorf("wrong old file, yet %d bytes written", w.buf.Len())
				}
				if tc.limit < n {
					return // a file does not fail that way
				}
				f, err := os.Create(filepath.Join(t.TempDir(), "out"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				bw := bufio.NewWriter(f)
				_, err = applyPatch(tc.ctx, tc.old, bytes.NewReader(tc.patch), output{w: bw, at: f}, nil)
				if err == nil {
					err = bw.Flush()
				}
				var out []byte
				if err == nil {
					out, err = os.ReadFile(f.Name())
				}
				check("to a file", err, out)
			})
		}
	}
}

// TestApplyTruncatedMappedOld: an old file that shrinks while it is mapped
// makes Apply fail with ErrOldMismatch, where reading the lost pages would
// otherwise kill the process with SIGBUS.
func TestApplyTruncatedMappedOld(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the old file is mapped on Linux only")
	}
	old := make([]byte, 1<<20)
	for i := range old {
		old[i] = byte(i * 13)
	}
	newb := bytes.Clone(old)
	newb[1000]++
	path := filepath.Join(t.TempDir(), "old")
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Method{MethodBsdiffCM, MethodZstdDict} {
		t.Run(m.String(), func(t *testing.T) {
			var pb bytes.Buffer
			if _, err := Diff(context.Background(), old, newb, &pb, &DiffOptions{Methods: []Method{m}}); err != nil {
				t.Fatal(err)
			}
			mapped, _, unmap, err := mapFile(path, MaxFileSize)
			if err != nil {
				t.Fatal(err)
			}
			defer unmap()
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, old, 0o644)
			_, err = Apply(context.Background(), mapped, &pb, io.Discard, nil)
			if !errors.Is(err, ErrOldMismatch) {
				t.Fatalf("got %v, want ErrOldMismatch", err)
			}
			t.Log(err)
		})
	}
}
