package delta_test

// BSDIFF40 interoperability with other implementations: the pure-Go
// github.com/gabstv/go-bsdiff and the bsdiff/bspatch tools (Debian's
// package of Colin Percival's bsdiff 4.3).

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gabstv/go-bsdiff/pkg/bsdiff"
	"github.com/gabstv/go-bsdiff/pkg/bspatch"

	"github.com/deltaup/deltaup/delta"
)

func interopPairs() []pair {
	bin := fakeBinary(300, 400<<10)
	rnd := randomBytes(302, 100<<10)
	zeros := make([]byte, 32<<10)
	return []pair{
		{name: "binary-400k", old: bin, new: mutateBinary(301, bin)},
		{name: "unrelated-100k", old: rnd, new: randomBytes(303, 120<<10)},
		{name: "zero-runs", old: zeros, new: slices.Concat(zeros[:10000], []byte("xyz"), zeros)},
		{name: "text", old: []byte("hello, world\n"), new: []byte("hello, brave new world\n")},
		{name: "one-byte", old: []byte{1}, new: []byte{2}},
		{name: "empty-new", old: bin[:1000], new: nil},
	}
}

// tryCall runs fn, turning a panic in the other implementation into an
// error: its bugs are not ours to fail on.
func tryCall(fn func() ([]byte, error)) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn()
}

func TestInteropGoBsdiff(t *testing.T) {
	for _, p := range interopPairs() {
		t.Run(p.name, func(t *testing.T) {
			ours, _ := diffBytes(t, p.old, p.new, &delta.DiffOptions{Format: delta.FormatBSDIFF40})
			got, err := tryCall(func() ([]byte, error) { return bspatch.Bytes(p.old, ours) })
			if err != nil {
				t.Errorf("go-bsdiff's bspatch rejects our patch: %v", err)
			} else if !bytes.Equal(got, p.new) {
				t.Errorf("go-bsdiff's bspatch of our patch: wrong output (%d bytes, want %d)", len(got), len(p.new))
			}

			theirs, err := tryCall(func() ([]byte, error) { return bsdiff.Bytes(p.old, p.new) })
			if err != nil {
				t.Skipf("go-bsdiff's bsdiff fails on this pair: %v", err)
			}
			out, info, err := applyBytes(t, p.old, theirs, nil)
			if err != nil {
				t.Fatalf("Apply of go-bsdiff's %d-byte patch: %v", len(theirs), err)
			}
			if !bytes.Equal(out, p.new) {
				t.Fatalf("Apply of go-bsdiff's patch: wrong output")
			}
			if info.Format != delta.FormatBSDIFF40 || info.HasHash || info.NewSize != int64(len(p.new)) {
				t.Errorf("PatchInfo %+v", info)
			}
			t.Logf("patch sizes: ours %d, go-bsdiff %d", len(ours), len(theirs))
		})
	}
}

func TestInteropBsdiffTools(t *testing.T) {
	bsdiffPath, err := exec.LookPath("bsdiff")
	if err != nil {
		t.Skip("bsdiff not installed: apt-get install bsdiff")
	}
	bspatchPath, err := exec.LookPath("bspatch")
	if err != nil {
		t.Skip("bspatch not installed: apt-get install bsdiff")
	}
	for _, p := range interopPairs() {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			oldPath := filepath.Join(dir, "old")
			newPath := filepath.Join(dir, "new")
			writeFile(t, oldPath, p.old, 0o644)
			writeFile(t, newPath, p.new, 0o644)

			// Ours through bspatch.
			ours, _ := diffBytes(t, p.old, p.new, &delta.DiffOptions{Format: delta.FormatBSDIFF40})
			oursPath := filepath.Join(dir, "ours.patch")
			writeFile(t, oursPath, ours, 0o644)
			outPath := filepath.Join(dir, "out")
			if b, err := exec.Command(bspatchPath, oldPath, outPath, oursPath).CombinedOutput(); err != nil {
				t.Errorf("bspatch rejects our patch: %v: %s", err, b)
			} else if got, _ := os.ReadFile(outPath); !bytes.Equal(got, p.new) {
				t.Errorf("bspatch of our patch: wrong output (%d bytes, want %d)", len(got), len(p.new))
			}

			// Theirs through Apply and ApplyFile.
			theirsPath := filepath.Join(dir, "theirs.patch")
			if b, err := exec.Command(bsdiffPath, oldPath, newPath, theirsPath).CombinedOutput(); err != nil {
				t.Skipf("bsdiff fails on this pair: %v: %s", err, b)
			}
			theirs, err := os.ReadFile(theirsPath)
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := applyBytes(t, p.old, theirs, nil)
			if err != nil {
				t.Fatalf("Apply of bsdiff's %d-byte patch: %v", len(theirs), err)
			}
			if !bytes.Equal(out, p.new) {
				t.Fatalf("Apply of bsdiff's patch: wrong output")
			}
			out2Path := filepath.Join(dir, "out2")
			if _, err := delta.ApplyFile(t.Context(), oldPath, theirsPath, out2Path, nil); err != nil {
				t.Fatalf("ApplyFile of bsdiff's patch: %v", err)
			}
			if got, _ := os.ReadFile(out2Path); !bytes.Equal(got, p.new) {
				t.Fatalf("ApplyFile of bsdiff's patch: wrong output")
			}
			t.Logf("patch sizes: ours %d, bsdiff %d", len(ours), len(theirs))
		})
	}
}
