package delta_test

// Hostile bundles: each must fail with the right error class (and, for bad
// paths and links, the tree package's error too), never panic, and leave no
// output directory. Most are encoded by hand (rawBundle) with valid
// checksums, so that the check each one is about is the one that fires.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
)

// hostileTrees writes the OLD and NEW trees of the hand-made bundle and
// returns it, valid.
func hostileTrees(t *testing.T) (oldDir, newDir string, valid rawBundle, pay map[string][]byte) {
	t.Helper()
	aData := []byte(goldenText("alpha", 10))
	bOld := []byte(goldenText("beta", 40))
	bNew := bytes.Replace(bOld, []byte("line 20"), []byte("line twenty"), 1)
	nData := []byte(goldenText("new file", 5))
	dir := t.TempDir()
	oldDir, newDir = filepath.Join(dir, "old"), filepath.Join(dir, "new")
	writeTree(t, oldDir, []tnode{
		tfile("a.txt", 0o644, aData), tdir("d", 0o755), tfile("d/b.txt", 0o644, bOld), tstr("gone.txt", 0o644, "gone"),
	})
	writeTree(t, newDir, []tnode{
		tfile("a.txt", 0o644, aData), tdir("d", 0o755), tfile("d/b.txt", 0o644, bNew), tfile("d/c.txt", 0o755, aData),
		tdir("e", 0o755), tfile("e/empty", 0o644, nil), tfile("e/n.txt", 0o644, nData), tlink("l", "d/b.txt"),
	})
	diff := func(old, newb []byte) []byte {
		var buf bytes.Buffer
		if _, err := delta.Diff(context.Background(), old, newb, &buf, &delta.DiffOptions{Methods: zstdOnly}); err != nil {
			t.Fatal(err)
		}
		return compactPayload(buf.Bytes())
	}
	pay = map[string][]byte{
		"b":        diff(bOld, bNew),
		"n":        diff(nil, nData),
		"b-from-a": diff(aData, bNew),
		"n-from-a": diff(aData, nData),
		"empty":    diff(nil, nil),
	}
	valid = rawBundle{
		count:     -1,
		newSize:   uint64(len(aData)*2 + len(bNew) + len(nData)),
		oldDigest: treeDigest(t, oldDir),
		newDigest: treeDigest(t, newDir),
		entries: []rawEntry{
			rSame("a.txt"),
			rDir("d", 0o755),
			rPatch("d/b.txt", 0o644, "", pay["b"]),
			rCopy("d/c.txt", 0o755, "a.txt"),
			rDir("e", 0o755),
			rNew("e/empty", 0o644, nil),
			rNew("e/n.txt", 0o644, pay["n"]),
			rLink("l", "d/b.txt"),
		},
		removed: []string{"gone.txt"},
	}
	return oldDir, newDir, valid, pay
}

// replaceEntry returns es with the entry at path p replaced by (or, when
// nothing is at p, es with) the given entries, in place.
func withEntries(es []rawEntry, at int, del int, add ...rawEntry) []rawEntry {
	return slices.Concat(es[:at], add, es[at+del:])
}

