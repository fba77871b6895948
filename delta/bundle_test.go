package delta_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
)

// goldenBytes makes n deterministic bytes that look like a small program:
// this file's own generator, so the golden fixture does not move when other
// tests' helpers change.
func goldenBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, 0, n)
	for len(b) < n {
		if r.IntN(3) == 0 {
			b = append(b, "call runtime.main; mov rax, rbx; ret\x00"...)
		} else {
			b = append(b, byte(r.IntN(16)), 0x48, 0x89, byte(r.Uint32()))
		}
	}
	return b[:n]
}

// goldenEdit changes b the way a rebuild does: a few bytes bumped every
// ~500 bytes and a block inserted in the middle.
func goldenEdit(b []byte) []byte {
	out := bytes.Clone(b)
	for i := 100; i < len(out); i += 499 {
		out[i] += 3
	}
	mid := len(out) / 2
	return append(out[:mid:mid], append([]byte("inserted in version 2\n"), out[mid:]...)...)
}

func goldenText(what string, lines int) string {
	var sb strings.Builder
	for i := range lines {
		fmt.Fprintf(&sb, "%s line %d: the quick brown fox jumps over the lazy dog\n", what, i)
	}
	return sb.String()
}

// The golden fixture: every kind of change a release makes.
var (
	goldenApp     = goldenBytes(1, 20000)
	goldenParser  = goldenText("function parse()", 80)
	goldenOldTree = []tnode{
		tstr("README.md", 0o644, "deltaup golden fixture\n"),                     // unchanged
		tlink("app-link", "bin/app"),                                             // unchanged symlink
		tdir("bin", 0o755),                                                       //
		tfile("bin/app", 0o755, goldenApp),                                       // patched in place, exec bit kept
		tstr("bin/helper.sh", 0o755, "#!/bin/sh\necho helper\n"),                 // mode change only
		tdir("conf", 0o755),                                                      //
		tstr("conf/settings.ini", 0o600, goldenText("[settings] key=value", 30)), // patched, mode 0600 kept
		tdir("data", 0o755),                                                      // removed with its file
		tfile("data/removed.bin", 0o644, goldenBytes(2, 3000)),                   //
		tdir("docs", 0o755),                                                      // removed: its file moves
		tstr("docs/guide.md", 0o644, goldenText("# Guide", 40)),                  // moved to share/doc/
		tdir("lib", 0o755),                                                       //
		tstr("lib/old-name.txt", 0o644, goldenText("renamed", 20)),               // renamed
		tstr("lib/parser-1.2.js", 0o644, goldenParser),                           // renamed and edited
	}
	goldenNewTree = []tnode{
		tstr("README.md", 0o644, "deltaup golden fixture\n"),
		tlink("app-link", "bin/app"),
		tdir("bin", 0o755),
		tfile("bin/app", 0o755, goldenEdit(goldenApp)),
		tstr("bin/helper.sh", 0o644, "#!/bin/sh\necho helper\n"),
		tdir("conf", 0o755),
		tstr("conf/settings.ini", 0o600, goldenText("[settings] key=value", 30)+"added=1\n"),
		tdir("empty", 0o750),                     // new empty directory
		tdir("lib", 0o755),                       //
		tlink("lib/current.js", "parser-1.3.js"), // new symlink
		tstr("lib/empty.txt", 0o644, ""),         // new empty file
		tstr("lib/new-name.txt", 0o644, goldenText("renamed", 20)),
		tstr("lib/parser-1.3.js", 0o644, strings.Replace(goldenParser, "line 40", "line forty", 1)),
		tstr("notes.rst", 0o644, goldenText("release notes", 12)), // new file
		tdir("share", 0o755),
		tdir("share/doc", 0o755),
		tstr("share/doc/guide.md", 0o644, goldenText("# Guide", 40)),
	}
)

// goldenTrees writes the fixture's OLD and NEW trees under a temporary
// directory.
func goldenTrees(t testing.TB) (oldDir, newDir string) {
	t.Helper()
	dir := t.TempDir()
	oldDir, newDir = filepath.Join(dir, "old"), filepath.Join(dir, "new")
	writeTree(t, oldDir, goldenOldTree)
	writeTree(t, newDir, goldenNewTree)
	return oldDir, newDir
}

// zstdOnly are the payload methods of the golden bundle: their bytes do not
// depend on the cm1 coder, which may be retuned.
var zstdOnly = []delta.Method{delta.MethodZstdDict, delta.MethodZstd}

