package manifest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/internal/tree"
)

// fiRelease is the release the test index describes: 1.1.0 of the fixture
// tree (6 entries), with a tar.zst archive.
func fiRelease() *Release {
	es := treeOf("1.1.0")
	return &Release{Version: "1.1.0", Channel: "stable", Files: es, TreeDigest: tree.Digest(es), Archives: archives("1.1.0")}
}

// fiIndex is a valid index of fiRelease: three frames over a 600-byte
// archive, 1 + 2 + 3 entries.
func fiIndex() *FrameIndex {
	return &FrameIndex{
		Schema: SchemaVersion, App: "demo", Version: "1.1.0", TreeDigest: fiRelease().TreeDigest,
		Archive: Artifact{Path: "archives/demo-1.1.0.frames.tar.zst", Size: 600, SHA256: sum("archive")},
		Frames: []IndexFrame{
			{Entries: 1, Size: 100, SHA256: sum("f0")},
			{Entries: 2, Size: 200, SHA256: sum("f1")},
			{Entries: 3, Size: 300, SHA256: sum("f2")},
		},
	}
}

func TestFrameIndexRoundTrip(t *testing.T) {
	priv, pub := testKeys(t)
	x := fiIndex()
	raw, err := MarshalFrameIndex(x)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", raw)
	if !bytes.HasPrefix(raw, []byte(`{"app":"demo","archive":{"path":"archives/demo-1.1.0.frames.tar.zst","sha256":"`)) || CheckCanonical(raw) != nil {
		t.Errorf("not the expected canonical form: %s", raw)
	}
	sig, err := SignFrameIndex(priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sig, []byte("trusted comment: deltaup frame-index app:demo version:1.1.0 sha256:")) {
		t.Errorf("trusted comment: %s", sig)
	}
	got, err := OpenFrameIndex(raw, sig, pub, "demo", fiRelease(), 6)
	if err != nil {
		t.Fatal(err)
	}
	again, err := MarshalFrameIndex(got)
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("re-marshals to %s, %v", again, err)
	}
	spans := got.Spans()
	if spans[0].Offset != 0 || spans[1].Offset != 100 || spans[2].Offset != 300 || spans[2].First != 3 || spans[1].First != 1 {
		t.Errorf("spans %+v", spans)
	}
	if p, ok := FrameIndexPath(fiRelease()); !ok || p != "releases/1.1.0/demo-1.1.0.index.json" {
		t.Errorf("FrameIndexPath = %q, %v", p, ok)
	}
	if _, ok := FrameIndexPath(&Release{Archives: []Archive{{Format: FormatTarGz}}}); ok {
		t.Error("FrameIndexPath of a release without tar.zst")
	}
}

