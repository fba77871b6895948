package fallback_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
)

var formats = []fallback.Format{fallback.TarZst, fallback.TarGz}

// longSplit is longer than 100 bytes but splits into a USTAR prefix and
// name; longPAX has a 120-byte element, so it needs a PAX path record.
var (
	longSplit = "deep/" + strings.Repeat("nested-directory/", 6) + "a-file-name-that-makes-the-path-long.txt"
	longPAX   = "deep/" + strings.Repeat("x", 120) + ".bin"
	longLink  = "deep/" + strings.Repeat("../deep/", 14) + "nested-directory/x"
)

// roundTripTree is the fixture of the round-trip and interop tests.
func roundTripTree() []fent {
	return []fent{
		dir("bin", 0o755),
		file("bin/app", 0o755, "#!/bin/sh\necho app\n"),
		file("bin/helper", 0o750, "\x7fELF fake helper"),
		link("bin/app-latest", "app"),
		dir("lib", 0o755),
		file("lib/libx.so.1", 0o644, strings.Repeat("library code ", 1000)),
		link("lib/libx.so", "libx.so.1"),
		link("bin/libx", "../lib/libx.so"),
		link("dirlink", "lib"),
		dir("empty", 0o700),
		dir("share/empty-too", 0o755),
		file("share/empty.txt", 0o644, ""),
		file("share/readonly.txt", 0o444, "read only\n"),
		file(longSplit, 0o644, "split USTAR name\n"),
		file(longPAX, 0o600, "PAX name\n"),
		link("deep/long-link", longLink[len("deep/"):]),
		file("données/résumé ☃.txt", 0o644, "unicode name\n"),
		file("日本語/ファイル.txt", 0o644, "もう一つ\n"),
		{path: "big.bin", mode: 0o644, data: pseudoRandom(1, 5<<20)},
	}
}

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, roundTripTree())
	want, wantDigest := scan(t, src)
	for _, format := range formats {
		t.Run(format.String(), func(t *testing.T) {
			start := time.Now()
			arc, st := writeArchive(t, src, format, nil)
			t.Logf("%v: %d entries, %d content bytes, tar %d, archive %d bytes, %v",
				format, len(st.Entries), st.ContentBytes, st.TarBytes, st.ArchiveBytes, time.Since(start))
			if st.ArchiveBytes != int64(len(arc)) {
				t.Errorf("Stats.ArchiveBytes = %d, wrote %d", st.ArchiveBytes, len(arc))
			}
			if tree.Digest(st.Entries) != wantDigest {
				t.Errorf("Stats.Entries differ from the scanned tree")
			}
			if st.Files+st.Dirs+st.Symlinks != len(want) {
				t.Errorf("Stats counts %d+%d+%d, tree has %d entries", st.Files, st.Dirs, st.Symlinks, len(want))
			}
			for _, sync := range []bool{false, true} {
				dest := filepath.Join(t.TempDir(), "out")
				got, err := fallback.Extract(context.Background(), bytes.NewReader(arc), format, dest, &fallback.ExtractOptions{Sync: sync})
				if err != nil {
					t.Fatalf("Extract: %v", err)
				}
				if tree.Digest(got) != wantDigest {
					t.Errorf("Extract returned entries differing from the source tree:\n got %v\nwant %v", got, want)
				}
				if _, d := scan(t, dest); d != wantDigest {
					t.Errorf("extracted tree differs from the source tree")
				}
				// Spot checks that do not go through tree.Digest.
				if fi, err := os.Stat(filepath.Join(dest, "bin/app")); err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("bin/app: %v, %v; want mode 0755", fi, err)
				}
				if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("dest: %v, %v; want mode 0755", fi, err)
				}
				if tg, err := os.Readlink(filepath.Join(dest, "lib/libx.so")); err != nil || tg != "libx.so.1" {
					t.Errorf("lib/libx.so -> %q, %v", tg, err)
				}
				if fi, err := os.Lstat(filepath.Join(dest, "empty")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
					t.Errorf("empty dir: %v, %v", fi, err)
				}
			}
			// Expected: the same list verifies; the archive's own entries too.
			dest := filepath.Join(t.TempDir(), "out")
			if _, err := fallback.Extract(context.Background(), bytes.NewReader(arc), format, dest, &fallback.ExtractOptions{Expected: want}); err != nil {
				t.Errorf("Extract with Expected = the tree: %v", err)
			}
		})
	}
}

