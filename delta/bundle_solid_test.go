package delta_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/delta"
)

// solidTrees writes an OLD and a NEW tree where the NEW tree's files copy
// across OLD files (a merge of two files, a rename with edits): what the
// solid stream is for.
func solidTrees(t testing.TB) (oldDir, newDir string) {
	r := rand.New(rand.NewPCG(7, 10))
	a, b := textData(r, 12<<10), textData(r, 12<<10)
	merged := append(append(bytes.Clone(a[:6<<10]), []byte("// glue\n")...), b[6<<10:]...)
	dir := t.TempDir()
	oldDir, newDir = filepath.Join(dir, "old"), filepath.Join(dir, "new")
	writeTree(t, oldDir, []tnode{tdir("src", 0o755), tfile("src/a.js", 0o644, a), tfile("src/b.js", 0o644, b), tstr("README", 0o644, "readme\n")})
	writeTree(t, newDir, []tnode{tdir("src", 0o755), tfile("src/a.js", 0o644, editData(r, a)), tfile("src/bundle.js", 0o644, merged),
		tfile("src/c.js", 0o755, editData(r, b)), tstr("README", 0o644, "readme\n")})
	return oldDir, newDir
}

// TestSolidBundle: the solid form wins where files copy across the tree,
// round-trips, is deterministic across runs and worker counts, and NoSolid
// still writes a version 1 bundle that applies.
func TestSolidBundle(t *testing.T) {
	oldDir, newDir := solidTrees(t)
	b, st := makeBundle(t, oldDir, newDir, &delta.BundleOptions{Workers: 1})
	v1, st1 := makeBundle(t, oldDir, newDir, &delta.BundleOptions{NoSolid: true})
	if b[4] != 2 || st.SolidSize == 0 || st.Solid != 3 {
		t.Fatalf("bundle version %d, solid stream %d bytes, %d solid files; want version 2, a stream, 3 files", b[4], st.SolidSize, st.Solid)
	}
	if v1[4] != 1 || st1.SolidSize != 0 || st1.Solid != 0 {
		t.Fatalf("NoSolid: version %d, solid %d bytes", v1[4], st1.SolidSize)
	}
	if len(b) >= len(v1) {
		t.Errorf("solid bundle %d bytes, per-file %d: tree-wide matching should win here", len(b), len(v1))
	}
	for _, w := range []int{2} {
		if b2, _ := makeBundle(t, oldDir, newDir, &delta.BundleOptions{Workers: w}); !bytes.Equal(b, b2) {
			t.Errorf("Workers %d: bundle differs from Workers 1", w)
		}
	}
	for name, bb := range map[string][]byte{"solid": b, "v1": v1} {
		out, info, err := applyBundle(t, oldDir, bb, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		diffTrees(t, out, newDir)
		if name == "solid" && info.Solid != 3 {
			t.Errorf("applied %d solid files, want 3", info.Solid)
		}
	}
	ix, err := delta.ReadBundleIndex(context.Background(), bytes.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := ix.Counts(); c.Solid != 3 || c.Unchanged != 1 || ix.Size != int64(len(b)) {
		t.Errorf("index counts %+v, size %d", c, ix.Size)
	}
	for _, e := range ix.Entries {
		if e.Kind == delta.EntrySolid && (e.Size == 0 || e.SHA256 == [32]byte{}) {
			t.Errorf("index entry %s: no size or hash", e.Path)
		}
	}
}

// solidFixture is a hand-made solid bundle: OLD tree a.txt; NEW tree a.txt
// (edited) and b.txt (a copy of the old a.txt with an edit).
type solidFixture struct {
	oldDir, newDir string
	newA, newB     []byte
	payload        []byte // the solid stream's payload
	newDigest      [32]byte
	oldDigest      [32]byte
}

func newSolidFixture(t testing.TB) *solidFixture {
	r := rand.New(rand.NewPCG(3, 4))
	a := textData(r, 6000)
	fx := &solidFixture{newA: editData(r, a), newB: append(bytes.Clone(a[:4000]), "tail\n"...)}
	dir := t.TempDir()
	fx.oldDir, fx.newDir = filepath.Join(dir, "old"), filepath.Join(dir, "new")
	writeTree(t, fx.oldDir, []tnode{tfile("a.txt", 0o644, a)})
	writeTree(t, fx.newDir, []tnode{tfile("a.txt", 0o644, fx.newA), tfile("b.txt", 0o644, fx.newB)})
	var p bytes.Buffer
	if _, err := delta.Diff(context.Background(), a, append(bytes.Clone(fx.newA), fx.newB...), &p, nil); err != nil {
		t.Fatal(err)
	}
	fx.payload = compactPayload(p.Bytes())
	fx.oldDigest, fx.newDigest = treeDigest(t, fx.oldDir), treeDigest(t, fx.newDir)
	return fx
}

func (fx *solidFixture) bundle(edit func(rb *rawBundle)) []byte {
	rb := rawBundle{version: 2, count: -1, newSize: uint64(len(fx.newA) + len(fx.newB)), oldDigest: fx.oldDigest, newDigest: fx.newDigest,
		entries: []rawEntry{rSolid("a.txt", 0o644, fx.newA), rSolid("b.txt", 0o644, fx.newB)},
		solid:   cat(uv(uint64(len(fx.payload))), fx.payload)}
	if edit != nil {
		edit(&rb)
	}
	return rb.bytes()
}

// TestSolidBundleHostile: damaged solid bundles fail with the class
// docs/FORMAT.md gives, leave nothing behind, and never panic.
func TestSolidBundleHostile(t *testing.T) {
	fx := newSolidFixture(t)
	withPayload := func(p []byte) func(*rawBundle) {
		return func(rb *rawBundle) { rb.solid = cat(uv(uint64(len(p))), p) }
	}
	flip := func(i int) []byte { p := bytes.Clone(fx.payload); p[i] ^= 0x40; return p }
	cases := []struct {
		name string
		edit func(rb *rawBundle)
		want error
		msg  string
	}{
		{"valid", nil, nil, ""},
		{"solid kind in a version 1 bundle", func(rb *rawBundle) { rb.version = 1 }, delta.ErrCorrupt, "unknown kind 7"},
		{"version 3", func(rb *rawBundle) { rb.version = 3 }, delta.ErrFormat, "bundle version 3"},
		{"version 2 without solid entries", func(rb *rawBundle) {
			rb.entries, rb.newSize = []rawEntry{rSame("a.txt")}, 6000
		}, delta.ErrCorrupt, "without solid entries"},
		{"solid section longer than the bundle", func(rb *rawBundle) { rb.solid = cat(uv(uint64(len(fx.payload)+100)), fx.payload) }, delta.ErrCorrupt, "truncated"},
		{"solid length over the cap", func(rb *rawBundle) { rb.solid = uv(1 << 40) }, delta.ErrTooLarge, "exceeds the cap"},
		{"solid length under a header", func(rb *rawBundle) { rb.solid = cat(uv(10), fx.payload[:10]) }, delta.ErrCorrupt, "shorter than a payload header"},
		{"unknown method", withPayload(append([]byte{10}, fx.payload[1:]...)), delta.ErrFormat, "method 10"},
		{"stream size differs from the entries", func(rb *rawBundle) {
			rb.entries[1] = rSolid("b.txt", 0o644, fx.newB[:len(fx.newB)-1])
			rb.newSize--
		}, delta.ErrCorrupt, "add up to"},
		{"empty solid file", func(rb *rawBundle) { rb.entries[1] = rawEntry{7, "b.txt", cat(uv(0o644), uv(0), make([]byte, 32))} }, delta.ErrCorrupt, "empty file"},
		{"solid file over the cap", func(rb *rawBundle) {
			rb.entries[1] = rawEntry{7, "b.txt", cat(uv(0o644), uv(1<<40), make([]byte, 32))}
		}, delta.ErrTooLarge, "exceeds the cap"},
		{"entry hash wrong", func(rb *rawBundle) {
			other := bytes.Clone(fx.newB)
			other[0] ^= 1
			rb.entries[1] = rSolid("b.txt", 0o644, other)
		}, delta.ErrHashMismatch, "b.txt"},
		{"body byte flipped", withPayload(flip(len(fx.payload) - 10)), delta.ErrCorrupt, "checksum"},
		{"stream hash flipped", withPayload(flip(5)), delta.ErrHashMismatch, ""},
		{"trailer", func(rb *rawBundle) { rb.trailerXor = 1 }, delta.ErrCorrupt, "trailer"},
		{"bad mode", func(rb *rawBundle) { rb.entries[0] = rawEntry{7, "a.txt", cat(uv(0o1000), uv(1), make([]byte, 32))} }, delta.ErrCorrupt, "mode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := fx.bundle(c.edit)
			out, _, err := applyBundle(t, fx.oldDir, b, nil)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				diffTrees(t, out, fx.newDir)
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %v; want %v containing %q", err, c.want, c.msg)
			}
			if _, serr := os.Lstat(out); !errors.Is(serr, fs.ErrNotExist) {
				t.Fatal("output left behind")
			}
		})
	}
	// Every truncation, and a flipped byte every 13 bytes, fails cleanly
	// (applyBundle checks that nothing is left and that nothing panics).
	valid := fx.bundle(nil)
	for n := 0; n < len(valid); n += 1 + n/64 {
		if _, _, err := applyBundle(t, fx.oldDir, valid[:n], nil); err == nil {
			t.Fatalf("truncated to %d bytes: applied", n)
		}
	}
	for i := 0; i < len(valid); i += 13 {
		if _, _, err := applyBundle(t, fx.oldDir, flipAt(valid, i), nil); err == nil || className(err) == "unclassified" {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
}

// FuzzApplySolidBundle applies arbitrary bytes as a bundle to the OLD tree
// of the hand-made solid fixture. Run it with
//
//	go test ./delta -run '^$' -fuzz '^FuzzApplySolidBundle$' -fuzztime 20s
//
// No panic; a failure leaves no output directory and wraps exactly one
// delta class (or is an I/O error about a path); a success yields the tree
// whose digest ApplyBundle reports.
func FuzzApplySolidBundle(f *testing.F) {
	fx := newSolidFixture(f)
	valid := fx.bundle(nil)
	for _, b := range [][]byte{valid, valid[:120], flipAt(valid, 100), flipAt(valid, len(valid)-60)} {
		f.Add(b)
	}
	opts := &delta.BundleApplyOptions{MaxEntries: 64, MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, NoSync: true}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := filepath.Join(t.TempDir(), "out")
		info, err := delta.ApplyBundle(context.Background(), fx.oldDir, bytes.NewReader(b), out, opts)
		if err != nil {
			checkFailedApply(t, out, err)
			return
		}
		if d := treeDigest(t, out); d != info.NewDigest {
			t.Fatalf("output digest %x, ApplyBundle says %x", d, info.NewDigest)
		}
		if _, err := delta.ReadBundleIndex(context.Background(), bytes.NewReader(b), opts); err != nil {
			t.Fatalf("applies but its index does not read: %v", err)
		}
	})
}
