package fallback_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
)

var update = flag.Bool("update", false, "rewrite testdata/fallback (golden hashes, hostile archives)")

// fent is one entry of a fixture tree: a file (data, mode), a directory
// (path ends in "/") or a symlink (target set).
type fent struct {
	path   string
	mode   fs.FileMode
	data   []byte
	target string
}

func file(p string, mode fs.FileMode, data string) fent {
	return fent{path: p, mode: mode, data: []byte(data)}
}
func dir(p string, mode fs.FileMode) fent { return fent{path: p + "/", mode: mode} }
func link(p, target string) fent          { return fent{path: p, target: target} }

// makeTree creates the entries under root in the order given (missing
// parents as 0755 directories) and sets every mode explicitly, whatever the
// umask.
func makeTree(t testing.TB, root string, ents []fent) {
	t.Helper()
	var dirs []fent
	for _, e := range ents {
		p := filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(e.path, "/")))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(e.path, "/"):
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, e)
		case e.target != "":
			if err := os.Symlink(filepath.FromSlash(e.target), p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, e.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, e.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		p := filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(dirs[i].path, "/")))
		if err := os.Chmod(p, dirs[i].mode); err != nil {
			t.Fatal(err)
		}
	}
}

// scan returns the hashed entries of the tree at root and their digest.
func scan(t testing.TB, root string) ([]tree.Entry, [32]byte) {
	t.Helper()
	es, err := tree.Scan(context.Background(), root, tree.ScanOptions{Hash: true})
	if err != nil {
		t.Fatalf("scanning %s: %v", root, err)
	}
	return es, tree.Digest(es)
}

// pseudoRandom returns n deterministic bytes: random runs mixed with
// repeated text, so compressors have something to find.
func pseudoRandom(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, 0, n)
	text := []byte("the quick brown fox jumps over the lazy dog; ")
	for len(b) < n {
		if r.IntN(2) == 0 {
			for range r.IntN(4096) {
				b = append(b, byte(r.Uint32()))
			}
		} else {
			for range r.IntN(100) {
				b = append(b, text...)
			}
		}
	}
	return b[:n]
}

// errClass names the class of an Extract error, "ok" for nil and "other"
// for errors without a class.
func errClass(err error) string {
	if err == nil {
		return "ok"
	}
	for _, c := range classList {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "other"
}

var classList = []struct {
	name string
	err  error
}{
	{"unsafe", fallback.ErrUnsafeEntry},
	{"link-escape", fallback.ErrLinkEscape},
	{"duplicate", fallback.ErrDuplicate},
	{"unsupported", fallback.ErrUnsupportedEntry},
	{"limit", fallback.ErrLimit},
	{"corrupt", fallback.ErrCorrupt},
	{"mismatch", fallback.ErrMismatch},
}

// classCount returns how many classes err has (each class error should
// have exactly one).
func classCount(err error) int {
	n := 0
	for _, c := range classList {
		if errors.Is(err, c.err) {
			n++
		}
	}
	return n
}

// tent is one raw tar entry of a hand-made archive.
type tent struct {
	hdr  tar.Header
	data []byte
}

func treg(name string, mode int64, data string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: []byte(data)}
}
func tdir(name string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}
func tsym(name, target string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// tarOpts shape a hand-made tar stream.
type tarOpts struct {
	noEnd    bool   // leave out the end-of-archive marker
	trailing []byte // bytes after the marker
}

// mkTar builds a tar stream with archive/tar (PAX/GNU as archive/tar picks).
func mkTar(t testing.TB, o tarOpts, ents ...tent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
	}
	// Flush pads the last file; it fails when that file's data is missing
	// on purpose (a header alone, noEnd).
	if err := tw.Flush(); err != nil && !o.noEnd {
		t.Fatal(err)
	}
	if !o.noEnd {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b.Write(o.trailing)
	return b.Bytes()
}

// compress wraps a raw tar stream in format (fast settings: the hostile
// archives test the reader, not the writer's parameters).
func compress(t testing.TB, format fallback.Format, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch format {
	case fallback.TarZst:
		enc, err := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enc.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
	case fallback.TarGz:
		gz, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
		if _, err := gz.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := gz.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// writeArchive archives root in format and returns the bytes and stats.
func writeArchive(t testing.TB, root string, format fallback.Format, opts *fallback.WriteOptions) ([]byte, fallback.Stats) {
	t.Helper()
	var b bytes.Buffer
	st, err := fallback.Write(context.Background(), &b, root, format, opts)
	if err != nil {
		t.Fatalf("Write(%s, %v): %v", root, format, err)
	}
	return b.Bytes(), st
}

// mustNotExist fails when p exists.
func mustNotExist(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s was left behind (lstat: %v)", p, err)
	}
}