func TestBundleHostile(t *testing.T) {
	oldDir, newDir, valid, pay := hostileTrees(t)
	oldDigest := treeDigest(t, oldDir)

	// The hand-made bundle is valid: the cases below each break one thing.
	out, _, err := applyBundle(t, oldDir, valid.bytes(), nil)
	if err != nil {
		t.Fatalf("the valid hand-made bundle fails: %v", err)
	}
	diffTrees(t, out, newDir)

	fakeHeader := func(newSize, bodyLen int) []byte {
		h := headerFor(delta.MethodZstd, nil, make([]byte, newSize), bodyLen).bytes()
		return compactPayload(append(h, make([]byte, bodyLen)...))
	}
	flip := func(b []byte, at int) []byte { c := bytes.Clone(b); c[at] ^= 0x55; return c }
	es := valid.entries
	type tcase struct {
		name  string
		edit  func(rb *rawBundle)
		opts  *delta.BundleApplyOptions
		raw   func(b []byte) []byte // applied to the encoded bundle
		want  string                // error classes, as wantClass takes them
		treeE error                 // a tree error the error must also wrap
	}
	cases := []tcase{
		// Header.
		{name: "bad magic", edit: func(rb *rawBundle) { rb.magic = "DUPX" }, want: "format"},
		{name: "single-file patch magic", edit: func(rb *rawBundle) { rb.magic = "DUPT" }, want: "format"},
		{name: "version 4", edit: func(rb *rawBundle) { rb.version = 4 }, want: "format"},
		{name: "header checksum", edit: func(rb *rawBundle) { rb.crcXor = 1 }, want: "corrupt"},
		{name: "reserved byte", edit: func(rb *rawBundle) { rb.reserved = 1 }, want: "corrupt"},
		{name: "empty", raw: func([]byte) []byte { return nil }, want: "corrupt"},
		{name: "header only half", raw: func(b []byte) []byte { return b[:40] }, want: "corrupt"},
		{name: "entry count over cap", opts: &delta.BundleApplyOptions{MaxEntries: 4}, want: "toolarge"},
		{name: "entry count 2^32-1", edit: func(rb *rawBundle) { rb.count = 1<<32 - 1 }, want: "toolarge"},
		{name: "entry count one more", edit: func(rb *rawBundle) { rb.count = int64(len(es) + 1) }, want: "corrupt"},
		{name: "entry count one less", edit: func(rb *rawBundle) { rb.count = int64(len(es) - 1) }, want: "corrupt"},
		{name: "total size over cap", edit: func(rb *rawBundle) { rb.newSize = 1 << 40 }, want: "toolarge"},
		{name: "total size over option", opts: &delta.BundleApplyOptions{MaxTotalSize: 100}, want: "toolarge"},
		{name: "total size wrong", edit: func(rb *rawBundle) { rb.newSize++ }, want: "corrupt"},
		{name: "total size short", edit: func(rb *rawBundle) { rb.newSize-- }, want: "corrupt"},
		{name: "new digest wrong", edit: func(rb *rawBundle) { rb.newDigest[3] ^= 1 }, want: "corrupt"},
		{name: "wrong old digest", edit: func(rb *rawBundle) { rb.oldDigest[0] ^= 1 }, want: "oldmismatch"},

		// Paths.
		{name: "path ../x", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 0, rNew("../x", 0o644, nil)) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "path /abs", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 0, rNew("/abs", 0o644, nil)) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "path d/../a", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 2, 0, rNew("d/../a", 0o644, nil)) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "path d//x", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 2, 0, rNew("d//x", 0o644, nil)) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "path C:x", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 0, rNew("C:x", 0o644, nil)) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "path backslash", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 0, rNew(`a\..\..\x`, 0o644, nil)) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "path con.txt", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 5, 0, rNew("con.txt", 0o644, nil)) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "path with NUL", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 0, rNew("\x00x", 0o644, nil)) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "path over 1024 bytes", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 0, 0, rNew("A"+strings.Repeat("x", 1100), 0o644, nil))
		}, want: "corrupt"},
		{name: "prefix longer than previous path", raw: func(b []byte) []byte {
			// The second entry ("d", after "a.txt") claims 9 shared bytes.
			i := bytes.Index(b, []byte{1, 0, 1, 'd'})
			c := bytes.Clone(b)
			c[i+1] = 9
			return fixTrailer(c)
		}, want: "corrupt"},
		{name: "duplicate path", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 3, 0, rNew("d/b.txt", 0o644, nil)) }, want: "corrupt"},
		{name: "out of order", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 2, es[1], es[0]) }, want: "corrupt"},
		{name: "missing parent", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 7, 0, rNew("f/x", 0o644, nil)) }, want: "corrupt"},
		{name: "file as parent", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 1, 0, rNew("a.txt/x", 0o644, nil)) }, want: "corrupt"},
		{name: "symlink as parent", edit: func(rb *rawBundle) {
			rb.entries = slices.Concat(es, []rawEntry{rLink("z", "d"), rNew("z/x", 0o644, nil)})
		}, want: "corrupt"},

		// Symlinks.
		{name: "link ../outside", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 7, 1, rLink("l", "../outside")) }, want: "corrupt", treeE: tree.ErrLinkEscape},
		{name: "link /etc/passwd", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 7, 1, rLink("l", "/etc/passwd")) }, want: "corrupt", treeE: tree.ErrLinkEscape},
		{name: "link d/../..", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 7, 1, rLink("l", "d/../..")) }, want: "corrupt", treeE: tree.ErrLinkEscape},
		{name: "link deep escape", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 4, 0, rLink("d/l", "../../x")) }, want: "corrupt", treeE: tree.ErrLinkEscape},
		{name: "link empty target", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 7, 1, rLink("l", "")) }, want: "corrupt", treeE: tree.ErrLinkEscape},
		{name: "link chain escape", edit: func(rb *rawBundle) {
			// Each passes the lexical check; x resolves to the root's parent.
			rb.entries = slices.Concat(withEntries(es, 4, 0, rDir("d/e", 0o755), rLink("d/e/up", "..")), []rawEntry{rLink("x", "d/e/up/../..")})
		}, want: "corrupt", treeE: tree.ErrLinkEscape},
		{name: "link loop", edit: func(rb *rawBundle) {
			rb.entries = slices.Concat(es, []rawEntry{rLink("m", "n"), rLink("n", "m")})
		}, want: "corrupt", treeE: tree.ErrLinkEscape},
		{name: "case collision", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 0, rNew("A.txt", 0o644, nil)) }, want: "corrupt", treeE: tree.ErrCollision},
		{name: "normalization collision", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 5, 0, rNew("e/cafe\u0301", 0o644, nil), rNew("e/caf\u00e9", 0o644, nil))
		}, want: "corrupt", treeE: tree.ErrCollision},
		{name: "link control char", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 7, 1, rLink("l", "d/\nb")) }, want: "corrupt"},

		// Entry fields.
		{name: "kind 0", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 1, rawEntry{0, "a.txt", nil}) }, want: "corrupt"},
		{name: "kind 7", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 1, rawEntry{7, "a.txt", nil}) }, want: "corrupt"},
		{name: "mode over 0777", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 1, 1, rDir("d", 0o1755)) }, want: "corrupt"},
		{name: "non-minimal varint", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 1, 1, rawEntry{1, "d", []byte{0xed, 0x83, 0x00}}) }, want: "corrupt"},
		{name: "varint overflow", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 1, 1, rawEntry{1, "d", bytes.Repeat([]byte{0xff}, 11)})
		}, want: "corrupt"},
		{name: "unchanged from a directory", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 1, 1, rSame("d")) }, want: "corrupt"},
		{name: "unchanged not in old", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 0, 0, rSame("X.txt")) }, want: "corrupt"},
		{name: "copy from missing", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 3, 1, rCopy("d/c.txt", 0o755, "nope.txt")) }, want: "corrupt"},
		{name: "copy from ../a.txt", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 3, 1, rCopy("d/c.txt", 0o755, "../a.txt")) }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "copy from dir", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 3, 1, rCopy("d/c.txt", 0o755, "d")) }, want: "corrupt"},
		{name: "source spelled out", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 2, 1, rPatch("d/b.txt", 0o644, "d/b.txt", pay["b"]))
		}, want: "corrupt"},

		// Payloads.
		{name: "payload length 2^40", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 6, 1, rawEntry{6, "e/n.txt", cat(uv(0o644), uv(1<<40))})
		}, want: "toolarge"},
		{name: "payload over its file's cap", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, fakeHeader(10, 70000))) }, want: "toolarge"},
		{name: "file over cap", opts: &delta.BundleApplyOptions{MaxFileSize: 100}, want: "toolarge"},
		{name: "payload one byte long", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, append(bytes.Clone(pay["n"]), 0)))
		}, want: "corrupt"},
		{name: "payload one byte short", edit: func(rb *rawBundle) {
			p := pay["n"]
			rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, p[:len(p)-1]))
		}, want: "corrupt"},
		{name: "payload shorter than a header", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, pay["n"][:20])) }, want: "corrupt"},
		{name: "payload not a native patch", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, append([]byte("BSDIFF40"), make([]byte, 120)...)))
		}, want: "format"},
		{name: "payload body flipped", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, flip(pay["n"], len(pay["n"])-3)))
		}, want: "corrupt|hashmismatch"},
		{name: "payload hash flipped", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, flip(pay["n"], 10))) }, want: "hashmismatch"},
		{name: "payload method unknown", edit: func(rb *rawBundle) {
			p := bytes.Clone(pay["n"])
			p[0] = 10
			rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, p))
		}, want: "format"},
		{name: "patch made for another old file", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 2, 1, rPatch("d/b.txt", 0o644, "", pay["b-from-a"]))
		}, want: "hashmismatch|corrupt"},
		{name: "new file patched from a non-empty file", edit: func(rb *rawBundle) {
			rb.entries = withEntries(es, 6, 1, rNew("e/n.txt", 0o644, pay["n-from-a"]))
		}, want: "corrupt"},
		{name: "patch without payload", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 2, 1, rPatch("d/b.txt", 0o644, "", nil)) }, want: "corrupt"},
		{name: "payload for an empty file", edit: func(rb *rawBundle) { rb.entries = withEntries(es, 5, 1, rNew("e/empty", 0o644, pay["empty"])) }, want: "corrupt"},

		// Removals, trailer, end.
		{name: "removal missing", edit: func(rb *rawBundle) { rb.removed = nil }, want: "corrupt"},
		{name: "removal extra", edit: func(rb *rawBundle) { rb.removed = []string{"gone.txt", "zzz"} }, want: "corrupt"},
		{name: "removal of a kept path", edit: func(rb *rawBundle) { rb.removed = []string{"a.txt", "gone.txt"} }, want: "corrupt"},
		{name: "removal ../x", edit: func(rb *rawBundle) { rb.removed = []string{"../x"} }, want: "corrupt", treeE: tree.ErrUnsafePath},
		{name: "removal duplicate", edit: func(rb *rawBundle) { rb.removed = []string{"gone.txt", "gone.txt"} }, want: "corrupt"},
		{name: "removals over cap", edit: func(rb *rawBundle) {
			for i := range 20 {
				rb.removed = append(rb.removed, fmt.Sprintf("r%02d", i))
			}
		}, opts: &delta.BundleApplyOptions{MaxEntries: 10}, want: "toolarge"},
		{name: "trailer flipped", edit: func(rb *rawBundle) { rb.trailerXor = 1 }, want: "corrupt"},
		{name: "trailer missing", raw: func(b []byte) []byte { return b[:len(b)-32] }, want: "corrupt"},
		{name: "trailing byte", raw: func(b []byte) []byte { return append(b, 'x') }, want: "corrupt"},
		{name: "trailing zero", raw: func(b []byte) []byte { return append(b, 0) }, want: "corrupt"},
		{name: "second bundle appended", raw: func(b []byte) []byte { return append(b, b...) }, want: "corrupt"},
	}
	// A NEW tree larger than the free space of the output's file system is
	// refused before the output directory is made.
	if free, ok := delta.FreeSpace(t.TempDir()); ok {
		overFree := int64(min(2*free+1<<30, 1<<60))
		cases = append(cases, tcase{name: "total size over free space", edit: func(rb *rawBundle) { rb.newSize = uint64(overFree) },
			opts: &delta.BundleApplyOptions{MaxTotalSize: overFree}, want: "nospace"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rb := valid
			rb.entries = slices.Clone(valid.entries)
			if tc.edit != nil {
				tc.edit(&rb)
			}
			b := rb.bytes()
			if tc.raw != nil {
				b = tc.raw(b)
			}
			_, _, err := applyBundle(t, oldDir, b, tc.opts)
			wantClass(t, tc.name, err, tc.want)
			if tc.treeE != nil && !errors.Is(err, tc.treeE) {
				t.Errorf("%s: %v does not wrap %v", tc.name, err, tc.treeE)
			}
			t.Logf("%v", err)
		})
	}

	// The wrong OLD tree: a changed file, an extra file, a missing one.
	for _, tc := range []struct {
		name  string
		nodes []tnode
	}{
		{"changed file", []tnode{tstr("a.txt", 0o644, "changed"), tdir("d", 0o755), tstr("d/b.txt", 0o644, "b"), tstr("gone.txt", 0o644, "gone")}},
		{"the new tree", nil},
	} {
		t.Run("old tree "+tc.name, func(t *testing.T) {
			dir := newDir
			if tc.nodes != nil {
				dir = filepath.Join(t.TempDir(), "old")
				writeTree(t, dir, tc.nodes)
			}
			_, _, err := applyBundle(t, dir, valid.bytes(), nil)
			wantClass(t, tc.name, err, "oldmismatch")
		})
	}

	if treeDigest(t, oldDir) != oldDigest {
		t.Fatal("the OLD tree changed")
	}
}

