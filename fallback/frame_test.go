package fallback_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
)

// framedTree has small files to group, files just over and under
// FrameTarget, a large one, a PAX name, symlinks and directories.
func framedTree() []fent {
	ents := []fent{
		dir("bin", 0o755),
		file("bin/app", 0o755, string(pseudoRandom(3, 300<<10))),
		link("bin/run", "app"),
		dir("lib", 0o755),
		file("lib/just-over.bin", 0o644, string(pseudoRandom(4, fallback.FrameTarget))),
		file("lib/just-under.bin", 0o644, string(pseudoRandom(5, fallback.FrameTarget-512-1))),
		file(longPAX, 0o600, "PAX name\n"),
		dir("share/empty", 0o700),
		file("share/empty.txt", 0o644, ""),
		file("zz-last.bin", 0o644, string(pseudoRandom(6, 100<<10))),
	}
	for i := range 40 {
		ents = append(ents, file("small/f"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+".txt", 0o644, strings.Repeat("small file text ", 50+i*10)))
	}
	return ents
}

// checkFrames checks Stats.Frames against the archive: contiguous,
// covering every entry and byte, each hash right, each frame decoding on
// its own to its part of the tar stream.
func checkFrames(t *testing.T, arc []byte, st fallback.Stats) {
	t.Helper()
	var off, tarOff int64
	first := 0
	var tarStream []byte
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for i, f := range st.Frames {
		if f.Offset != off || f.TarOffset != tarOff || f.First != first || f.Size <= 0 {
			t.Fatalf("frame %d %+v: want offset %d, tar offset %d, first %d", i, f, off, tarOff, first)
		}
		if f.Count < 1 {
			t.Errorf("frame %d holds no entry", i)
		}
		b := arc[f.Offset : f.Offset+f.Size]
		if sha256.Sum256(b) != f.SHA256 {
			t.Errorf("frame %d: SHA-256 differs", i)
		}
		raw, err := dec.DecodeAll(b, nil)
		if err != nil {
			t.Fatalf("frame %d does not decode on its own: %v", i, err)
		}
		if int64(len(raw)) != f.TarSize {
			t.Errorf("frame %d: %d tar bytes, Stats says %d", i, len(raw), f.TarSize)
		}
		tarStream = append(tarStream, raw...)
		last := i == len(st.Frames)-1
		// Only a large entry, or the last frame (end marker), goes over
		// the target.
		if f.TarSize > fallback.FrameTarget+2*512 && f.Count > 1 && !last {
			t.Errorf("frame %d: %d tar bytes for %d entries, over the target", i, f.TarSize, f.Count)
		}
		off, tarOff, first = off+f.Size, tarOff+f.TarSize, first+f.Count
	}
	if off != int64(len(arc)) || tarOff != st.TarBytes || first != len(st.Entries) {
		t.Fatalf("frames cover %d bytes, %d tar bytes, %d entries; the archive has %d, %d, %d", off, tarOff, first, len(arc), st.TarBytes, len(st.Entries))
	}
	whole, err := dec.DecodeAll(arc, nil)
	if err != nil || !bytes.Equal(whole, tarStream) {
		t.Fatalf("the frames' tar bytes are not the archive's tar stream (%v)", err)
	}
}

// TestFramedWrite: a framed archive is an ordinary tar.zst (Extract reads
// it whole), its frames are as Stats says, and each frame gives its
// entries back on its own (ReadFrame).
func TestFramedWrite(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, framedTree())
	want, wantDigest := scan(t, src)
	arc, st := writeArchive(t, src, fallback.TarZst, &fallback.WriteOptions{Framed: true})
	solid, sst := writeArchive(t, src, fallback.TarZst, nil)
	t.Logf("%d entries in %d frames, %d bytes (one frame: %d)", len(st.Entries), len(st.Frames), len(arc), len(solid))
	if len(sst.Frames) != 1 || sst.Frames[0].Size != int64(len(solid)) || sst.Frames[0].Count != len(sst.Entries) {
		t.Errorf("unframed archive: frames %+v", sst.Frames)
	}
	if len(st.Frames) < 5 {
		t.Fatalf("only %d frames", len(st.Frames))
	}
	checkFrames(t, arc, st)
	// Large entries have frames of their own.
	for _, f := range st.Frames {
		for _, e := range st.Entries[f.First : f.First+f.Count] {
			if e.Size > fallback.FrameTarget && f.Count != 1 && f.First+f.Count != len(st.Entries) {
				t.Errorf("%s (%d bytes) shares a frame with %d other entries", e.Path, e.Size, f.Count-1)
			}
		}
	}
	got, err := fallback.Extract(context.Background(), bytes.NewReader(arc), fallback.TarZst, filepath.Join(t.TempDir(), "out"), &fallback.ExtractOptions{Expected: want})
	if err != nil || tree.Digest(got) != wantDigest {
		t.Fatalf("Extract of the framed archive: %v", err)
	}
	// Each frame on its own, against the scanned entries.
	for i, f := range st.Frames {
		files := map[string][]byte{}
		err := fallback.ReadFrame(context.Background(), bytes.NewReader(arc[f.Offset:f.Offset+f.Size]), want[f.First:f.First+f.Count], func(e tree.Entry, r io.Reader) error {
			b, err := io.ReadAll(r)
			files[e.Path] = b
			return err
		})
		if err != nil {
			t.Fatalf("ReadFrame %d: %v", i, err)
		}
		for _, e := range want[f.First : f.First+f.Count] {
			if e.Type != tree.File {
				continue
			}
			disk, _ := os.ReadFile(filepath.Join(src, filepath.FromSlash(e.Path)))
			if !bytes.Equal(files[e.Path], disk) {
				t.Errorf("frame %d: %s: %d bytes, want %d", i, e.Path, len(files[e.Path]), len(disk))
			}
		}
	}
	// A callback that reads nothing: ReadFrame still checks the content.
	var f fallback.Frame
	for _, fr := range st.Frames {
		if fr.Count > 2 {
			f = fr
			break
		}
	}
	if err := fallback.ReadFrame(context.Background(), bytes.NewReader(arc[f.Offset:f.Offset+f.Size]), want[f.First:f.First+f.Count], func(tree.Entry, io.Reader) error { return nil }); err != nil {
		t.Errorf("ReadFrame with a callback that reads nothing: %v", err)
	}
	// A callback's error comes back as it is.
	boom := errors.New("boom")
	if err := fallback.ReadFrame(context.Background(), bytes.NewReader(arc[f.Offset:f.Offset+f.Size]), want[f.First:f.First+f.Count], func(tree.Entry, io.Reader) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("callback error: %v", err)
	}
}