// TestDeterminism: the same tree gives the same bytes across runs, across
// copies made in another order with other timestamps, and across
// GOMAXPROCS.
func TestDeterminism(t *testing.T) {
	ents := roundTripTree()
	ents[len(ents)-1].data = ents[len(ents)-1].data[:300<<10] // keep it quick
	a, b := t.TempDir(), t.TempDir()
	makeTree(t, a, ents)
	rev := make([]fent, 0, len(ents))
	for i := len(ents) - 1; i >= 0; i-- {
		rev = append(rev, ents[i])
	}
	makeTree(t, b, rev)
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	for _, format := range formats {
		t.Run(format.String(), func(t *testing.T) {
			x1, _ := writeArchive(t, a, format, nil)
			x2, _ := writeArchive(t, a, format, nil)
			x3, _ := writeArchive(t, b, format, nil)
			prev := runtime.GOMAXPROCS(1)
			x4, _ := writeArchive(t, b, format, nil)
			runtime.GOMAXPROCS(prev)
			for i, x := range [][]byte{x2, x3, x4} {
				if !bytes.Equal(x1, x) {
					t.Errorf("archive %d differs from the first (%d vs %d bytes)", i+2, len(x), len(x1))
				}
			}
			x5, _ := writeArchive(t, a, format, &fallback.WriteOptions{ModTime: time.Unix(1700000000, 999)})
			x6, _ := writeArchive(t, a, format, &fallback.WriteOptions{ModTime: time.Unix(1700000000, 0)})
			if !bytes.Equal(x5, x6) || bytes.Equal(x1, x5) {
				t.Errorf("ModTime: sub-second part not ignored, or ModTime not recorded")
			}
		})
	}
}

// goldenTree is a tiny tree whose archives' SHA-256 are committed, so any
// change to the archive bytes (code, Go's archive/tar, klauspost/compress)
// shows up. Regenerate with: go test ./fallback -run TestGolden -update
func goldenTree() []fent {
	return []fent{
		dir("bin", 0o755),
		file("bin/app", 0o755, "#!/bin/sh\necho hello\n"),
		link("bin/run", "app"),
		dir("empty", 0o755),
		file("readme.txt", 0o644, "deltaup golden fixture\n"),
		file("ünïcödé.txt", 0o600, strings.Repeat("zstd ", 200)),
	}
}

const goldenDir = "../testdata/fallback/golden"