// bundleListing describes a bundle's entries one per line.
func bundleListing(ix *delta.BundleIndex) string {
	var sb strings.Builder
	for _, e := range ix.Entries {
		fmt.Fprintf(&sb, "%-9s %s", e.Kind, e.Path)
		switch e.Kind {
		case delta.EntryDir:
			fmt.Fprintf(&sb, " %04o", e.Mode)
		case delta.EntrySymlink:
			fmt.Fprintf(&sb, " -> %s", e.Target)
		case delta.EntryCopy:
			fmt.Fprintf(&sb, " %04o <- %s", e.Mode, e.Source)
		case delta.EntryPatch:
			fmt.Fprintf(&sb, " %04o <- %s, %d bytes", e.Mode, e.Source, e.Size)
		case delta.EntryNew:
			fmt.Fprintf(&sb, " %04o, %d bytes", e.Mode, e.Size)
		}
		sb.WriteByte('\n')
	}
	for _, p := range ix.Removed {
		fmt.Fprintf(&sb, "%-9s %s\n", "removed", p)
	}
	return sb.String()
}

func readIndex(t testing.TB, b []byte) *delta.BundleIndex {
	t.Helper()
	ix, err := delta.ReadBundleIndex(context.Background(), bytes.NewReader(b), nil)
	if err != nil {
		t.Fatalf("ReadBundleIndex: %v", err)
	}
	if ix.Size != int64(len(b)) {
		t.Errorf("BundleIndex.Size = %d, bundle is %d bytes", ix.Size, len(b))
	}
	return ix
}

var goldenPath = filepath.Join("..", "testdata", "bundle", "golden.txt")

