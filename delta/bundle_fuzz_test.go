package delta_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/deltaup/deltaup/delta"
)

// checkFailedApply checks a failed ApplyBundle: the output directory is
// gone, and the error wraps exactly one delta class or is an I/O error about
// a path (e.g. a name the file system refuses).
func checkFailedApply(t *testing.T, out string, err error) {
	t.Helper()
	if _, serr := os.Lstat(out); !errors.Is(serr, fs.ErrNotExist) {
		t.Fatalf("failed (%v) but left the output directory", err)
	}
	var pe *fs.PathError
	var le *os.LinkError
	if c := className(err); c == "unclassified" && !errors.As(err, &pe) && !errors.As(err, &le) {
		t.Fatalf("unclassified error: %v", err)
	} else if c == "multiple" {
		t.Fatalf("error wraps several classes: %v", err)
	}
}

// FuzzApplyBundle applies arbitrary bytes as a bundle to the golden OLD
// tree. Run it with
//
//	go test ./delta -run '^$' -fuzz '^FuzzApplyBundle$' -fuzztime 20s
//
// Seeds: the golden bundle (made with zstd payloads and with every method),
// the bundle from the OLD tree to itself, and damaged copies. Each run must
// not panic; on failure the output directory must be gone and the error
// must wrap exactly one delta class (or be an I/O error about a path, e.g.
// a name the file system refuses); on success the output must be a tree the
// scanner accepts, with the digest ApplyBundle reports.
func FuzzApplyBundle(f *testing.F) {
	dir := f.TempDir()
	oldDir, newDir := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	writeTree(f, oldDir, goldenOldTree)
	writeTree(f, newDir, goldenNewTree)
	zb, _ := makeBundle(f, oldDir, newDir, &delta.BundleOptions{Methods: zstdOnly})
	ab, _ := makeBundle(f, oldDir, newDir, nil)
	same, _ := makeBundle(f, oldDir, oldDir, nil)
	for _, b := range [][]byte{zb, ab, same, zb[:200], flipAt(zb, 100), flipAt(zb, len(zb)-40), append(bytes.Clone(same), 0)} {
		f.Add(b)
	}
	opts := &delta.BundleApplyOptions{MaxEntries: 256, MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, NoSync: true}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := filepath.Join(t.TempDir(), "out")
		info, err := delta.ApplyBundle(context.Background(), oldDir, bytes.NewReader(b), out, opts)
		if err != nil {
			checkFailedApply(t, out, err)
			return
		}
		if d := treeDigest(t, out); d != info.NewDigest {
			t.Fatalf("output digest %x, ApplyBundle says %x", d, info.NewDigest)
		}
	})
}
