package delta_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/deltaup/deltaup/delta"
)

// pair is one (old, new) input of the round-trip tests.
type pair struct {
	name     string
	old, new []byte
	big      bool // over 1 MiB: the scan runs in parallel ranges
}

func roundTripPairs() []pair {
	bin := fakeBinary(1, 64<<10)
	rnd := randomBytes(2, 48<<10)
	// Kept small: the bsdiff scan is quadratic on long runs of one byte
	// (1 MiB of zeros takes over 20 s to diff).
	zeros := make([]byte, 64<<10)
	zerosNew := slices.Concat(make([]byte, 40<<10), []byte("a change in the middle of nothing"), make([]byte, 30<<10))
	zerosNew[5] = 1
	inserted := slices.Concat(bin[:20000], randomBytes(3, 5000), bin[20000:])
	deleted := slices.Concat(bin[:10000], bin[30000:])
	moved := slices.Concat(bin[40000:], bin[:40000])
	// Over 4 MiB, so that Workers 4 really scans with four goroutines (the
	// scan gives each worker at least 1 MiB) and the cm1 body is segmented.
	bigOld := fakeBinary(4, 4200<<10)
	bigNew := mutateBinary(5, bigOld)
	return []pair{
		{name: "both-empty"},
		{name: "empty-old", new: []byte("a brand new file\n")},
		{name: "empty-old-random", new: randomBytes(6, 5000)},
		{name: "empty-new", old: bin[:3000]},
		{name: "nil-vs-empty", old: nil, new: []byte{}},
		{name: "identical", old: bin, new: bytes.Clone(bin)},
		{name: "one-byte-same", old: []byte{7}, new: []byte{7}},
		{name: "one-byte-diff", old: []byte{7}, new: []byte{200}},
		{name: "one-byte-old", old: []byte{0}, new: []byte("x")},
		{name: "one-byte-new", old: bin[:100], new: []byte{bin[50]}},
		{name: "small-text", old: []byte("hello, world\n"), new: []byte("hello, brave new world\n")},
		{name: "random-unrelated", old: rnd, new: randomBytes(7, 40<<10)},
		{name: "random-mutated", old: rnd, new: mutateBinary(8, rnd)},
		{name: "appended", old: bin, new: slices.Concat(bin, randomBytes(9, 7000))},
		{name: "prepended", old: bin, new: slices.Concat(randomBytes(10, 7000), bin)},
		{name: "inserted", old: bin, new: inserted},
		{name: "deleted", old: bin, new: deleted},
		{name: "moved", old: bin, new: moved},
		{name: "binary-mutated", old: bin, new: mutateBinary(11, bin)},
		{name: "zero-runs", old: zeros, new: zerosNew},
		{name: "zeros-to-random", old: zeros[:10000], new: randomBytes(12, 10000)},
		{name: "unrelated-text-binary", old: bytes.Repeat([]byte("lorem ipsum dolor sit amet "), 2000), new: bin[:30000]},
		{name: "big", old: bigOld, new: bigNew, big: true},
	}
}

// config is one way of making a patch.
type config struct {
	name string
	opts delta.DiffOptions
}

func configs() []config {
	return []config{
		{"native-auto", delta.DiffOptions{}},
		{"native-bsdiff-cm", delta.DiffOptions{Methods: []delta.Method{delta.MethodBsdiffCM}}},
		{"native-zstd-dict", delta.DiffOptions{Methods: []delta.Method{delta.MethodZstdDict}}},
		{"native-zstd", delta.DiffOptions{Methods: []delta.Method{delta.MethodZstd}}},
		{"native-cm+zstd", delta.DiffOptions{Methods: []delta.Method{delta.MethodZstd, delta.MethodBsdiffCM}}},
		{"bsdiff40", delta.DiffOptions{Format: delta.FormatBSDIFF40}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, p := range roundTripPairs() {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range configs() {
				workers := []int{0}
				if p.big {
					// The big pair exercises the parallel scan (and the
					// segmented cm1 body); a zstd level-best pass of it
					// costs seconds, so the zstd-only configs skip it.
					switch c.name {
					case "native-bsdiff-cm":
						workers = []int{2, 4}
					case "bsdiff40":
						workers = []int{1, 4}
					case "native-auto":
					default:
						continue
					}
				}
				for _, w := range workers {
					o := c.opts
					o.Workers = w
					checkRoundTrip(t, c.name, p.old, p.new, &o)
				}
			}
		})
	}
}

