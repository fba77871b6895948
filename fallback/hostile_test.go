package fallback_test

// Hostile archives: every one must fail with its error class (or succeed,
// for the controls), never panic, and leave no dest behind.
//
// The archives are built here with archive/tar (and a few raw bytes) and
// committed under testdata/fallback/hostile with cases.json, the table of
// expected classes and options. To rewrite them after changing the
// generator:
//
//	go test ./fallback -run TestHostile -update

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
)

const hostileDir = "../testdata/fallback/hostile"

// hostileCase is one row of cases.json.
type hostileCase struct {
	File         string      `json:"file"`
	Want         string      `json:"want"` // an errClass name, "ok" for controls
	Note         string      `json:"note"`
	MaxTotalSize int64       `json:"max_total_size,omitempty"`
	MaxFiles     int         `json:"max_files,omitempty"`
	MaxFileSize  int64       `json:"max_file_size,omitempty"`
	Expected     *[]expEntry `json:"expected,omitempty"`
	data         []byte
}

// expEntry is a tree.Entry as JSON.
type expEntry struct {
	Path   string `json:"path"`
	Type   string `json:"type"`
	Mode   string `json:"mode,omitempty"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Target string `json:"target,omitempty"`
}

func (c *hostileCase) options(t testing.TB) *fallback.ExtractOptions {
	o := &fallback.ExtractOptions{MaxTotalSize: c.MaxTotalSize, MaxFiles: c.MaxFiles, MaxFileSize: c.MaxFileSize}
	if c.Expected != nil {
		o.Expected = []tree.Entry{}
		for _, x := range *c.Expected {
			e := tree.Entry{Path: x.Path, Type: tree.Type(x.Type), Size: x.Size, Target: x.Target}
			if x.Mode != "" {
				m, err := strconv.ParseUint(x.Mode, 8, 32)
				if err != nil {
					t.Fatal(err)
				}
				e.Mode = fs.FileMode(m)
			}
			if x.SHA256 != "" {
				b, err := hex.DecodeString(x.SHA256)
				if err != nil || len(b) != 32 {
					t.Fatalf("bad sha256 %q", x.SHA256)
				}
				copy(e.SHA256[:], b)
			}
			o.Expected = append(o.Expected, e)
		}
	}
	return o
}

// expected describes the entries of a tar as an Expected list.
func expected(ents ...tent) *[]expEntry {
	out := []expEntry{}
	for _, e := range ents {
		x := expEntry{Path: strings.TrimSuffix(e.hdr.Name, "/"), Mode: fmt.Sprintf("%04o", e.hdr.Mode)}
		switch e.hdr.Typeflag {
		case tar.TypeReg:
			sum := sha256.Sum256(e.data)
			x.Type, x.Size, x.SHA256 = "file", int64(len(e.data)), hex.EncodeToString(sum[:])
		case tar.TypeDir:
			x.Type = "dir"
		case tar.TypeSymlink:
			x.Type, x.Target, x.Mode = "symlink", e.hdr.Linkname, ""
		}
		out = append(out, x)
	}
	return &out
}

// compressStream compresses what fill writes, in format.
func compressStream(t testing.TB, format fallback.Format, fill func(w io.Writer)) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch format {
	case fallback.TarZst:
		w, _ = zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	case fallback.TarGz:
		w, _ = gzip.NewWriterLevel(&b, gzip.BestCompression)
	}
	fill(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// zeroFile returns a tar (compressed in format) holding one file of n zero
// bytes, followed by trailing zero bytes after the end marker.
func zeroFile(t testing.TB, format fallback.Format, n, trailing int64) []byte {
	return compressStream(t, format, func(w io.Writer) {
		tw := tar.NewWriter(w)
		if n >= 0 {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Mode: 0o644, Size: n}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyN(tw, zeroReader{}, n); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(w, zeroReader{}, trailing); err != nil {
			t.Fatal(err)
		}
	})
}

// paxRecord formats one PAX record: "<len> key=value\n".
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	for n < len(strconv.Itoa(n))+len(k)+len(v)+3 {
		n++
	}
	return fmt.Sprintf("%d %s=%s\n", len(strconv.Itoa(n))+len(k)+len(v)+3, k, v)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// patchType rewrites the type flag of the first header of a raw tar and
// fixes its checksum.
func patchType(raw []byte, flag byte) []byte {
	raw = bytes.Clone(raw)
	raw[156] = flag
	copy(raw[148:156], "        ")
	var sum int64
	for _, b := range raw[:512] {
		sum += int64(b)
	}
	copy(raw[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return raw
}

func hostileCases(t testing.TB) []hostileCase {
	zst, gz := fallback.TarZst, fallback.TarGz
	var cs []hostileCase
	add := func(format fallback.Format, name, want, note string, data []byte) *hostileCase {
		cs = append(cs, hostileCase{File: name + format.Ext(), Want: want, Note: note, data: data})
		return &cs[len(cs)-1]
	}
	tarOf := func(format fallback.Format, ents ...tent) []byte {
		return compress(t, format, mkTar(t, tarOpts{}, ents...))
	}
	std := func(format fallback.Format, name, want, note string, ents ...tent) *hostileCase {
		return add(format, name, want, note, tarOf(format, ents...))
	}

	// The base archive of the Expected cases, and its controls.
	base := []tent{tdir("bin/"), treg("bin/app", 0o755, "#!/bin/sh\necho app\n"), tsym("bin/run", "app"), treg("readme", 0o644, "hello\n")}
	valid := tarOf(zst, base...)
	c := add(zst, "ok-expected", "ok", "control: matches its Expected list", valid)
	c.Expected = expected(base...)
	std(zst, "ok-gnu-dot-prefix", "ok", "control: GNU tar -C dir . names (./, ./bin/, ./bin/app)",
		tdir("./"), tdir("./bin/"), treg("./bin/app", 0o755, "x"))
	std(zst, "ok-setuid-dropped", "ok", "control: setuid/sticky bits are dropped, not refused", treg("suid", 0o4755, "x"))
	add(zst, "ok-empty-archive", "ok", "control: an empty tar (only the end marker)", compress(t, zst, mkTar(t, tarOpts{})))
	add(zst, "ok-gnu-record-padding", "ok", "control: zeros after the marker, as GNU tar pads to 10 KiB records",
		compress(t, zst, mkTar(t, tarOpts{trailing: make([]byte, 9216)}, base...)))

	// Names.
	std(zst, "dotdot", "unsafe", "../evil", treg("../evil", 0o644, "x"))
	std(zst, "dotdot-inner", "unsafe", "a/../../evil", tdir("a/"), treg("a/../../evil", 0o644, "x"))
	std(zst, "absolute", "unsafe", "/abs", treg("/abs", 0o644, "x"))
	std(zst, "drive-letter", "unsafe", "C:/x", treg("C:/x", 0o644, "x"))
	std(zst, "windows-device", "unsafe", "a/CON", tdir("a/"), treg("a/CON", 0o644, "x"))
	std(zst, "short-name-alias", "unsafe", "longfilename.txt and LONGFI~1.TXT, its 8.3 alias on Windows", treg("LONGFI~1.TXT", 0o644, "2"), treg("longfilename.txt", 0o644, "1"))
	std(zst, "backslash", "unsafe", `a\..\..\x`, treg(`a\..\..\x`, 0o644, "x"))
	std(zst, "control-char", "unsafe", "newline in a name", treg("a\nb", 0o644, "x"))
	std(zst, "long-element", "unsafe", "a 300-byte path element", treg(strings.Repeat("n", 300), 0o644, "x"))
	add(zst, "file-trailing-slash", "unsafe", "a regular file named b/", compress(t, zst, patchType(mkTar(t, tarOpts{}, tdir("b/")), tar.TypeReg)))

	// Symlinks.
	std(zst, "symlink-escape", "link-escape", "l -> ../../etc, then l/passwd", tsym("l", "../../etc"), treg("l/passwd", 0o644, "root::0:0::/:/bin/sh\n"))
	std(zst, "symlink-absolute", "link-escape", "l -> /etc", tsym("l", "/etc"))
	std(zst, "symlink-through", "unsafe", "l -> d inside the tree, then l/x through it", tdir("d/"), tsym("l", "d"), treg("l/x", 0o644, "x"))
	std(zst, "symlink-dir-through", "unsafe", "l -> d, then directory l/sub/", tdir("d/"), tsym("l", "d"), tdir("l/sub/"))
	std(zst, "symlink-chain-escape", "link-escape", "d/e/up -> .. and x -> d/e/up/../.. pass the lexical check but resolve outside",
		tdir("d/"), tdir("d/e/"), tsym("d/e/up", ".."), tsym("x", "d/e/up/../.."))
	std(zst, "symlink-loop", "link-escape", "a -> b, b -> a", tsym("a", "b"), tsym("b", "a"))
	std(zst, "symlink-control-char", "unsafe", "target with a newline", tsym("l", "a\nb"))
	std(zst, "parent-is-file", "unsafe", "file a, then a/b", treg("a", 0o644, "x"), treg("a/b", 0o644, "x"))
	std(zst, "missing-parent", "corrupt", "x/y without x/", treg("x/y", 0o644, "x"))

	// Entry types.
	std(zst, "hardlink", "unsupported", "h hard-linked to f", treg("f", 0o644, "x"), tent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "f"}})
	std(zst, "char-device", "unsupported", "character device 1,3", tent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}})
	std(zst, "block-device", "unsupported", "block device 8,0", tent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Mode: 0o660, Devmajor: 8}})
	std(zst, "fifo", "unsupported", "named pipe", tent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o644}})
	std(zst, "pax-global", "unsupported", "PAX global header", tent{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}}})
	gnuRaw := mkTar(t, tarOpts{}, tent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "sparse", Mode: 0o644, Format: tar.FormatGNU}})
	add(zst, "gnu-sparse", "unsupported", "old GNU sparse file (type S)", compress(t, zst, patchType(gnuRaw, tar.TypeGNUSparse)))
	// archive/tar drops GNU.sparse records when writing: make the PAX
	// header as a file, then retype it.
	recs := paxRecord("GNU.sparse.map", "0,4") + paxRecord("GNU.sparse.numblocks", "1") + paxRecord("GNU.sparse.size", "4")
	paxSparse := append(patchType(mkTar(t, tarOpts{noEnd: true}, treg("PaxHeaders.0/sparse", 0, recs)), tar.TypeXHeader),
		mkTar(t, tarOpts{}, treg("sparse", 0o644, "abcd"))...)
	add(zst, "pax-sparse", "unsupported", "PAX GNU sparse file (format 0.1 records)", compress(t, zst, paxSparse))
	std(zst, "dir-with-size", "corrupt", "directory header with a size", tent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755, Size: 5}})

	// Duplicates.
	std(zst, "dup-exact", "duplicate", "a twice", treg("a", 0o644, "1"), treg("a", 0o644, "2"))
	std(zst, "dup-case", "duplicate", "A and a", treg("A", 0o644, "1"), treg("a", 0o644, "2"))
	std(zst, "dup-nfd", "duplicate", "caf\\u00e9 (NFC) and cafe\\u0301 (NFD)", treg("caf\u00e9", 0o644, "1"), treg("cafe\u0301", 0o644, "2"))
	std(zst, "dup-kelvin", "duplicate", "k and KELVIN SIGN (U+212A)", treg("k", 0o644, "1"), treg("\u212a", 0o644, "2"))
	std(zst, "dup-dir-file", "duplicate", "directory a/ then file a", tdir("a/"), treg("a", 0o644, "x"))

	// Limits.
	c = add(zst, "bomb-100mb-zeros", "limit", "100 MB of zeros (a few KB compressed) with MaxTotalSize 1 MB", zeroFile(t, zst, 100e6, 0))
	c.MaxTotalSize = 1e6
	add(zst, "bomb-trailing-zeros", "corrupt", "100 MB of zeros after the end marker (over MaxTrailingZeros)", zeroFile(t, zst, -1, 100e6))
	huge := mkTar(t, tarOpts{noEnd: true}, tent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "huge", Mode: 0o644, Size: 10 << 30}})
	add(zst, "declared-10gb", "limit", "a 10 GiB file header (no data) against the default caps", compress(t, zst, huge))
	c = std(zst, "too-many-files", "limit", "5 files with MaxFiles 3", treg("1", 0o644, ""), treg("2", 0o644, ""), treg("3", 0o644, ""), treg("4", 0o644, ""), treg("5", 0o644, ""))
	c.MaxFiles = 3
	c = std(zst, "file-over-cap", "limit", "a 2000-byte file with MaxFileSize 1000", treg("f", 0o644, strings.Repeat("x", 2000)))
	c.MaxFileSize = 1000
	c = std(zst, "total-over-cap", "limit", "two 600 KiB files with MaxTotalSize 1 MiB", treg("a", 0o644, strings.Repeat("a", 600<<10)), treg("b", 0o644, strings.Repeat("b", 600<<10)))
	c.MaxTotalSize = 1 << 20
	add(zst, "metadata-bomb", "limit", "150000 './' root headers: 73 MiB of metadata, no entries", compressStream(t, zst, func(w io.Writer) {
		tw := tar.NewWriter(w)
		for range 150000 {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755})
		}
		tw.Close()
	}))
	// A zstd frame asking for a 1 GiB window: magic, FHD 0, window
	// descriptor exponent 20 (2^30), one empty last raw block.
	add(zst, "zstd-window-1gib", "limit", "zstd frame with a 1 GiB window", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa0, 0x01, 0x00, 0x00})

	// Expected.
	exp := expected(base...)
	with := func(name, note string, ents ...tent) {
		c := std(zst, name, "mismatch", note, ents...)
		c.Expected = exp
	}
	with("expected-extra", "a file not in Expected", append(base[:len(base):len(base)], treg("extra", 0o644, "x"))...)
	with("expected-hash", "a file whose content (same size) differs from Expected", base[0], treg("bin/app", 0o755, "#!/bin/sh\necho pwn\n"), base[2], base[3])
	with("expected-size", "a file whose size differs from Expected", base[0], treg("bin/app", 0o755, "#!/bin/sh\necho app; rm -rf ~\n"), base[2], base[3])
	with("expected-mode", "a file whose mode differs from Expected", base[0], base[1], base[2], treg("readme", 0o755, "hello\n"))
	with("expected-target", "a symlink whose target differs from Expected", base[0], base[1], tsym("bin/run", "../readme"), base[3])
	with("expected-type", "a directory where Expected has a file", base[0], base[1], base[2], tdir("readme/"))
	with("expected-missing", "an expected file missing from the archive", base[0], base[1], base[2])
	c = std(zst, "expected-empty", "mismatch", "any entry with an empty Expected list", treg("a", 0o644, "x"))
	c.Expected = &[]expEntry{}

	// Stream structure.
	add(zst, "truncated", "corrupt", "the valid archive cut in half", valid[:len(valid)/2])
	add(zst, "truncated-tar", "corrupt", "a tar cut inside a file, properly compressed", compress(t, zst, mkTar(t, tarOpts{}, base...)[:1030]))
	add(zst, "no-end-marker", "corrupt", "a tar without its two zero blocks", compress(t, zst, mkTar(t, tarOpts{noEnd: true}, base...)))
	add(zst, "one-zero-block", "corrupt", "a tar ending with one zero block", compress(t, zst, mkTar(t, tarOpts{noEnd: true, trailing: make([]byte, 512)}, base...)))
	paxOnly := mkTar(t, tarOpts{noEnd: true}, treg("ü", 0o644, "x"))[:1024] // PAX header + its records, no entry
	add(zst, "ends-after-pax", "corrupt", "a tar ending after a PAX header, before its entry", compress(t, zst, append(mkTar(t, tarOpts{noEnd: true}, base...), paxOnly...)))
	add(zst, "trailing-in-tar", "corrupt", "non-zero bytes after the end marker, inside the compressed stream",
		compress(t, zst, mkTar(t, tarOpts{trailing: []byte("trailing garbage")}, base...)))
	add(zst, "trailing-after-zstd", "corrupt", "garbage after the zstd frame", append(bytes.Clone(valid), "trailing garbage"...))
	add(zst, "not-zstd", "corrupt", "not a zstd stream", []byte("this is not a zstd frame at all, just text"))
	add(zst, "empty-file", "corrupt", "zero bytes", []byte{})

	// gzip variants.
	validGz := tarOf(gz, base...)
	c = add(gz, "ok-expected", "ok", "control: matches its Expected list", validGz)
	c.Expected = expected(base...)
	std(gz, "dotdot", "unsafe", "../evil", treg("../evil", 0o644, "x"))
	std(gz, "hardlink", "unsupported", "h hard-linked to f", treg("f", 0o644, "x"), tent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "f"}})
	std(gz, "symlink-through", "unsafe", "l -> d, then l/x through it", tdir("d/"), tsym("l", "d"), treg("l/x", 0o644, "x"))
	std(gz, "dup-case", "duplicate", "A and a", treg("A", 0o644, "1"), treg("a", 0o644, "2"))
	c = add(gz, "bomb-32mb-zeros", "limit", "32 MB of zeros with MaxTotalSize 1 MB", zeroFile(t, gz, 32e6, 0))
	c.MaxTotalSize = 1e6
	c = std(gz, "expected-extra", "mismatch", "a file not in Expected", append(base[:len(base):len(base)], treg("extra", 0o644, "x"))...)
	c.Expected = exp
	add(gz, "truncated", "corrupt", "the valid archive cut in half", validGz[:len(validGz)/2])
	add(gz, "trailing-after-gzip", "corrupt", "garbage after the gzip member", append(bytes.Clone(validGz), "trailing garbage"...))
	bad := bytes.Clone(validGz)
	bad[len(bad)-6] ^= 1 // CRC-32 in the trailer
	add(gz, "bad-crc", "corrupt", "gzip CRC-32 mismatch", bad)
	return cs
}

func TestHostile(t *testing.T) {
	gen := hostileCases(t)
	casesFile := filepath.Join(hostileDir, "cases.json")
	genJSON, err := json.MarshalIndent(gen, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	genJSON = append(genJSON, '\n')
	if *update {
		old, _ := filepath.Glob(filepath.Join(hostileDir, "*.tar.*"))
		for _, p := range old {
			os.Remove(p)
		}
		for _, c := range gen {
			if err := os.WriteFile(filepath.Join(hostileDir, c.File), c.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(casesFile, genJSON, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(casesFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(committed, genJSON) {
		t.Errorf("%s differs from the generator; run: go test ./fallback -run TestHostile -update", casesFile)
	}
	var cases []hostileCase
	if err := json.Unmarshal(committed, &cases); err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, c := range gen {
		byName[c.File] = c.data
	}
	for _, c := range cases {
		t.Run(c.File, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(hostileDir, c.File))
			if err != nil {
				t.Fatal(err)
			}
			if g, ok := byName[c.File]; !ok || !bytes.Equal(g, data) {
				t.Errorf("committed %s differs from the generator's; run with -update", c.File)
			}
			format, ok := fallback.FormatFromName(c.File)
			if !ok {
				t.Fatalf("no format for %s", c.File)
			}
			dest := filepath.Join(t.TempDir(), "dest")
			got, err := fallback.Extract(context.Background(), bytes.NewReader(data), format, dest, c.options(t))
			if cl := errClass(err); cl != c.Want {
				t.Fatalf("%s: got %s (%v), want %s", c.Note, cl, err, c.Want)
			}
			if err != nil {
				if n := classCount(err); n != 1 {
					t.Errorf("error has %d classes: %v", n, err)
				}
				if got != nil {
					t.Errorf("entries returned with an error")
				}
				mustNotExist(t, dest)
				t.Logf("%s: %v", c.Note, err)
				return
			}
			if _, d := scan(t, dest); d != tree.Digest(got) {
				t.Errorf("extracted tree differs from the returned entries")
			}
		})
	}
}
