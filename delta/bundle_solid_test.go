package delta_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
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
		{"version 4", func(rb *rawBundle) { rb.version = 4 }, delta.ErrFormat, "bundle version 4"},
		{"version 3 without second-stream entries", func(rb *rawBundle) { rb.version = 3 }, delta.ErrCorrupt, "without its solid entries"},
		{"version 2 without solid entries", func(rb *rawBundle) {
			rb.entries, rb.newSize = []rawEntry{rSame("a.txt")}, 6000
		}, delta.ErrCorrupt, "without its solid entries"},
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
	// A version 3 bundle (two solid streams) against the same OLD tree.
	v3 := twinBundle(f, fx)
	for _, b := range [][]byte{v3, v3[:len(v3)-50], flipAt(v3, len(v3)-70)} {
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

// twinTrees writes an OLD and a NEW tree where two builds of one module
// (lib/NAME.js and lib/NAME.mjs, as a dual CJS/ESM package ships) get the
// same new code; with rename set, the .mjs files take other stems.
func twinTrees(t testing.TB, rename bool) (oldDir, newDir string) {
	r := rand.New(rand.NewPCG(21, 22))
	dir := t.TempDir()
	oldDir, newDir = filepath.Join(dir, "old"), filepath.Join(dir, "new")
	oldT := []tnode{tdir("lib", 0o755)}
	newT := []tnode{tdir("lib", 0o755)}
	for _, name := range []string{"alpha", "beta"} {
		body := make([]byte, 20<<10) // minified code: little to compress
		for i := range body {
			body[i] = byte(r.Uint32())
		}
		// The new version: the same small edits all over both builds (a
		// renamed identifier, changed constants), which an edit script
		// codes as a few difference bytes each.
		nbody := bytes.Clone(body)
		for at := 100; at+2 < len(nbody); at += 97 {
			nbody[at], nbody[at+1] = byte(r.Uint32()), byte(r.Uint32())
		}
		cjs := append([]byte("'use strict';\n"), body...)
		esm := append([]byte("export {};\n"), body...)
		ncjs := append([]byte("'use strict';\n"), nbody...)
		nesm := append([]byte("export {};\n"), nbody...)
		twin := "lib/" + name + ".mjs"
		if rename {
			twin = "lib/" + name + "-esm.mjs"
		}
		oldT = append(oldT, tfile("lib/"+name+".js", 0o644, cjs), tfile(twin, 0o644, esm))
		newT = append(newT, tfile("lib/"+name+".js", 0o644, ncjs), tfile(twin, 0o644, nesm))
	}
	writeTree(t, oldDir, oldT)
	writeTree(t, newDir, newT)
	return oldDir, newDir
}

// TestSolidBundleTwoStreams: where files of one stem carry the same new
// code, the second solid stream (version 3) codes the .mjs builds against
// the .js builds' new bytes: the bundle is much smaller than the one stream
// of the same trees with unrelated names, applies, is deterministic, and
// its index lists the files of both streams. Where one stream is smaller
// (zstd copies across new files on small trees), one stream is kept.
func TestSolidBundleTwoStreams(t *testing.T) {
	// The edit-script coders only: on files this small zstd with the
	// window as dictionary copies across new files too (it wins on
	// these, in one stream); on a tree of several MB it is not tried.
	cmOnly := []delta.Method{delta.MethodBsdiffCM, delta.MethodBsdiffCM2}
	oldDir, newDir := twinTrees(t, false)
	b, st := makeBundle(t, oldDir, newDir, &delta.BundleOptions{Workers: 1, Methods: cmOnly})
	if b[4] != 3 || st.SolidStreams != 2 || st.Solid != 4 {
		t.Fatalf("version %d, %d solid streams, %d solid files; want version 3, 2 streams, 4 files", b[4], st.SolidStreams, st.Solid)
	}
	oldR, newR := twinTrees(t, true)
	one, st1 := makeBundle(t, oldR, newR, &delta.BundleOptions{Workers: 1, Methods: cmOnly})
	if one[4] != 2 || st1.SolidStreams != 1 {
		t.Fatalf("unrelated names: version %d, %d streams; want version 2, one stream", one[4], st1.SolidStreams)
	}
	if 10*len(b) > 8*len(one) {
		t.Errorf("two streams: %d bytes; one stream: %d; want at most 0.8x", len(b), len(one))
	}
	if b2, _ := makeBundle(t, oldDir, newDir, &delta.BundleOptions{Workers: 2, Methods: cmOnly}); !bytes.Equal(b, b2) {
		t.Error("Workers 2: bundle differs from Workers 1")
	}
	if _, stz := makeBundle(t, oldDir, newDir, nil); stz.SolidStreams != 1 {
		t.Errorf("default methods: %d solid streams, want 1 (zstd-dict in one stream is smaller here)", stz.SolidStreams)
	}
	out, info, err := applyBundle(t, oldDir, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	diffTrees(t, out, newDir)
	if info.Solid != 4 {
		t.Errorf("applied %d solid files, want 4", info.Solid)
	}
	ix, err := delta.ReadBundleIndex(context.Background(), bytes.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]delta.EntryKind{}
	for _, e := range ix.Entries {
		kinds[e.Path] = e.Kind
	}
	if kinds["lib/alpha.js"] != delta.EntrySolid || kinds["lib/alpha.mjs"] != delta.EntrySolid2 || kinds["lib/beta.mjs"] != delta.EntrySolid2 {
		t.Errorf("entry kinds %v", kinds)
	}
	// Damage: the second stream cut short, a byte of it flipped, the
	// header saying version 2 (which has no second stream). Each fails
	// with a typed error.
	for name, bad := range map[string][]byte{
		"truncated":    b[:len(b)-40],
		"flipped":      flipAt(b, len(b)-60),
		"as version 2": setVersion(b, 2),
	} {
		_, _, err := applyBundle(t, oldDir, bad, nil)
		if err == nil || !(errors.Is(err, delta.ErrCorrupt) || errors.Is(err, delta.ErrHashMismatch)) {
			t.Errorf("%s: %v, want ErrCorrupt or ErrHashMismatch", name, err)
		}
	}
}

// setVersion returns b with header version v, its CRC and the trailer
// made valid again.
func setVersion(b []byte, v byte) []byte {
	c := bytes.Clone(b)
	c[4] = v
	binary.LittleEndian.PutUint32(c[84:], crc32.Checksum(c[:84], crc32.MakeTable(crc32.Castagnoli)))
	return fixTrailer(c)
}

// twinBundle makes a version 3 bundle from fx's OLD tree to a NEW tree of
// two files of one stem that carry the same edits.
func twinBundle(t testing.TB, fx *solidFixture) []byte {
	newDir := filepath.Join(t.TempDir(), "new")
	r := rand.New(rand.NewPCG(5, 6))
	edited := bytes.Clone(fx.newA)
	for at := 50; at+1 < len(edited); at += 61 {
		edited[at] = byte(r.Uint32())
	}
	writeTree(t, newDir, []tnode{tfile("a.txt", 0o644, edited), tfile("a.txt.bak", 0o644, append([]byte("#\n"), edited...))})
	b, st := makeBundle(t, fx.oldDir, newDir, &delta.BundleOptions{Methods: []delta.Method{delta.MethodBsdiffCM}})
	if b[4] != 3 || st.SolidStreams != 2 {
		t.Fatalf("twin bundle: version %d, %d streams; want 3, 2", b[4], st.SolidStreams)
	}
	return b
}