// checkRoundTrip diffs, checks the stats and the header, applies and checks
// the output and PatchInfo.
func checkRoundTrip(t *testing.T, cname string, old, newb []byte, o *delta.DiffOptions) {
	t.Helper()
	var buf bytes.Buffer
	st, err := delta.Diff(context.Background(), old, newb, &buf, o)
	if err != nil {
		if len(old) == 0 && slices.Equal(o.Methods, []delta.Method{delta.MethodZstdDict}) {
			// zstd-dict needs an old file to use as the dictionary; with
			// only that method allowed Diff has nothing to offer.
			t.Logf("%s: Diff with only zstd-dict and an empty old file: %v", cname, err)
			return
		}
		t.Fatalf("%s workers=%d: Diff: %v", cname, o.Workers, err)
	}
	patch := buf.Bytes()
	if st.PatchSize != int64(len(patch)) {
		t.Errorf("%s: PatchSize %d, wrote %d", cname, st.PatchSize, len(patch))
	}
	if st.Format != o.Format {
		t.Errorf("%s: DiffStats.Format %v, want %v", cname, st.Format, o.Format)
	}
	if o.Format == delta.FormatNative {
		h := parseNativeHeader(t, patch)
		if h.Version != 1 || delta.Method(h.Method) != st.Method || h.Reserved != [2]byte{} {
			t.Errorf("%s: header version %d method %d reserved %v, stats method %v", cname, h.Version, h.Method, h.Reserved, st.Method)
		}
		if h.OldSize != uint64(len(old)) || h.NewSize != uint64(len(newb)) || h.BodyLen != uint64(len(patch)-100) {
			t.Errorf("%s: header sizes old %d new %d body %d, want %d %d %d", cname, h.OldSize, h.NewSize, h.BodyLen, len(old), len(newb), len(patch)-100)
		}
		if h.OldSum != sha256.Sum256(old) || h.NewSum != sha256.Sum256(newb) {
			t.Errorf("%s: header hashes wrong", cname)
		}
		if h.CRC != parseNativeHeader(t, h.bytes()).CRC {
			t.Errorf("%s: header CRC-32C wrong", cname)
		}
		kept, ok := st.Candidates[st.Method]
		// The body is the kept candidate plus its 4-byte CRC-32C trailer.
		if !ok || kept != int64(len(patch)-100-4) {
			t.Errorf("%s: Candidates %v, kept %v with a %d-byte body", cname, st.Candidates, st.Method, len(patch)-100)
		}
		for m, n := range st.Candidates {
			if o.Methods != nil && !slices.Contains(o.Methods, m) {
				t.Errorf("%s: tried %v, not in %v", cname, m, o.Methods)
			}
			if n < kept {
				t.Errorf("%s: kept %v (%d bytes) over the smaller %v (%d bytes)", cname, st.Method, kept, m, n)
			}
		}
	} else if string(patch[:8]) != "BSDIFF40" {
		t.Fatalf("%s: BSDIFF40 patch starts % x", cname, patch[:8])
	}

	out, info, err := applyBytes(t, old, patch, nil)
	if err != nil {
		t.Fatalf("%s workers=%d: Apply of a fresh %d-byte patch (%v): %v", cname, o.Workers, len(patch), st.Method, err)
	}
	if !bytes.Equal(out, newb) {
		t.Fatalf("%s workers=%d: Apply output differs from new (%d vs %d bytes)", cname, o.Workers, len(out), len(newb))
	}
	want := delta.PatchInfo{Format: o.Format, NewSize: int64(len(newb)), NewSum: sha256.Sum256(newb)}
	if o.Format == delta.FormatNative {
		want.Method, want.HasHash = st.Method, true
	}
	if info != want {
		t.Errorf("%s: PatchInfo %+v, want %+v", cname, info, want)
	}
}