// fixTrailer recomputes the trailer of an edited bundle.
func fixTrailer(b []byte) []byte {
	body := b[:len(b)-32]
	return append(bytes.Clone(body), sha256Of(body)...)
}

// TestBundleTruncatedAndFlipped damages the golden bundle: truncated at
// many points, and with a byte flipped at many offsets. Every one must
// fail with exactly one error class and leave no output.
func TestBundleTruncatedAndFlipped(t *testing.T) {
	oldDir, newDir := goldenTrees(t)
	b, _ := makeBundle(t, oldDir, newDir, &delta.BundleOptions{Methods: zstdOnly})
	step := 1
	if testing.Short() {
		step = 7
	}
	for n := 0; n < len(b); n += step {
		if n > 120 && step == 1 {
			n += 4 // every byte of the header and first entries, then every fifth
		}
		_, _, err := applyBundle(t, oldDir, b[:n], nil)
		wantClass(t, fmt.Sprintf("truncated to %d of %d bytes", n, len(b)), err, "corrupt")
	}
	classes := map[string]int{}
	for at := 0; at < len(b); at += 2 * step {
		_, _, err := applyBundle(t, oldDir, flipAt(b, at), nil)
		c := className(err)
		classes[c]++
		if c == "ok" || c == "unclassified" || c == "multiple" {
			t.Errorf("byte %d flipped: %s (%v)", at, c, err)
		}
	}
	t.Logf("flipped bytes fail as: %v", classes)
}

func flipAt(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0xff
	return c
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