// TestFramedDeterminism: the same tree gives the same framed bytes, in
// another process order and across GOMAXPROCS; an empty tree is one frame.
func TestFramedDeterminism(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	ents := framedTree()
	makeTree(t, a, ents)
	rev := make([]fent, len(ents))
	for i := range ents {
		rev[len(ents)-1-i] = ents[i]
	}
	makeTree(t, b, rev)
	x, sx := writeArchive(t, a, fallback.TarZst, &fallback.WriteOptions{Framed: true})
	old := runtime.GOMAXPROCS(1)
	y, sy := writeArchive(t, b, fallback.TarZst, &fallback.WriteOptions{Framed: true})
	runtime.GOMAXPROCS(old)
	if !bytes.Equal(x, y) || len(sx.Frames) != len(sy.Frames) {
		t.Fatalf("framed archives differ: %d and %d bytes, %d and %d frames", len(x), len(y), len(sx.Frames), len(sy.Frames))
	}
	empty := t.TempDir()
	arc, st := writeArchive(t, empty, fallback.TarZst, &fallback.WriteOptions{Framed: true})
	if len(st.Frames) != 1 || st.Frames[0].Count != 0 || st.Frames[0].Size != int64(len(arc)) || st.Frames[0].TarSize != 1024 {
		t.Errorf("empty tree: frames %+v", st.Frames)
	}
	// tar.gz ignores Framed.
	if _, st := writeArchive(t, a, fallback.TarGz, &fallback.WriteOptions{Framed: true}); st.Frames != nil {
		t.Errorf("tar.gz has frames %+v", st.Frames)
	}
}