// TestDiffDeterministic: the same inputs and options give the same patch,
// so patches can be rebuilt and compared.
func TestDiffDeterministic(t *testing.T) {
	old := fakeBinary(20, 1100<<10)
	newb := mutateBinary(21, old)
	for _, o := range []delta.DiffOptions{
		{Workers: 2, Methods: []delta.Method{delta.MethodBsdiffCM}},
		{Workers: 2, Format: delta.FormatBSDIFF40},
	} {
		a, _ := diffBytes(t, old, newb, &o)
		b, _ := diffBytes(t, old, newb, &o)
		if !bytes.Equal(a, b) {
			t.Errorf("%+v: two Diffs of the same pair differ", o)
		}
	}
}

func TestDiffOptionsValidation(t *testing.T) {
	for _, o := range []delta.DiffOptions{
		{Format: 7},
		{Format: -1},
		{Workers: -1},
		{Methods: []delta.Method{0}},
		{Methods: []delta.Method{delta.MethodZstd, 10}},
		{Methods: []delta.Method{255}},
	} {
		var buf bytes.Buffer
		if _, err := delta.Diff(context.Background(), []byte("a"), []byte("b"), &buf, &o); err == nil {
			t.Errorf("Diff accepted %+v", o)
		}
		if buf.Len() != 0 {
			t.Errorf("Diff with bad options %+v wrote %d bytes", o, buf.Len())
		}
	}
	for _, o := range []delta.ApplyOptions{{MaxNewSize: -1}, {MaxPatchSize: -1}} {
		p, _ := diffBytes(t, []byte("a"), []byte("b"), nil)
		if _, _, err := applyBytes(t, []byte("a"), p, &o); err == nil {
			t.Errorf("Apply accepted %+v", o)
		}
	}
}

func TestParseFormatAndStrings(t *testing.T) {
	for s, want := range map[string]delta.Format{"": delta.FormatNative, "native": delta.FormatNative, "bsdiff40": delta.FormatBSDIFF40, "BSDIFF40": delta.FormatBSDIFF40, "bsdiff": delta.FormatBSDIFF40} {
		if f, err := delta.ParseFormat(s); err != nil || f != want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", s, f, err, want)
		}
	}
	if _, err := delta.ParseFormat("xdelta"); err == nil {
		t.Error("ParseFormat accepted xdelta")
	}
	for f, s := range map[delta.Format]string{delta.FormatNative: "native", delta.FormatBSDIFF40: "bsdiff40"} {
		if f.String() != s {
			t.Errorf("%d.String() = %q", f, f.String())
		}
		if g, err := delta.ParseFormat(f.String()); err != nil || g != f {
			t.Errorf("ParseFormat(%v.String()) = %v, %v", f, g, err)
		}
	}
	for m, s := range map[delta.Method]string{delta.MethodBsdiffCM: "bsdiff-cm", delta.MethodZstdDict: "zstd-dict", delta.MethodZstd: "zstd", delta.MethodExe2BsdiffCM: "exe2-bsdiff-cm", delta.MethodExe2BsdiffCM2: "exe2-bsdiff-cm2", 10: "method(10)"} {
		if m.String() != s {
			t.Errorf("Method %d.String() = %q, want %q", m, m.String(), s)
		}
	}
}

func TestContextCanceled(t *testing.T) {
	old := fakeBinary(30, 300<<10)
	newb := mutateBinary(31, old)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Diff looks at the context now and then in the scan (every 64 Ki
	// search steps), so give it an input that takes many: unrelated
	// random bytes.
	rnd := randomBytes(32, 1<<20)
	for _, o := range []delta.DiffOptions{{}, {Format: delta.FormatBSDIFF40}} {
		if _, err := delta.Diff(ctx, old[:100<<10], rnd, io.Discard, &o); !errors.Is(err, context.Canceled) {
			t.Errorf("Diff(%v) with a canceled context: %v", o.Format, err)
		}
	}
	for _, o := range []delta.DiffOptions{{}, {Format: delta.FormatBSDIFF40}} {
		p, _ := diffBytes(t, old, newb, &o)
		var out bytes.Buffer
		_, err := delta.Apply(ctx, old, bytes.NewReader(p), &out, nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Apply(%v) with a canceled context: %v", o.Format, err)
		}
		if className(err) != "unclassified" {
			t.Errorf("Apply(%v): cancellation reported as %s", o.Format, className(err))
		}
	}
}

// failWriter accepts n bytes, then fails.
type failWriter struct{ n int }

var errBoom = errors.New("disk on fire")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errBoom
	}
	w.n -= len(p)
	return len(p), nil
}

