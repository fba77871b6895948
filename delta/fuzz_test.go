package delta_test

// Fuzz targets. Run one with, for example,
//
//	go test ./delta -run '^$' -fuzz '^FuzzApplyNative$' -fuzztime 20s
//
// Inputs the fuzzer found that once failed are kept as regression seeds in
// delta/testdata/fuzz/<target>/ and run by every plain `go test`.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	dsbzip2 "github.com/dsnet/compress/bzip2"

	"github.com/deltaup/deltaup/delta"
)

// fuzzMaxNew caps the new size the fuzz targets let a patch declare, to keep
// every execution fast; patches over it must fail with ErrTooLarge.
const fuzzMaxNew = 1 << 20

// seedPairs are small (old, new) pairs for seeds.
func seedPairs() [][2][]byte {
	old := hostileOlds()["old.bin"]
	return [][2][]byte{
		{nil, nil},
		{nil, []byte("new")},
		{[]byte("old"), nil},
		{[]byte("hello, world\n"), []byte("hello, brave new world\n")},
		{old[:600], hostileNew(old)[:700]},
		{old, hostileNew(old)},
	}
}

// addHostileSeeds adds the committed hostile fixtures of one format.
func addHostileSeeds(f *testing.F, prefix string, add func(old, patch []byte)) {
	fs, err := os.ReadDir(hostileDir)
	if err != nil {
		return // fixtures absent: the f.Add seeds still run
	}
	olds := map[string][]byte{}
	for _, e := range fs {
		if filepath.Ext(e.Name()) == ".bin" {
			olds[e.Name()], _ = os.ReadFile(filepath.Join(hostileDir, e.Name()))
		}
	}
	for _, e := range fs {
		name := e.Name()
		if filepath.Ext(name) != ".patch" || len(name) < len(prefix) || name[:len(prefix)] != prefix {
			continue
		}
		p, err := os.ReadFile(filepath.Join(hostileDir, name))
		if err != nil {
			f.Fatal(err)
		}
		add(olds["old.bin"], p)
	}
}

// checkApplyResult holds for any input: a failure wraps exactly one class
// (a failure in the header comes with no output); a success describes its
// output and, for a native patch, reproduces the header's SHA-256.
func checkApplyResult(t *testing.T, patch, out []byte, info delta.PatchInfo, err error) {
	t.Helper()
	if err != nil {
		switch cl := className(err); cl {
		case "unclassified", "multiple":
			t.Fatalf("Apply failed with an error of no single class (%s): %v", cl, err)
		case "format", "toolarge", "oldmismatch":
			if len(out) != 0 {
				t.Fatalf("%v, yet %d bytes were written", err, len(out))
			}
		}
		return
	}
	sum := sha256.Sum256(out)
	if info.NewSum != sum || info.NewSize != int64(len(out)) {
		t.Fatalf("PatchInfo %+v does not describe the %d-byte output", info, len(out))
	}
	switch {
	case bytes.HasPrefix(patch, []byte("DUPT")):
		h := parseNativeHeader(t, patch)
		if h.NewSum != sum || h.NewSize != uint64(len(out)) {
			t.Fatalf("native Apply succeeded with output (%d bytes, %x) the header does not describe (%d bytes, %x)", len(out), sum[:8], h.NewSize, h.NewSum[:8])
		}
		if info.Format != delta.FormatNative || !info.HasHash || info.Method != delta.Method(h.Method) {
			t.Fatalf("PatchInfo %+v for a native patch of method %d", info, h.Method)
		}
	case bytes.HasPrefix(patch, []byte("BSDIFF40")):
		if info.Format != delta.FormatBSDIFF40 || info.HasHash {
			t.Fatalf("PatchInfo %+v for a BSDIFF40 patch", info)
		}
	default:
		t.Fatalf("Apply accepted a patch with magic %q", patch[:min(8, len(patch))])
	}
}