// TestBundleGolden pins the bundle of the fixture above: its listing (kinds,
// paths, modes, sources, removals), both tree digests, and the SHA-256 of
// the whole bundle made with zstd payloads only (so a retuned cm1 coder
// does not move it; a change of the bundle layout or of the zstd encoder
// does). Regenerate testdata/bundle/golden.txt with
//
//	go test ./delta -run TestBundleGolden -update
func TestBundleGolden(t *testing.T) {
	oldDir, newDir := goldenTrees(t)
	// Version 1 (NoSolid): the golden bytes pin the per-file form, which
	// older clients read; bundle_solid_test.go covers version 2.
	b, st := makeBundle(t, oldDir, newDir, &delta.BundleOptions{Methods: zstdOnly, NoSolid: true})
	ix := readIndex(t, b)
	listing := bundleListing(ix)
	got := fmt.Sprintf(`# DUPB golden bundle of the fixture trees of delta/bundle_test.go.
# Regenerate: go test ./delta -run TestBundleGolden -update
# The bundle below is made with zstd payloads only (BundleOptions.Methods),
# so that retuning the cm1 coder does not change its bytes; the listing is
# also checked for a bundle made with every method.
old-digest %x
new-digest %x
%sbundle-size %d
bundle-sha256 %s
`, ix.OldDigest, ix.NewDigest, listing, len(b), sha256hex(b))
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if got != string(want) {
		t.Errorf("bundle differs from %s (if the change is intended, rerun with -update):\n--- got\n%s--- want\n%s", goldenPath, got, want)
	}

	// What the fixture is for: every kind, in the expected places.
	c := st.BundleCounts
	if c != (delta.BundleCounts{Dirs: 6, Symlinks: 2, Unchanged: 1, Copied: 3, Patched: 3, New: 2, Removed: 6}) {
		t.Errorf("counts %+v", c)
	}
	if ix.Counts() != c {
		t.Errorf("index counts %+v, stats %+v", ix.Counts(), c)
	}

	// A bundle with every method has the same listing.
	b2, _ := makeBundle(t, oldDir, newDir, &delta.BundleOptions{NoSolid: true})
	if l2 := bundleListing(readIndex(t, b2)); l2 != listing {
		t.Errorf("listing with all methods differs:\n%s\nwant\n%s", l2, listing)
	}

	// Both apply, and rebuild the NEW tree exactly.
	for _, bb := range [][]byte{b, b2} {
		out, info, err := applyBundle(t, oldDir, bb, nil)
		if err != nil {
			t.Fatalf("ApplyBundle: %v", err)
		}
		diffTrees(t, out, newDir)
		if info.NewDigest != ix.NewDigest || info.BundleCounts != c || info.BundleSize != int64(len(bb)) {
			t.Errorf("BundleInfo %+v", info)
		}
		fi, err := os.Lstat(filepath.Join(out, "lib", "current.js"))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("lib/current.js is not a symlink: %v %v", fi, err)
		}
		if fi, err := os.Stat(filepath.Join(out, "bin", "app")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("bin/app: %v %v", fi, err)
		}
		if es, err := os.ReadDir(filepath.Join(out, "empty")); err != nil || len(es) != 0 {
			t.Errorf("empty/: %v %v", es, err)
		}
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestBundleRoundTripRandom round-trips seeded random trees and their next
// versions (renames, moves, edits, copies, mode changes, deletions, empty
// files and directories, symlinks, type changes; one tree with a 3 MB file)
// and compares the tree digests.
func TestBundleRoundTripRandom(t *testing.T) {
	var total delta.BundleCounts
	renamedPatches := 0
	for seed := uint64(1); seed <= 10; seed++ {
		big := seed == 10
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0xb0b))
			n := 40
			if big {
				n = 10
			}
			oldM := randomTree(r, n, big)
			newM := mutateTree(r, oldM)
			dir := t.TempDir()
			oldDir, newDir := filepath.Join(dir, "old"), filepath.Join(dir, "new")
			writeTree(t, oldDir, oldM.nodes())
			writeTree(t, newDir, newM.nodes())
			oldDigest := treeDigest(t, oldDir)

			// Odd seeds: version 1 (per-file payloads), so that every
			// kind is exercised; even seeds: the solid form where it wins.
			opts := &delta.BundleOptions{}
			if seed%2 == 1 {
				opts = &delta.BundleOptions{Workers: 1, Candidates: 1, NoSolid: true}
			}
			if big { // the per-file path for a big file; a solid pass over 3 MB costs CPU
				opts.NoSolid = true
			}
			b, st := makeBundle(t, oldDir, newDir, opts)
			out, info, err := applyBundle(t, oldDir, b, nil)
			if err != nil {
				t.Fatalf("ApplyBundle: %v", err)
			}
			diffTrees(t, out, newDir)
			if treeDigest(t, oldDir) != oldDigest {
				t.Fatal("the OLD tree changed")
			}
			if info.NewDigest != st.NewDigest || info.BundleCounts != st.BundleCounts {
				t.Errorf("BundleInfo %+v, stats %+v", info, st)
			}
			ix := readIndex(t, b)
			if len(ix.Entries) != len(st.Entries) || strings.Join(ix.Removed, "\n") != strings.Join(st.RemovedPaths, "\n") {
				t.Fatalf("index: %d entries, %d removed; stats: %d, %d", len(ix.Entries), len(ix.Removed), len(st.Entries), len(st.RemovedPaths))
			}
			for i, e := range ix.Entries {
				s := st.Entries[i]
				if e.Kind != s.Kind || e.Path != s.Path || e.Source != s.Source || e.Target != s.Target || e.PayloadSize != s.PayloadSize {
					t.Errorf("entry %d: index %+v, stats %+v", i, e, s)
				}
				if e.Kind == delta.EntryPatch && e.Source != e.Path {
					renamedPatches++
				}
			}
			if big && st.Patched+st.Solid == 0 {
				t.Error("the big file was not patched")
			}
			c := st.BundleCounts
			total.Dirs += c.Dirs
			total.Symlinks += c.Symlinks
			total.Unchanged += c.Unchanged
			total.Copied += c.Copied
			total.Patched += c.Patched
			total.New += c.New
			total.Solid += c.Solid
			total.Removed += c.Removed
			t.Logf("%d entries %+v: bundle %d bytes, payloads %d, new tree %d bytes", len(st.Entries), c, st.BundleSize, st.PayloadSize, st.NewSize)
		})
	}
	// The generator exercises every kind.
	if total.Dirs == 0 || total.Symlinks == 0 || total.Unchanged == 0 || total.Copied == 0 || total.Patched == 0 || total.New == 0 || total.Solid == 0 || total.Removed == 0 || renamedPatches == 0 {
		t.Errorf("random trees did not exercise every kind: %+v, %d patches from another path", total, renamedPatches)
	}
}