// TestApplyWriterError: a failing writer is reported as itself, not as a
// bad patch (a caller would otherwise fall back to a full download for a
// full disk).
func TestApplyWriterError(t *testing.T) {
	old := fakeBinary(40, 200<<10)
	newb := mutateBinary(41, old)
	for _, c := range configs() {
		p, _ := diffBytes(t, old, newb, &c.opts)
		for _, n := range []int{0, 1000, len(newb) - 1} {
			_, err := delta.Apply(context.Background(), old, bytes.NewReader(p), &failWriter{n: n}, nil)
			if !errors.Is(err, errBoom) {
				t.Errorf("%s: writer failing after %d bytes: Apply returned %v", c.name, n, err)
			}
			if cl := className(err); cl != "unclassified" {
				t.Errorf("%s: writer failure classed as %s: %v", c.name, cl, err)
			}
		}
	}
}

// TestApplyReadsAnyReader: Apply works on readers that return little at a
// time (a network stream), not only on bytes.Reader.
func TestApplyReadsAnyReader(t *testing.T) {
	old := fakeBinary(50, 20<<10)
	newb := mutateBinary(51, old)
	for _, c := range configs() {
		p, _ := diffBytes(t, old, newb, &c.opts)
		var out bytes.Buffer
		if _, err := delta.Apply(context.Background(), old, &oneByteReader{p}, &out, nil); err != nil {
			t.Errorf("%s: one byte at a time: %v", c.name, err)
		} else if !bytes.Equal(out.Bytes(), newb) {
			t.Errorf("%s: one byte at a time: wrong output", c.name)
		}
	}
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestFiles(t *testing.T) {
	old := fakeBinary(60, 100<<10)
	newb := mutateBinary(61, old)
	for _, c := range configs() {
		for _, mode := range []os.FileMode{0o755, 0o600, 0o640} {
			dir := t.TempDir()
			oldPath := filepath.Join(dir, "old.bin")
			newPath := filepath.Join(dir, "new.bin")
			patchPath := filepath.Join(dir, "p.patch")
			outPath := filepath.Join(dir, "out.bin")
			writeFile(t, oldPath, old, mode)
			writeFile(t, newPath, newb, 0o644)
			writeFile(t, outPath, []byte("stale output to be replaced"), 0o644)
			st, err := delta.DiffFile(context.Background(), oldPath, newPath, patchPath, &c.opts)
			if err != nil {
				t.Fatalf("%s: DiffFile: %v", c.name, err)
			}
			pb, err := os.ReadFile(patchPath)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(pb)) != st.PatchSize {
				t.Errorf("%s: patch file %d bytes, PatchSize %d", c.name, len(pb), st.PatchSize)
			}
			info, err := delta.ApplyFile(context.Background(), oldPath, patchPath, outPath, nil)
			if err != nil {
				t.Fatalf("%s: ApplyFile: %v", c.name, err)
			}
			got, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, newb) {
				t.Fatalf("%s: ApplyFile output differs", c.name)
			}
			if info.NewSize != int64(len(newb)) || info.NewSum != sha256.Sum256(newb) || info.Format != c.opts.Format {
				t.Errorf("%s: PatchInfo %+v", c.name, info)
			}
			fi, err := os.Stat(outPath)
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && fi.Mode().Perm() != mode {
				t.Errorf("%s: output mode %v, old file's is %v", c.name, fi.Mode().Perm(), mode)
			}
			if names := dirEntries(t, dir); !slices.Equal(names, []string{"new.bin", "old.bin", "out.bin", "p.patch"}) {
				t.Errorf("%s: directory holds %v after DiffFile+ApplyFile", c.name, names)
			}
		}
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	old := []byte("old contents")
	oldPath := filepath.Join(dir, "old")
	writeFile(t, oldPath, old, 0o644)
	missing := filepath.Join(dir, "missing")
	if _, err := delta.DiffFile(context.Background(), oldPath, missing, filepath.Join(dir, "p"), nil); err == nil {
		t.Error("DiffFile with a missing new file succeeded")
	}
	if _, err := delta.DiffFile(context.Background(), missing, oldPath, filepath.Join(dir, "p"), nil); err == nil {
		t.Error("DiffFile with a missing old file succeeded")
	}
	if _, err := delta.DiffFile(context.Background(), dir, oldPath, filepath.Join(dir, "p"), nil); err == nil {
		t.Error("DiffFile with a directory as old file succeeded")
	}
	if _, err := delta.ApplyFile(context.Background(), oldPath, missing, filepath.Join(dir, "out"), nil); err == nil {
		t.Error("ApplyFile with a missing patch succeeded")
	}
	if _, err := delta.ApplyFile(context.Background(), missing, oldPath, filepath.Join(dir, "out"), nil); err == nil {
		t.Error("ApplyFile with a missing old file succeeded")
	}
	if _, err := delta.DiffFile(context.Background(), oldPath, oldPath, filepath.Join(dir, "no", "such", "dir", "p"), nil); err == nil {
		t.Error("DiffFile into a missing directory succeeded")
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"old"}) {
		t.Errorf("failed calls left %v", names)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := delta.WriteFileAtomic(path, 0o600, func(w io.Writer) error {
		_, err := w.Write([]byte("first"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first" {
		t.Fatalf("got %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	err := delta.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		w.Write(bytes.Repeat([]byte("partial"), 100000))
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Errorf("fill's error not returned: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first" {
		t.Errorf("failed write changed the file to %d bytes", len(b))
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"f"}) {
		t.Errorf("failed write left %v", names)
	}
	if err := delta.WriteFileAtomic(filepath.Join(dir, "missing", "f"), 0o644, func(io.Writer) error { return nil }); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
	// A panic in fill (a bug, or a fault) still removes the temporary file.
	func() {
		defer func() {
			if r := recover(); r != errBoom {
				t.Errorf("recovered %v, want fill's panic", r)
			}
		}()
		delta.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
			w.Write(bytes.Repeat([]byte("partial"), 100000))
			panic(errBoom)
		})
	}()
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"f"}) {
		t.Errorf("a panic in fill left %v", names)
	}
}

// TestApplyFileInPlace: the output may be the old file itself (an updater
// patching a binary where it lies); a failed apply leaves it untouched.
func TestApplyFileInPlace(t *testing.T) {
	dir := t.TempDir()
	old := fakeBinary(70, 50<<10)
	newb := mutateBinary(71, old)
	path := filepath.Join(dir, "prog")
	patchPath := filepath.Join(dir, "prog.patch")
	writeFile(t, path, old, 0o751)
	p, _ := diffBytes(t, old, newb, nil)
	bad := bytes.Clone(p)
	bad[len(bad)-10] ^= 0x10
	writeFile(t, patchPath, bad, 0o644)
	if _, err := delta.ApplyFile(context.Background(), path, patchPath, path, nil); err == nil {
		t.Fatal("damaged patch applied")
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
		t.Fatal("failed in-place apply changed the old file")
	}
	writeFile(t, patchPath, p, 0o644)
	if _, err := delta.ApplyFile(context.Background(), path, patchPath, path, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, newb) {
		t.Fatal("in-place apply: wrong output")
	}
	if fi, err := os.Stat(path); err != nil {
		t.Error(err)
	} else if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o751 {
		t.Errorf("in-place apply: mode %v, want 0751", fi.Mode())
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"prog", "prog.patch"}) {
		t.Errorf("directory holds %v", names)
	}
}
