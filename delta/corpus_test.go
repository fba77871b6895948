package delta_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deltaup/deltaup/delta"
)

// corpusDir is $DELTAUP_CORPUS or ~/.cache/deltaup-corpus, as for
// ../shared/corpus/fetch.sh and the benchmarks.
func corpusDir() string {
	if d := os.Getenv("DELTAUP_CORPUS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "deltaup-corpus")
}

// TestCorpusEsbuild round-trips a real pair: two consecutive esbuild
// releases (10 MB Go binaries).
func TestCorpusEsbuild(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus round trip skipped in -short mode")
	}
	dir := corpusDir()
	oldPath := filepath.Join(dir, "esbuild", "0.25.0", "bin", "esbuild")
	newPath := filepath.Join(dir, "esbuild", "0.25.1", "bin", "esbuild")
	old, err1 := os.ReadFile(oldPath)
	newb, err2 := os.ReadFile(newPath)
	if err1 != nil || err2 != nil {
		t.Skip("corpus absent: run ../shared/corpus/fetch.sh")
	}
	// Diffed once, through the file API (diffing is the cost; the bytes API
	// is the same code, tested on smaller inputs), applied through both.
	tmp := t.TempDir()
	patchPath := filepath.Join(tmp, "esbuild.patch")
	outPath := filepath.Join(tmp, "esbuild")
	t0 := time.Now()
	st, err := delta.DiffFile(context.Background(), oldPath, newPath, patchPath, nil)
	if err != nil {
		t.Fatalf("DiffFile: %v", err)
	}
	t1 := time.Now()
	patch, err := os.ReadFile(patchPath)
	if err != nil {
		t.Fatal(err)
	}
	out, info, err := applyBytes(t, old, patch, nil)
	t2 := time.Now()
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !bytes.Equal(out, newb) {
		t.Fatal("Apply output differs from esbuild 0.25.1")
	}
	if !info.HasHash || info.Method != st.Method || info.NewSize != int64(len(newb)) {
		t.Errorf("PatchInfo %+v, DiffStats %+v", info, st)
	}
	// A sanity bound, far above what bsdiff-style patches of consecutive
	// releases take (about 4%), so it only catches a patch gone wrong.
	if len(patch) > len(newb)/4 {
		t.Errorf("patch is %d bytes for a %d-byte file", len(patch), len(newb))
	}
	t.Logf("esbuild 0.25.0 -> 0.25.1: %d -> %d bytes, patch %d bytes (%v, %.2f%%), diff %v, apply %v",
		len(old), len(newb), len(patch), st.Method, 100*float64(len(patch))/float64(len(newb)), t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond))

	// The same through the file API.
	if _, err := delta.ApplyFile(context.Background(), oldPath, patchPath, outPath, nil); err != nil {
		t.Fatalf("ApplyFile: %v", err)
	}
	got, err := os.ReadFile(outPath)
	if err != nil || !bytes.Equal(got, newb) {
		t.Fatalf("ApplyFile output differs (%v)", err)
	}
	ofi, err1 := os.Stat(oldPath)
	fi, err2 := os.Stat(outPath)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if fi.Mode().Perm() != ofi.Mode().Perm() {
		t.Errorf("ApplyFile output mode %v, old file's %v", fi.Mode(), ofi.Mode())
	}
}
