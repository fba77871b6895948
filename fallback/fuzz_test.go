package fallback_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
)

// FuzzExtract feeds arbitrary bytes to Extract. mode%3 picks how: 0 the
// bytes are a tar stream, gzipped by the harness (so the fuzzer works on
// tar headers), 1 they are the .tar.zst file, 2 the .tar.gz file. Extract
// must not panic; on error, the error must have exactly one class (the
// harness's reader and file system do not fail) and dest must be gone; on
// success, the tree on disk must be what Extract returned.
//
//	go test ./fallback -run '^$' -fuzz FuzzExtract -fuzztime 20s
func FuzzExtract(f *testing.F) {
	base := []tent{tdir("bin/"), treg("bin/app", 0o755, "#!/bin/sh\n"), tsym("bin/run", "app"), treg("readme", 0o644, "hi\n")}
	seeds := [][]tent{
		base,
		{tdir("./"), tdir("./a/"), treg("./a/b", 0o600, "x")},
		{tsym("l", "../../etc"), treg("l/passwd", 0o644, "x")},
		{tdir("d/"), tsym("l", "d"), treg("l/x", 0o644, "x")},
		{tdir("d/"), tdir("d/e/"), tsym("d/e/up", ".."), tsym("x", "d/e/up/../..")},
		{treg("A", 0o644, "1"), treg("a", 0o644, "2")},
		{treg("caf\u00e9", 0o644, "1"), treg("cafe\u0301", 0o644, "2")},
		{treg("../evil", 0o644, "x")},
		{treg(longPAX, 0o644, "long")},
	}
	for _, s := range seeds {
		f.Add(uint8(0), mkTar(f, tarOpts{}, s...))
	}
	f.Add(uint8(0), mkTar(f, tarOpts{noEnd: true}, base...))
	f.Add(uint8(0), mkTar(f, tarOpts{trailing: []byte("junk")}, base...))
	f.Add(uint8(1), compress(f, fallback.TarZst, mkTar(f, tarOpts{}, base...)))
	f.Add(uint8(2), compress(f, fallback.TarGz, mkTar(f, tarOpts{}, base...)))
	f.Add(uint8(1), []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa0, 0x01, 0x00, 0x00})

	work := f.TempDir()
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		format := fallback.TarGz
		switch mode % 3 {
		case 0:
			data = compress(t, fallback.TarGz, data)
		case 1:
			format = fallback.TarZst
		}
		dest := filepath.Join(work, fmt.Sprint(n.Add(1)))
		opts := &fallback.ExtractOptions{MaxTotalSize: 8 << 20, MaxFiles: 256, MaxFileSize: 4 << 20}
		got, err := fallback.Extract(context.Background(), bytes.NewReader(data), format, dest, opts)
		if err != nil {
			if c := classCount(err); c != 1 {
				t.Fatalf("error with %d classes: %v", c, err)
			}
			if _, serr := os.Lstat(dest); serr == nil {
				t.Fatalf("dest left behind after: %v", err)
			}
			return
		}
		defer removeAll(t, dest)
		on, err := tree.Scan(context.Background(), dest, tree.ScanOptions{Hash: true})
		if err != nil {
			t.Fatalf("scanning the extracted tree: %v", err)
		}
		if tree.Digest(on) != tree.Digest(got) {
			t.Fatalf("tree on disk differs from the returned entries:\n disk %v\n returned %v", on, got)
		}
		for _, e := range got {
			if strings.HasPrefix(e.Path, "./") || e.Path == "." {
				t.Fatalf("entry %q", e.Path)
			}
		}
	})
}

// removeAll removes an extracted tree whatever its directory modes.
func removeAll(t *testing.T, dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}