func TestGolden(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, goldenTree())
	_, wantDigest := scan(t, src)
	var lines []string
	for _, format := range formats {
		arc, _ := writeArchive(t, src, format, nil)
		sum := sha256.Sum256(arc)
		lines = append(lines, fmt.Sprintf("%x  tiny%s", sum, format.Ext()))
		if *update {
			if err := os.WriteFile(filepath.Join(goldenDir, "tiny"+format.Ext()), arc, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The framed tar.zst of the fixture plus two files that take frames
	// of their own (pinned by hash only).
	framedSrc := t.TempDir()
	makeTree(t, framedSrc, append(goldenTree(),
		file("big/a.bin", 0o644, string(pseudoRandom(7, 40<<10))),
		file("big/b.bin", 0o644, string(pseudoRandom(8, 70<<10)))))
	framed, fst := writeArchive(t, framedSrc, fallback.TarZst, &fallback.WriteOptions{Framed: true})
	if len(fst.Frames) != 4 {
		t.Errorf("framed fixture: %d frames, want 4", len(fst.Frames))
	}
	lines = append(lines, fmt.Sprintf("%x  tiny-framed.tar.zst", sha256.Sum256(framed)))
	sumsFile := filepath.Join(goldenDir, "tiny.sha256")
	if *update {
		if err := os.WriteFile(sumsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(sumsFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := strings.Join(lines, "\n") + "\n"; got != string(want) {
		t.Errorf("archive hashes changed (an archive format change: regenerate with -update only if intended)\n got:\n%s\nwant:\n%s", got, want)
	}
	// The committed archives still extract to the fixture.
	for _, format := range formats {
		arc, err := os.ReadFile(filepath.Join(goldenDir, "tiny"+format.Ext()))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(arc); !strings.Contains(string(want), hex.EncodeToString(sum[:])) {
			t.Errorf("committed tiny%s does not match tiny.sha256", format.Ext())
		}
		got, err := fallback.Extract(context.Background(), bytes.NewReader(arc), format, filepath.Join(t.TempDir(), "x"), nil)
		if err != nil || tree.Digest(got) != wantDigest {
			t.Errorf("committed tiny%s: %v, digest match %v", format.Ext(), err, err == nil && tree.Digest(got) == wantDigest)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want fallback.Format
	}{
		{"tar.zst", fallback.TarZst}, {".tar.zst", fallback.TarZst}, {"TZST", fallback.TarZst}, {"zstd", fallback.TarZst},
		{"tar.gz", fallback.TarGz}, {".TAR.GZ", fallback.TarGz}, {"tgz", fallback.TarGz}, {"gzip", fallback.TarGz},
		{"zip", 0}, {"", 0}, {"tar", 0},
	} {
		got, err := fallback.ParseFormat(tc.in)
		if got != tc.want || (err == nil) != (tc.want != 0) {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		want fallback.Format
		ok   bool
	}{
		{"app-1.2.tar.zst", fallback.TarZst, true}, {"APP.TZST", fallback.TarZst, true},
		{"app.tar.gz", fallback.TarGz, true}, {"app.tgz", fallback.TarGz, true},
		{"app.zip", 0, false}, {"app.zst", 0, false},
	} {
		if got, ok := fallback.FormatFromName(tc.name); got != tc.want || ok != tc.ok {
			t.Errorf("FormatFromName(%q) = %v, %v", tc.name, got, ok)
		}
	}
	if fallback.TarZst.Ext() != ".tar.zst" || fallback.TarGz.Ext() != ".tar.gz" || fallback.Format(9).Ext() != "" {
		t.Errorf("Ext: %q %q", fallback.TarZst.Ext(), fallback.TarGz.Ext())
	}
	if _, err := fallback.Write(context.Background(), io.Discard, t.TempDir(), fallback.Format(0), nil); err == nil {
		t.Errorf("Write with format 0 succeeded")
	}
	dest := filepath.Join(t.TempDir(), "x")
	if _, err := fallback.Extract(context.Background(), strings.NewReader(""), fallback.Format(7), dest, nil); err == nil {
		t.Errorf("Extract with format 7 succeeded")
	}
	mustNotExist(t, dest)
}

// TestWriteRefuses: trees Extract would refuse are refused when writing.
func TestWriteRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		ents []fent
		opts *fallback.WriteOptions
		want error
	}{
		{"case collision", []fent{file("README", 0o644, "a"), file("readme", 0o644, "b")}, nil, fallback.ErrDuplicate},
		{"NFC/NFD collision", []fent{file("caf\u00e9", 0o644, "a"), file("cafe\u0301", 0o644, "b")}, nil, fallback.ErrDuplicate},
		{"link chain escape", []fent{dir("d/e", 0o755), link("d/e/up", ".."), link("x", "d/e/up/../..")}, nil, fallback.ErrLinkEscape},
		{"link loop", []fent{link("a", "b"), link("b", "a")}, nil, fallback.ErrLinkEscape},
		{"escaping link (tree.Scan)", []fent{link("l", "../x")}, nil, tree.ErrLinkEscape},
		{"Windows name (tree.Scan)", []fent{file("aux.txt", 0o644, "")}, nil, tree.ErrUnsafePath},
		{"ModTime before 1970", []fent{file("a", 0o644, "")}, &fallback.WriteOptions{ModTime: time.Unix(-1, 0)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			makeTree(t, root, tc.ents)
			_, err := fallback.Write(context.Background(), io.Discard, root, fallback.TarGz, tc.opts)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("Write = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestExtractDest: dest must not exist (and is then left alone); its
// parent must exist.
func TestExtractDest(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, goldenTree())
	arc, _ := writeArchive(t, src, fallback.TarZst, nil)
	dest := t.TempDir() // exists
	os.WriteFile(filepath.Join(dest, "keep"), []byte("x"), 0o644)
	_, err := fallback.Extract(context.Background(), bytes.NewReader(arc), fallback.TarZst, dest, nil)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("Extract into an existing dir = %v, want fs.ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "keep")); err != nil {
		t.Errorf("existing dest was touched: %v", err)
	}
	nested := filepath.Join(t.TempDir(), "no", "such")
	if _, err := fallback.Extract(context.Background(), bytes.NewReader(arc), fallback.TarZst, nested, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Extract with a missing parent = %v, want fs.ErrNotExist", err)
	}
}

// errReader fails after n bytes.
type errReader struct {
	r io.Reader
	n int
}

var errNetwork = errors.New("network down")

func (e *errReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errNetwork
	}
	p = p[:min(len(p), e.n)]
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

// TestExtractErrors: source and context errors come back as they are,
// without an error class, and dest is removed.
func TestExtractErrors(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, roundTripTree()[:12])
	for _, format := range formats {
		arc, _ := writeArchive(t, src, format, nil)
		t.Run(format.String(), func(t *testing.T) {
			for _, n := range []int{0, 5, len(arc) / 2, len(arc) - 1} {
				dest := filepath.Join(t.TempDir(), "x")
				_, err := fallback.Extract(context.Background(), &errReader{bytes.NewReader(arc), n}, format, dest, nil)
				if !errors.Is(err, errNetwork) || errClass(err) != "other" {
					t.Errorf("source failing after %d bytes: %v (class %s)", n, err, errClass(err))
				}
				mustNotExist(t, dest)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			dest := filepath.Join(t.TempDir(), "x")
			if _, err := fallback.Extract(ctx, bytes.NewReader(arc), format, dest, nil); !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled: %v", err)
			}
			mustNotExist(t, dest)
			ctx, cancel = context.WithCancel(context.Background())
			cr := &cancelReader{r: bytes.NewReader(arc), after: len(arc) / 3, cancel: cancel}
			if _, err := fallback.Extract(ctx, cr, format, dest, nil); !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled midway: %v", err)
			}
			mustNotExist(t, dest)
		})
	}
	// Expected lists that cannot be meant are refused before dest is made.
	dest := filepath.Join(t.TempDir(), "x")
	for _, exp := range [][]tree.Entry{
		{{Path: "a", Type: tree.File, Size: 1}},
		{{Path: "../a", Type: tree.Dir}},
		{{Path: "a", Type: tree.Dir}, {Path: "a", Type: tree.Dir}},
		{{Path: "a", Type: "fifo"}},
	} {
		if _, err := fallback.Extract(context.Background(), strings.NewReader(""), fallback.TarGz, dest, &fallback.ExtractOptions{Expected: exp}); err == nil {
			t.Errorf("Expected %v accepted", exp)
		}
		mustNotExist(t, dest)
	}
}

type cancelReader struct {
	r      io.Reader
	after  int
	cancel func()
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.after <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p[:min(len(p), max(c.after, 1))])
	c.after -= n
	return n, err
}

// TestWriteSkip: Skip leaves entries (and directory contents) out.
func TestWriteSkip(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, goldenTree())
	_, st := writeArchive(t, src, fallback.TarGz, &fallback.WriteOptions{Skip: func(rel string) bool { return rel == "bin" || rel == "readme.txt" }})
	var paths []string
	for _, e := range st.Entries {
		paths = append(paths, e.Path)
	}
	if got := strings.Join(paths, ","); got != "empty,ünïcödé.txt" {
		t.Errorf("entries with Skip: %s", got)
	}
}