// TestBundleIdentical: a tree against itself is all unchanged entries and
// no payload.
func TestBundleIdentical(t *testing.T) {
	oldDir, _ := goldenTrees(t)
	b, st := makeBundle(t, oldDir, oldDir, nil)
	if st.PayloadSize != 0 || st.Patched+st.New+st.Copied+st.Removed != 0 {
		t.Errorf("stats %+v", st)
	}
	out, _, err := applyBundle(t, oldDir, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	diffTrees(t, out, oldDir)

	// And from and to an empty tree.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	b, st = makeBundle(t, empty, oldDir, nil)
	if st.New+st.Solid != st.Files() {
		t.Errorf("from an empty tree: %+v", st.BundleCounts)
	}
	out, _, err = applyBundle(t, empty, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	diffTrees(t, out, oldDir)
	b, st = makeBundle(t, oldDir, empty, nil)
	if len(st.Entries) != 0 || st.Removed != len(goldenOldTree) {
		t.Errorf("to an empty tree: %+v", st.BundleCounts)
	}
	out, _, err = applyBundle(t, oldDir, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	diffTrees(t, out, empty)
}

// TestBundleFiles: DiffBundleFile and ApplyBundleFile, a symlinked OLD root,
// and the errors that are the caller's: an existing output, non-directories,
// a canceled context.
func TestBundleFiles(t *testing.T) {
	ctx := context.Background()
	oldDir, newDir := goldenTrees(t)
	dir := t.TempDir()
	bundlePath := filepath.Join(dir, "b.dupb")
	st, err := delta.DiffBundleFile(ctx, oldDir, newDir, bundlePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bundlePath); err != nil || fi.Size() != st.BundleSize {
		t.Fatalf("bundle file: %v %v", fi, err)
	}
	link := filepath.Join(dir, "old-link")
	if err := os.Symlink(oldDir, link); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if _, err := delta.ApplyBundleFile(ctx, link, bundlePath, out, nil); err != nil {
		t.Fatalf("through a symlinked OLD root: %v", err)
	}
	diffTrees(t, out, newDir)
	if names := dirEntries(t, dir); strings.Join(names, " ") != "b.dupb old-link out" {
		t.Errorf("left in %s: %q", dir, names)
	}

	// The output exists: refused, and left as it was.
	keep := filepath.Join(dir, "keep")
	if err := os.Mkdir(keep, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(keep, "mine"), []byte("mine"), 0o644)
	_, err = delta.ApplyBundleFile(ctx, oldDir, bundlePath, keep, nil)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("existing output: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(keep, "mine")); err != nil || string(b) != "mine" {
		t.Errorf("existing output was touched: %q %v", b, err)
	}

	// Not directories.
	file := filepath.Join(oldDir, "README.md")
	if _, err := delta.DiffBundle(ctx, file, newDir, &bytes.Buffer{}, nil); err == nil {
		t.Error("DiffBundle with a file as OLD succeeded")
	}
	if _, err := delta.ApplyBundleFile(ctx, file, bundlePath, filepath.Join(dir, "out2"), nil); err == nil {
		t.Error("ApplyBundle with a file as OLD succeeded")
	}
	if _, err := os.Lstat(filepath.Join(dir, "out2")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("out2 left behind: %v", err)
	}
	if _, err := delta.DiffBundleFile(ctx, oldDir, filepath.Join(dir, "missing"), filepath.Join(dir, "x.dupb"), nil); err == nil {
		t.Error("DiffBundleFile with a missing NEW succeeded")
	}
	if names := dirEntries(t, dir); strings.Join(names, " ") != "b.dupb keep old-link out" {
		t.Errorf("left in %s: %q", dir, names)
	}

	// Canceled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := delta.DiffBundle(cctx, oldDir, newDir, &bytes.Buffer{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("DiffBundle canceled: %v", err)
	}
	if _, err := delta.ApplyBundleFile(cctx, oldDir, bundlePath, filepath.Join(dir, "out3"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("ApplyBundle canceled: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "out3")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("out3 left behind: %v", err)
	}

	// Bad options.
	if _, err := delta.DiffBundle(ctx, oldDir, newDir, &bytes.Buffer{}, &delta.BundleOptions{Workers: -1}); err == nil {
		t.Error("Workers -1 accepted")
	}
	if _, err := delta.ApplyBundleFile(ctx, oldDir, bundlePath, filepath.Join(dir, "out4"), &delta.BundleApplyOptions{MaxEntries: -1}); err == nil {
		t.Error("MaxEntries -1 accepted")
	}
}

// TestBundleOldTreeUnsafe: an OLD tree the scanner refuses is an OLD
// mismatch (the caller falls back to a full download).
func TestBundleOldTreeUnsafe(t *testing.T) {
	oldDir, newDir := goldenTrees(t)
	b, _ := makeBundle(t, oldDir, newDir, &delta.BundleOptions{Methods: zstdOnly})
	if err := os.Symlink("../../outside", filepath.Join(oldDir, "lib", "escape")); err != nil {
		t.Fatal(err)
	}
	_, _, err := applyBundle(t, oldDir, b, nil)
	wantClass(t, "escaping link in OLD", err, "oldmismatch")
	if !errors.Is(err, tree.ErrLinkEscape) {
		t.Errorf("error %v does not wrap tree.ErrLinkEscape", err)
	}
}