// TestFrameIndexHostile: indexes that lie about the archive, the release
// or themselves are refused, each with its class, before anything uses
// them.
func TestFrameIndexHostile(t *testing.T) {
	priv, pub := testKeys(t)
	_, otherKey, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParsePrivateKey(otherKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	// encode marshals without validating (the hostile documents a buggy
	// or malicious publisher could sign).
	encode := func(x *FrameIndex) []byte {
		b, err := encodeJSON(x.wire(), MaxFrameIndexSize)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	edit := func(f func(x *FrameIndex)) []byte {
		x := fiIndex()
		f(x)
		return encode(x)
	}
	good := encode(fiIndex())
	cases := []struct {
		name    string
		raw     []byte
		sig     []byte // nil: signed with the test key
		entries int    // 0: 6
		app     string // "": demo
		class   error
	}{
		{"frame past the end", edit(func(x *FrameIndex) { x.Frames[2].Size = 301 }), nil, 0, "", ErrMalformed},
		{"frames short of the end", edit(func(x *FrameIndex) { x.Frames[2].Size = 299 }), nil, 0, "", ErrMalformed},
		{"overlapping frames (one counted twice)", edit(func(x *FrameIndex) { x.Frames = append(x.Frames, x.Frames[2]) }), nil, 0, "", ErrMalformed},
		{"huge frame size", edit(func(x *FrameIndex) { x.Frames[0].Size = 1 << 52 }), nil, 0, "", ErrMalformed},
		{"negative frame size", edit(func(x *FrameIndex) { x.Frames[0].Size, x.Frames[1].Size = -100, 400 }), nil, 0, "", ErrMalformed},
		{"empty frame", edit(func(x *FrameIndex) { x.Frames[0].Size, x.Frames[1].Size = 0, 300 }), nil, 0, "", ErrMalformed},
		{"frame without entries", edit(func(x *FrameIndex) { x.Frames[0].Entries, x.Frames[1].Entries = 0, 3 }), nil, 0, "", ErrMalformed},
		{"zero frame hash", edit(func(x *FrameIndex) { x.Frames[1].SHA256 = [32]byte{} }), nil, 0, "", ErrMalformed},
		{"no frames", edit(func(x *FrameIndex) { x.Frames = nil }), nil, 0, "", ErrMalformed},
		{"more entries than the release", good, nil, 5, "", ErrMalformed},
		{"fewer entries than the release", good, nil, 7, "", ErrMalformed},
		{"another release", edit(func(x *FrameIndex) { x.Version, x.Archive.Path = "1.0.0", "archives/demo-1.0.0.tar.zst" }), nil, 0, "", ErrMalformed},
		{"another tree", edit(func(x *FrameIndex) { x.TreeDigest[0] ^= 1 }), nil, 0, "", ErrMalformed},
		{"another app", good, nil, 0, "other", ErrMalformed},
		{"archive path without the version", edit(func(x *FrameIndex) { x.Archive.Path = "archives/demo.tar.zst" }), nil, 0, "", ErrMalformed},
		{"archive path not tar.zst", edit(func(x *FrameIndex) { x.Archive.Path = "archives/demo-1.1.0.tar.gz" }), nil, 0, "", ErrMalformed},
		{"archive path escaping", edit(func(x *FrameIndex) { x.Archive.Path = "../demo-1.1.0.tar.zst" }), nil, 0, "", ErrMalformed},
		{"schema 2", edit(func(x *FrameIndex) { x.Schema = 2 }), nil, 0, "", ErrSchema},
		{"unknown member", bytes.Replace(good, []byte(`"schema":1`), []byte(`"schema":1,"secret":1`), 1), nil, 0, "", ErrMalformed},
		{"missing member", bytes.Replace(good, []byte(`,"version":"1.1.0"`), nil, 1), nil, 0, "", ErrMalformed},
		{"not canonical", bytes.Replace(good, []byte(`{"app"`), []byte(`{ "app"`), 1), nil, 0, "", ErrMalformed},
		{"uppercase hash", bytes.Replace(good, []byte(`"sha256":"`+hexOf(sum("f0"))), []byte(`"sha256":"`+strings.ToUpper(hexOf(sum("f0")))), 1), nil, 0, "", ErrMalformed},
		{"oversized", append(bytes.Repeat([]byte(" "), MaxFrameIndexSize), good...), nil, 0, "", ErrTooLarge},
		{"signed by another key", good, signBytes(other, good, "x"), 0, "", ErrSignature},
		{"signature of other bytes", good, signBytes(priv, append([]byte{' '}, good...), "x"), 0, "", ErrSignature},
		{"no signature", good, []byte{}, 0, "", ErrSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sig := c.sig
			if sig == nil {
				sig = signBytes(priv, c.raw, "test")
			}
			entries, app := c.entries, c.app
			if entries == 0 {
				entries = 6
			}
			if app == "" {
				app = "demo"
			}
			x, err := OpenFrameIndex(c.raw, sig, pub, app, fiRelease(), entries)
			if !errors.Is(err, c.class) || x != nil {
				t.Fatalf("got %v, %v; want %v", x, err, c.class)
			}
			t.Logf("%v", err)
		})
	}
	// The good one passes with the same harness.
	if _, err := OpenFrameIndex(good, signBytes(priv, good, "test"), pub, "demo", fiRelease(), 6); err != nil {
		t.Fatalf("the unedited index: %v", err)
	}
	// A publisher cannot sign an invalid index.
	if _, err := SignFrameIndex(priv, edit(func(x *FrameIndex) { x.Frames[2].Size = 301 })); !errors.Is(err, ErrMalformed) {
		t.Errorf("SignFrameIndex of an invalid index: %v", err)
	}
	if _, err := MarshalFrameIndex(&FrameIndex{Schema: 1}); !errors.Is(err, ErrMalformed) {
		t.Errorf("MarshalFrameIndex of an empty index: %v", err)
	}
}

// FuzzParseFrameIndex: no panic; an accepted index is valid, canonical
// and re-marshals to the same bytes; every error has exactly one class.
//
//	go test ./manifest -run '^$' -fuzz FuzzParseFrameIndex -fuzztime 20s
func FuzzParseFrameIndex(f *testing.F) {
	good, err := MarshalFrameIndex(fiIndex())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"size":300`), []byte(`"size":301`), 1))
	f.Add([]byte(`{"schema":1}`))
	f.Add([]byte(`{"app":"a","archive":{"path":"a-1.0.0.tar.zst","sha256":"` + strings.Repeat("ab", 32) + `","size":1},"frames":[],"schema":1,"tree_digest":"` + strings.Repeat("0", 64) + `","version":"1.0.0"}`))
	classes := []error{ErrTooLarge, ErrMalformed}
	f.Fuzz(func(t *testing.T, raw []byte) {
		x, err := ParseFrameIndex(raw)
		if err != nil {
			n := 0
			for _, c := range classes {
				if errors.Is(err, c) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error with %d classes: %v", n, err)
			}
			return
		}
		if err := x.Validate(); err != nil {
			t.Fatalf("accepted an invalid index: %v", err)
		}
		out, err := MarshalFrameIndex(x)
		if err != nil || !bytes.Equal(out, raw) {
			t.Fatalf("accepted %q, re-marshals to %q, %v", raw, out, err)
		}
		var end int64
		for _, s := range x.Spans() {
			if s.Offset != end || s.Size < 1 {
				t.Fatalf("span %+v at %d", s, end)
			}
			end += s.Size
		}
		if end != x.Archive.Size {
			t.Fatalf("spans end at %d, archive %d", end, x.Archive.Size)
		}
	})
}