// FuzzApplyNative applies arbitrary bytes as a patch. With fix set, a patch
// that starts like a native one gets its old size, old SHA-256, body length
// and CRC-32C rewritten to match, so the fuzzer reaches the body decoders
// instead of stopping at the header checksum.
func FuzzApplyNative(f *testing.F) {
	ctx := context.Background()
	for _, pr := range seedPairs() {
		for _, m := range []delta.Method{delta.MethodBsdiffCM, delta.MethodZstdDict, delta.MethodZstd} {
			var buf bytes.Buffer
			if _, err := delta.Diff(ctx, pr[0], pr[1], &buf, &delta.DiffOptions{Methods: []delta.Method{m}}); err != nil {
				continue // zstd-dict with an empty old file
			}
			f.Add(pr[0], buf.Bytes(), false)
			f.Add(pr[0], buf.Bytes(), true)
		}
	}
	addHostileSeeds(f, "native-", func(old, p []byte) { f.Add(old, p, false) })
	f.Fuzz(func(t *testing.T, old, patch []byte, fix bool) {
		if len(old) > 1<<16 || len(patch) > 1<<18 {
			return
		}
		if fix && len(patch) >= 100 && bytes.HasPrefix(patch, []byte("DUPT")) {
			patch = bytes.Clone(patch)
			binary.LittleEndian.PutUint64(patch[8:], uint64(len(old)))
			s := sha256.Sum256(old)
			copy(patch[24:56], s[:])
			binary.LittleEndian.PutUint64(patch[88:], uint64(len(patch)-100))
			fixCRC(patch)
		}
		out, info, err := applyBytes(t, old, patch, &delta.ApplyOptions{MaxNewSize: fuzzMaxNew})
		checkApplyResult(t, patch, out, info, err)
	})
}

// FuzzApplyBSDIFF40 applies arbitrary bytes as a BSDIFF40 patch.
func FuzzApplyBSDIFF40(f *testing.F) {
	ctx := context.Background()
	for _, pr := range seedPairs() {
		var buf bytes.Buffer
		if _, err := delta.Diff(ctx, pr[0], pr[1], &buf, &delta.DiffOptions{Format: delta.FormatBSDIFF40}); err != nil {
			f.Fatal(err)
		}
		f.Add(pr[0], buf.Bytes())
	}
	addHostileSeeds(f, "bs-", func(old, p []byte) { f.Add(old, p) })
	f.Fuzz(func(t *testing.T, old, patch []byte) {
		if len(old) > 1<<16 || len(patch) > 1<<18 {
			return
		}
		out, info, err := applyBytes(t, old, patch, &delta.ApplyOptions{MaxNewSize: fuzzMaxNew})
		checkApplyResult(t, patch, out, info, err)
	})
}

// FuzzApplyBSDIFF40Blocks fuzzes the uncompressed control, diff and extra
// blocks of a BSDIFF40 patch (random bytes never get through bzip2's CRCs)
// and checks Apply against refBspatch, a plain reading of the format with
// the same bounds: same output when it succeeds, ErrCorrupt (ErrTooLarge for
// the size cap) when it fails.
func FuzzApplyBSDIFF40Blocks(f *testing.F) {
	old := hostileOlds()["old.bin"][:512]
	f.Add(old, ctrlBytes(triple{10, 3, 100}, triple{5, 0, 0}), make([]byte, 15), []byte("xyz"), uint64(18))
	f.Add(old, ctrlBytes(triple{0, 2, 510}, triple{2, 1, -512}, triple{4, 0, 0}), []byte{1, 2, 3, 4, 5, 6}, []byte("abc"), uint64(9))
	f.Add(old, ctrlBytes(triple{-1, 5, 0}), []byte{}, make([]byte, 5), uint64(4))
	f.Add(old, ctrlBytes(triple{0, 1, 1 << 62}, triple{0, 1, 1 << 62}, triple{1, 0, 0}), []byte{0}, []byte("ab"), uint64(3))
	f.Add(old, slices.Concat(negZero, offtout(1), offtout(0)), []byte{}, []byte("a"), uint64(1))
	f.Add([]byte{}, []byte{}, []byte{}, []byte{}, uint64(0))
	f.Add(old, ctrlBytes(triple{1, 0, 0}), []byte{0}, []byte{}, uint64(1<<63|1))
	f.Fuzz(func(t *testing.T, old, ctrl, diff, extra []byte, rawNewSize uint64) {
		if len(old) > 1<<16 || len(ctrl)+len(diff)+len(extra) > 1<<16 {
			return
		}
		patch := bsPatchRaw(offtout(0), offtout(0), binary.LittleEndian.AppendUint64(nil, rawNewSize))
		cz, dz, ez := bzFast(ctrl), bzFast(diff), bzFast(extra)
		copy(patch[8:], offtout(int64(len(cz))))
		copy(patch[16:], offtout(int64(len(dz))))
		patch = slices.Concat(patch, cz, dz, ez)
		out, info, err := applyBytes(t, old, patch, &delta.ApplyOptions{MaxNewSize: fuzzMaxNew})
		checkApplyResult(t, patch, out, info, err)
		want, wantCl := refBspatch(old, ctrl, diff, extra, rawNewSize, fuzzMaxNew)
		if cl := className(err); cl != wantCl {
			t.Fatalf("Apply: %s (%v); reference: %s", cl, err, wantCl)
		}
		if err == nil && !bytes.Equal(out, want) {
			t.Fatalf("Apply output (%d bytes) differs from the reference's (%d bytes)", len(out), len(want))
		}
	})
}