// TestReadFrameHostile: a frame that is not what the file list says, or
// not a frame, is refused with its class.
func TestReadFrameHostile(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, framedTree())
	want, _ := scan(t, src)
	arc, st := writeArchive(t, src, fallback.TarZst, &fallback.WriteOptions{Framed: true})
	// The frame of bin/app (a file of its own) and a group of small ones.
	var big, group fallback.Frame
	for _, f := range st.Frames {
		if want[f.First].Path == "bin/app" {
			big = f
		}
		if f.Count > 3 && group.Count == 0 {
			group = f
		}
	}
	if big.Count != 1 || group.Count == 0 {
		t.Fatalf("frames: %+v", st.Frames)
	}
	bytesOf := func(f fallback.Frame) []byte { return bytes.Clone(arc[f.Offset : f.Offset+f.Size]) }
	entriesOf := func(f fallback.Frame) []tree.Entry {
		return append([]tree.Entry(nil), want[f.First:f.First+f.Count]...)
	}
	zst := func(raw []byte) []byte { return compress(t, fallback.TarZst, raw) }
	cases := []struct {
		name    string
		frame   []byte
		entries []tree.Entry
		class   error
	}{
		{"another file's hash", bytesOf(big), func() []tree.Entry { e := entriesOf(big); e[0].SHA256[0] ^= 1; return e }(), fallback.ErrMismatch},
		{"another size", bytesOf(big), func() []tree.Entry { e := entriesOf(big); e[0].Size--; return e }(), fallback.ErrMismatch},
		{"another mode", bytesOf(big), func() []tree.Entry { e := entriesOf(big); e[0].Mode = 0o600; return e }(), fallback.ErrMismatch},
		{"another path", bytesOf(big), func() []tree.Entry { e := entriesOf(big); e[0].Path = "bin/other"; return e }(), fallback.ErrMismatch},
		{"another type", bytesOf(big), []tree.Entry{{Path: "bin/app", Type: tree.Dir, Mode: 0o755}}, fallback.ErrMismatch},
		{"one entry more than the frame holds", bytesOf(big), append(entriesOf(big), tree.Entry{Path: "bin/zzz", Type: tree.Dir, Mode: 0o755}), fallback.ErrMismatch},
		{"one entry less", bytesOf(group), entriesOf(group)[1:], fallback.ErrMismatch},
		{"entries of the next frame", bytesOf(group), want[group.First+1 : group.First+1+group.Count], fallback.ErrMismatch},
		{"unsafe path in the list", bytesOf(big), []tree.Entry{{Path: "../etc/passwd", Type: tree.File}}, fallback.ErrUnsafeEntry},
		{"flipped byte", func() []byte { b := bytesOf(big); b[len(b)/2] ^= 0x40; return b }(), entriesOf(big), fallback.ErrCorrupt},
		{"cut short", bytesOf(big)[:big.Size/2], entriesOf(big), fallback.ErrCorrupt},
		{"not zstd", []byte("this is not a zstd frame at all"), entriesOf(big), fallback.ErrCorrupt},
		{"empty", nil, entriesOf(big), fallback.ErrMismatch},
		{"garbage after the entries", zst(append(mkTar(t, tarOpts{noEnd: true}, treg("a", 0o644, "x")), bytes.Repeat([]byte{'j'}, 600)...)),
			[]tree.Entry{{Path: "a", Type: tree.File, Mode: 0o644, Size: 1, SHA256: sha256.Sum256([]byte("x"))}}, fallback.ErrCorrupt},
		{"bomb: 64 MiB of zeros after the entries", zeroBomb(t, 64<<20),
			[]tree.Entry{{Path: "a", Type: tree.File, Mode: 0o644, Size: 1, SHA256: sha256.Sum256([]byte("x"))}}, fallback.ErrCorrupt},
		{"file larger than the list says (bound)", zst(mkTar(t, tarOpts{}, treg("a", 0o644, strings.Repeat("x", 3<<20)))),
			[]tree.Entry{{Path: "a", Type: tree.File, Mode: 0o644, Size: 1, SHA256: sha256.Sum256([]byte("x"))}}, fallback.ErrMismatch},
		{"hard link", zst(mkTar(t, tarOpts{}, tent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "a", Linkname: "b"}})), []tree.Entry{{Path: "a", Type: tree.File, Mode: 0o644}}, fallback.ErrMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var wrote int
			err := fallback.ReadFrame(context.Background(), bytes.NewReader(c.frame), c.entries, func(e tree.Entry, r io.Reader) error {
				wrote++
				_, err := io.Copy(io.Discard, r)
				return err
			})
			if !errors.Is(err, c.class) || classCount(err) != 1 {
				t.Fatalf("got %v (%d classes), want %v", err, classCount(err), c.class)
			}
			t.Logf("%v", err)
		})
	}
	// A canceled context stops it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := fallback.ReadFrame(ctx, bytes.NewReader(bytesOf(group)), entriesOf(group), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

// zeroBomb is a small zstd frame of a one-byte file followed by n zero
// bytes.
func zeroBomb(t *testing.T, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	enc, err := zstd.NewWriter(&b, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(mkTar(t, tarOpts{noEnd: true}, treg("a", 0o644, "x")))
	zero := make([]byte, 1<<20)
	for range n >> 20 {
		enc.Write(zero)
	}
	enc.Close()
	return b.Bytes()
}

// FuzzReadFrame feeds arbitrary frames to ReadFrame against a fixed list:
// no panic, and every error has exactly one class.
//
//	go test ./fallback -run '^$' -fuzz FuzzReadFrame -fuzztime 20s
func FuzzReadFrame(f *testing.F) {
	entries := []tree.Entry{
		{Path: "bin", Type: tree.Dir, Mode: 0o755},
		{Path: "bin/app", Type: tree.File, Mode: 0o755, Size: 10, SHA256: sha256.Sum256([]byte("#!/bin/sh\n"))},
		{Path: "bin/run", Type: tree.Symlink, Mode: 0o777, Target: "app"},
	}
	good := mkTar(f, tarOpts{noEnd: true}, tdir("bin/"), treg("bin/app", 0o755, "#!/bin/sh\n"), tsym("bin/run", "app"))
	f.Add(compress(f, fallback.TarZst, good))
	f.Add(compress(f, fallback.TarZst, append(good, make([]byte, 1024)...)))
	f.Add(compress(f, fallback.TarZst, good[:700]))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa0, 0x01, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := fallback.ReadFrame(context.Background(), bytes.NewReader(data), entries, func(e tree.Entry, r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if err != nil && classCount(err) != 1 {
			t.Fatalf("error with %d classes: %v", classCount(err), err)
		}
	})
}