func bzFast(b []byte) []byte {
	var buf bytes.Buffer
	zw, err := dsbzip2.NewWriter(&buf, &dsbzip2.WriterConfig{Level: 1})
	if err != nil {
		panic(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// offtinRef decodes sign-magnitude; "-0" and magnitudes over 2^62 are
// invalid (no bsdiff writes them; the package documents rejecting them).
func offtinRef(b []byte) (int64, bool) {
	u := binary.LittleEndian.Uint64(b)
	mag := u &^ (1 << 63)
	if mag > 1<<62 || u == 1<<63 {
		return 0, false
	}
	if u>>63 == 1 {
		return -int64(mag), true
	}
	return int64(mag), true
}

// refBspatch is bspatch as the package specifies it, on uncompressed blocks,
// returning the output or the class of the failure.
func refBspatch(old, ctrl, diff, extra []byte, rawNewSize uint64, maxNew int64) ([]byte, string) {
	newSize, ok := offtinRef(binary.LittleEndian.AppendUint64(nil, rawNewSize))
	if !ok || newSize < 0 {
		return nil, "corrupt"
	}
	if newSize > maxNew {
		return nil, "toolarge"
	}
	var out []byte
	var oldPos int64
	for int64(len(out)) < newSize {
		if len(ctrl) < 24 {
			return nil, "corrupt"
		}
		add, ok1 := offtinRef(ctrl[0:])
		ext, ok2 := offtinRef(ctrl[8:])
		seek, ok3 := offtinRef(ctrl[16:])
		ctrl = ctrl[24:]
		if !ok1 || !ok2 || !ok3 || add < 0 || ext < 0 || add+ext > newSize-int64(len(out)) {
			return nil, "corrupt"
		}
		if oldPos < 0 || oldPos+add > int64(len(old)) {
			return nil, "corrupt"
		}
		if int64(len(diff)) < add {
			return nil, "corrupt"
		}
		for i := range add {
			out = append(out, old[oldPos+i]+diff[i])
		}
		diff = diff[add:]
		if int64(len(extra)) < ext {
			return nil, "corrupt"
		}
		out = append(out, extra[:ext]...)
		extra = extra[ext:]
		oldPos += add + seek
		if oldPos > 1<<62 || oldPos < -(1<<62) {
			return nil, "corrupt"
		}
	}
	if len(ctrl)+len(diff)+len(extra) > 0 {
		return nil, "corrupt"
	}
	return out, "ok"
}

// FuzzRoundTrip diffs and applies arbitrary pairs with a format, method set
// and worker count picked by sel.
func FuzzRoundTrip(f *testing.F) {
	for i, pr := range seedPairs() {
		f.Add(pr[0], pr[1], uint8(i))
	}
	f.Add(bytes.Repeat([]byte{0}, 3000), bytes.Repeat([]byte{0}, 3100), uint8(1))
	f.Add([]byte("abcabcabcabc"), []byte("abcabcXbcabcabc"), uint8(4))
	methods := [][]delta.Method{nil, {delta.MethodBsdiffCM}, {delta.MethodZstdDict}, {delta.MethodZstd}, nil, {delta.MethodBsdiffCM, delta.MethodZstd}}
	f.Fuzz(func(t *testing.T, old, newb []byte, sel uint8) {
		if len(old) > 32<<10 || len(newb) > 32<<10 {
			return
		}
		o := delta.DiffOptions{Methods: methods[int(sel)%len(methods)], Workers: 1 + int(sel>>4)%4}
		if int(sel)%len(methods) == 4 {
			o.Format = delta.FormatBSDIFF40
		}
		var buf bytes.Buffer
		st, err := delta.Diff(context.Background(), old, newb, &buf, &o)
		if err != nil {
			if len(old) == 0 && slices.Equal(o.Methods, []delta.Method{delta.MethodZstdDict}) {
				return
			}
			t.Fatalf("Diff %+v: %v", o, err)
		}
		out, info, err := applyBytes(t, old, buf.Bytes(), nil)
		if err != nil {
			t.Fatalf("Apply of a fresh %v/%v patch: %v", o.Format, st.Method, err)
		}
		if !bytes.Equal(out, newb) {
			t.Fatalf("round trip %v/%v: output differs", o.Format, st.Method)
		}
		checkApplyResult(t, buf.Bytes(), out, info, nil)
	})
}
