package manifest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

// hundredReleases is a v2-style index of n releases of one channel, shaped
// as `mkdelta publish` writes them: file lists outlined, two archives,
// patches from the 3 closest lower versions plus milestones (i-4, i-8,
// i-16, ... when the distance divides i), with sizes of a prettier-sized
// tree (archives of 7 digits, patches of 5).
func hundredReleases(t testing.TB, n int) (*Manifest, []byte) {
	t.Helper()
	m := &Manifest{Schema: SchemaVersion, App: "prettier", Channels: []string{"stable"}, Sequence: uint64(n),
		Issued: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Expires: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	ver := func(i int) string { return fmt.Sprintf("3.%d.%d", i/10, i%10) }
	for i := range n {
		v := ver(i)
		files := []tree.Entry{fileEntry("index.js", 0o644, v)}
		fl := FileListRef(art("filelists/prettier-"+v+".files.json", "files "+v))
		r := Release{Version: v, Channel: "stable", TreeDigest: tree.Digest(files), FileList: &fl}
		r.Archives = []Archive{
			{Format: FormatTarZst, Artifact: Artifact{Path: "archives/prettier-" + v + ".tar.zst", Size: 2_100_000 + int64(i), SHA256: sum("zst" + v)}},
			{Format: FormatTarGz, Artifact: Artifact{Path: "archives/prettier-" + v + ".tar.gz", Size: 2_600_000 + int64(i), SHA256: sum("gz" + v)}},
		}
		bases := map[int]bool{}
		for d := 1; d <= 3 && i-d >= 0; d++ {
			bases[i-d] = true
		}
		for d := 4; d <= i; d *= 2 {
			if i%d == 0 {
				bases[i-d] = true
			}
		}
		for _, b := range slices.Sorted(func(yield func(int) bool) {
			for b := range bases {
				if !yield(b) {
					return
				}
			}
		}) {
			from := ver(b)
			r.Patches = append(r.Patches, Patch{From: from, To: v, Artifact: Artifact{Path: "patches/prettier-" + from + "-to-" + v + ".dupb", Size: 40_000 + int64(i*7+b), SHA256: sum(from + v)}})
		}
		m.Releases = append(m.Releases, r)
	}
	raw, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, raw
}

// TestReleaseIndexSize measures the compact index of 100 releases: the
// target of issue 12 is at most 300 bytes of growth per release.
func TestReleaseIndexSize(t *testing.T) {
	m99, raw99 := hundredReleases(t, 99)
	m, raw := hundredReleases(t, 100)
	x99, enc99, _, err := BuildReleaseIndex(m99, raw99)
	if err != nil {
		t.Fatal(err)
	}
	x, enc, docs, err := BuildReleaseIndex(m, raw)
	if err != nil {
		t.Fatal(err)
	}
	edges := 0
	for _, r := range m.Releases {
		edges += len(r.Patches)
	}
	docBytes := 0
	for _, d := range docs {
		docBytes += len(d)
	}
	per := float64(len(enc)) / 100
	t.Logf("100 releases, %.2f patches per release: full index %d bytes (%.0f per release); compact index %d bytes (%.1f per release, the 100th added %d); release documents %d bytes in all (%.0f each)",
		float64(edges)/100, len(raw), float64(len(raw))/100, len(enc), per, len(enc)-len(enc99), docBytes, float64(docBytes)/100)
	if per > 300 || len(enc)-len(enc99) > 300 {
		t.Fatalf("compact index: %.1f bytes per release (the 100th: %d), the target is at most 300", per, len(enc)-len(enc99))
	}
	d, err := MakeReleaseDelta(x99, x, nil, docs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("delta from index 99 to 100 (carrying the document of the new release): %d bytes", len(d))
	back, err := ExpandReleaseIndex(x, docs)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != string(raw) {
		t.Fatal("the compact index and its documents do not rebuild the full index")
	}
}

func TestReleaseIndexRoundTrip(t *testing.T) {
	m := fixture(t)
	raw, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	x, enc, docs, err := BuildReleaseIndex(m, raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != len(m.Releases) {
		t.Fatalf("%d documents for %d releases", len(docs), len(m.Releases))
	}
	y, err := ParseReleaseIndex(enc)
	if err != nil {
		t.Fatal(err)
	}
	if y.ContentHash() != sha256.Sum256(enc) || y.Manifest != x.Manifest || len(y.Releases) != 3 {
		t.Fatalf("parsed index differs: %+v", y)
	}
	back, err := ExpandReleaseIndex(y, docs)
	if err != nil || string(back) != string(raw) {
		t.Fatalf("ExpandReleaseIndex = %v; same bytes %v", err, string(back) == string(raw))
	}
	// A document missing, or one of another release in its place.
	for p := range docs {
		less := map[string][]byte{}
		for q, d := range docs {
			if q != p {
				less[q] = d
			}
		}
		if _, err := ExpandReleaseIndex(y, less); !errors.Is(err, ErrNotFound) {
			t.Fatalf("without %s: %v, want ErrNotFound", p, err)
		}
	}
}

func TestOpenReleaseIndex(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	root, _ := ParseRoot(mustMarshalRoot(t, rootOf(1, map[string][]PrivateKey{RoleRoot: {a}, RoleRelease: {a, b, c}, RoleTimestamp: {a}}, map[string]int{RoleRelease: 2})))
	m := fixture(t)
	raw, _ := Marshal(m)
	_, enc, _, err := BuildReleaseIndex(m, raw)
	if err != nil {
		t.Fatal(err)
	}
	other := fixture(t)
	other.Releases = other.Releases[:2]
	otherRaw, _ := Marshal(other)
	_, otherEnc, _, _ := BuildReleaseIndex(other, otherRaw)
	ref := IndexRef{Sequence: m.Sequence, Size: int64(len(raw)), SHA256: sha256.Sum256(raw)}
	opts := OpenOptions{App: "demo", Now: testNow}
	sign := func(k PrivateKey, b []byte) ([]byte, error) { return signBytes(k, b, "x"), nil }
	tests := []struct {
		name    string
		raw     []byte
		ref     IndexRef
		opts    OpenOptions
		signers []PrivateKey
		want    error
	}{
		{"two of three", enc, ref, opts, []PrivateKey{a, c}, nil},
		{"one stolen key", enc, ref, opts, []PrivateKey{b}, ErrSignature},
		{"projection of another index (platform, fork)", otherEnc, ref, opts, []PrivateKey{a, b}, ErrHashMismatch},
		{"sequence not the timestamp's", enc, IndexRef{Sequence: 8, Size: ref.Size, SHA256: ref.SHA256}, opts, []PrivateKey{a, b}, ErrHashMismatch},
		{"wrong app", enc, ref, OpenOptions{App: "other", Now: testNow}, []PrivateKey{a, b}, ErrWrongApp},
		{"expired", enc, ref, OpenOptions{App: "demo", Now: m.Expires}, []PrivateKey{a, b}, ErrExpired},
		{"rollback", enc, ref, OpenOptions{App: "demo", Now: testNow, MinSequence: 8}, []PrivateKey{a, b}, ErrRollback},
		{"not canonical", append(slices.Clone(enc), ' '), ref, opts, []PrivateKey{a, b}, ErrMalformed},
		{"too large", make([]byte, MaxReleaseIndexSize+1), ref, opts, []PrivateKey{a, b}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenReleaseIndex(tc.raw, signAll(t, tc.raw, sign, tc.signers...), root, tc.ref, tc.opts)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("OpenReleaseIndex = %v, want %v", err, tc.want)
			}
		})
	}
	// SignReleaseIndex signs only a compact index.
	if _, err := SignReleaseIndex(a, raw); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SignReleaseIndex(full index) = %v, want ErrMalformed", err)
	}
	sig, err := SignReleaseIndex(a, enc)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Verify(a.Public(), enc, sig); err != nil || !strings.HasPrefix(c, "deltaup releases app:demo sequence:7") {
		t.Fatalf("Verify = %q, %v", c, err)
	}
}

func TestReleaseIndexHostile(t *testing.T) {
	m := fixture(t)
	raw, _ := Marshal(m)
	_, enc, _, _ := BuildReleaseIndex(m, raw)
	rel := func(mm map[string]any) map[string]any { return mm["releases"].([]any)[1].(map[string]any) }
	tests := []struct {
		name string
		f    func(mm map[string]any)
		want error
	}{
		{"unknown member", func(mm map[string]any) { mm["extra"] = 1 }, ErrMalformed},
		{"schema 1", func(mm map[string]any) { mm["schema"] = 1 }, ErrSchema},
		{"wrong type", func(mm map[string]any) { mm["type"] = "timestamp" }, ErrMalformed},
		{"hex digest", func(mm map[string]any) { rel(mm)["tree_digest"] = strings.Repeat("ab", 32) }, ErrMalformed},
		{"padded base64", func(mm map[string]any) { rel(mm)["tree_digest"] = rel(mm)["tree_digest"].(string) + "=" }, ErrMalformed},
		{"patch from a missing version", func(mm map[string]any) { rel(mm)["patches"] = map[string]any{"0.9.0": 10} }, ErrMalformed},
		{"patch from a higher version", func(mm map[string]any) { rel(mm)["patches"] = map[string]any{"1.2.0-rc.1": 10} }, ErrMalformed},
		{"patch of size 0", func(mm map[string]any) { rel(mm)["patches"] = map[string]any{"1.0.0": 0} }, ErrMalformed},
		{"full size 0", func(mm map[string]any) { rel(mm)["full"] = 0 }, ErrMalformed},
		{"document too large", func(mm map[string]any) { rel(mm)["doc"].(map[string]any)["size"] = MaxReleaseDocSize + 1 }, ErrMalformed},
		{"undeclared channel", func(mm map[string]any) { rel(mm)["channel"] = "nightly" }, ErrMalformed},
		{"duplicate version", func(mm map[string]any) { rel(mm)["version"] = "1.0.0+b" }, ErrMalformed},
		{"patches missing", func(mm map[string]any) { delete(rel(mm), "patches") }, ErrMalformed},
		{"manifest reference zero", func(mm map[string]any) { mm["manifest"].(map[string]any)["size"] = 0 }, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseReleaseIndex(mutateJSON(t, enc, tc.f)); !errors.Is(err, tc.want) {
				t.Fatalf("ParseReleaseIndex = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenReleaseDoc(t *testing.T) {
	m := fixture(t)
	raw, _ := Marshal(m)
	x, _, docs, _ := BuildReleaseIndex(m, raw)
	e := x.Entry("1.2.0-rc.1")
	doc := docs[ReleaseDocPath(e.Version, e.Doc.SHA256)]
	if r, err := OpenReleaseDoc(doc, e, "demo"); err != nil || r.FileList == nil || len(r.Patches) != 2 {
		t.Fatalf("OpenReleaseDoc = %+v, %v", r, err)
	}
	// A document altered and re-pinned: the hash passes, the checks after it must not.
	repin := func(f func(mm map[string]any)) ([]byte, *ReleaseEntry) {
		b := mutateJSON(t, doc, f)
		e2 := *e
		e2.Doc = DocRef{Size: int64(len(b)), SHA256: sha256.Sum256(b)}
		return b, &e2
	}
	r := func(mm map[string]any) map[string]any { return mm["release"].(map[string]any) }
	tests := []struct {
		name string
		f    func(mm map[string]any)
		app  string
		want error
	}{
		{"wrong app", func(mm map[string]any) { mm["app"] = "other" }, "demo", ErrWrongApp},
		{"other version", func(mm map[string]any) { r(mm)["version"] = "1.2.0-rc.2" }, "demo", ErrMalformed},
		{"other channel", func(mm map[string]any) { r(mm)["channel"] = "stable" }, "demo", ErrMalformed},
		{"patch dropped", func(mm map[string]any) { r(mm)["patches"] = r(mm)["patches"].([]any)[:1] }, "demo", ErrMalformed},
		{"unsafe path", func(mm map[string]any) {
			r(mm)["archives"].([]any)[0].(map[string]any)["path"] = "../1.2.0-rc.1.tar.zst"
		}, "demo", ErrMalformed},
		{"patch into another version", func(mm map[string]any) {
			r(mm)["patches"].([]any)[0].(map[string]any)["to"] = "1.1.0"
		}, "demo", ErrMalformed},
		{"unknown member", func(mm map[string]any) { mm["x"] = 1 }, "demo", ErrMalformed},
		{"type index", func(mm map[string]any) { mm["type"] = "releases" }, "demo", ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, e2 := repin(tc.f)
			if _, err := OpenReleaseDoc(b, e2, tc.app); !errors.Is(err, tc.want) {
				t.Fatalf("OpenReleaseDoc = %v, want %v", err, tc.want)
			}
		})
	}
	// Other bytes than pinned: refused before parsing.
	if _, err := OpenReleaseDoc(append(slices.Clone(doc[:len(doc)-1]), ' '), e, "demo"); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("altered document: %v, want ErrHashMismatch", err)
	}
	if _, err := OpenReleaseDoc(docs[ReleaseDocPath("1.1.0", x.Entry("1.1.0").Doc.SHA256)], e, "demo"); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("another release's document: %v, want ErrHashMismatch", err)
	}
}

// deltaPair returns the compact indexes of the fixture without its last
// release (sequence 6) and with it (7), the latter's bytes and documents.
func deltaPair(t testing.TB) (xb, x *ReleaseIndex, enc []byte, docs map[string][]byte) {
	t.Helper()
	m, base := fixture(t), fixture(t)
	base.Releases, base.Sequence = base.Releases[:2], 6
	rawB, _ := Marshal(base)
	raw, _ := Marshal(m)
	xb, _, _, err := BuildReleaseIndex(base, rawB)
	if err != nil {
		t.Fatal(err)
	}
	if x, enc, docs, err = BuildReleaseIndex(m, raw); err != nil {
		t.Fatal(err)
	}
	return xb, x, enc, docs
}

func TestReleaseDelta(t *testing.T) {
	xb, x, enc, docs := deltaPair(t)
	if _, err := MakeReleaseDelta(xb, x, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a delta without the new release's document: %v", err)
	}
	d, err := MakeReleaseDelta(xb, x, map[string][]byte{"0123456789ABCDEF": []byte("sig")}, docs)
	if err != nil {
		t.Fatal(err)
	}
	pd, err := ParseReleaseDelta(d)
	if err != nil {
		t.Fatal(err)
	}
	if pd.Keep != 2 || len(pd.Index.Releases) != 1 || string(pd.Sigs["0123456789ABCDEF"]) != "sig" || len(pd.Docs) != 1 {
		t.Fatalf("delta keeps %d, appends %d", pd.Keep, len(pd.Index.Releases))
	}
	out, err := ApplyReleaseDelta(xb, pd)
	if err != nil || string(out) != string(enc) {
		t.Fatalf("ApplyReleaseDelta = %v, same %v", err, string(out) == string(enc))
	}
	other := *xb
	other.Sequence = 5
	if _, err := ApplyReleaseDelta(&other, pd); !errors.Is(err, ErrMalformed) {
		t.Fatalf("delta on another base: %v", err)
	}
	for name, b := range map[string][]byte{
		"not canonical": append(slices.Clone(d), ' '),
		"wrong type":    mutateJSON(t, d, func(mm map[string]any) { mm["type"] = "delta" }),
		"negative keep": mutateJSON(t, d, func(mm map[string]any) { mm["keep"] = -1 }),
		"bad key id":    mutateJSON(t, d, func(mm map[string]any) { mm["sigs"] = map[string]any{"x": "y"} }),
		"entries inline": mutateJSON(t, d, func(mm map[string]any) {
			mm["index"].(map[string]any)["releases"] = []any{map[string]any{"version": "1.2.0-rc.1"}}
		}),
		"no docs":         mutateJSON(t, d, func(mm map[string]any) { delete(mm, "docs") }),
		"document broken": mutateJSON(t, d, func(mm map[string]any) { mm["docs"].([]any)[0].(map[string]any)["type"] = "root" }),
	} {
		if _, err := ParseReleaseDelta(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzReleaseIndex: no panic; an accepted compact index re-encodes to the
// same bytes and validates.
//
//	go test ./manifest -run '^$' -fuzz FuzzReleaseIndex -fuzztime 20s
func FuzzReleaseIndex(f *testing.F) {
	m := fixture(f)
	raw, _ := Marshal(m)
	_, enc, _, err := BuildReleaseIndex(m, raw)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte(`{"schema":2,"type":"releases"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		x, err := ParseReleaseIndex(raw)
		if err != nil {
			return
		}
		enc, err := MarshalReleaseIndex(x)
		if err != nil || string(enc) != string(raw) {
			t.Fatalf("accepted index does not re-encode: %v", err)
		}
	})
}

// FuzzReleaseDoc: no panic; an accepted release document re-encodes to the
// same bytes.
func FuzzReleaseDoc(f *testing.F) {
	m := fixture(f)
	raw, _ := Marshal(m)
	_, _, docs, err := BuildReleaseIndex(m, raw)
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range docs {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, app, err := ParseReleaseDoc(raw)
		if err != nil {
			return
		}
		enc, err := releaseDocBytes(app, r)
		if err != nil || string(enc) != string(raw) {
			t.Fatalf("accepted document does not re-encode: %v", err)
		}
	})
}

// FuzzReleaseDelta: no panic; a delta that applies gives a valid index.
func FuzzReleaseDelta(f *testing.F) {
	xb, x, _, docs := deltaPair(f)
	d, err := MakeReleaseDelta(xb, x, nil, docs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(d)
	f.Fuzz(func(t *testing.T, raw []byte) {
		pd, err := ParseReleaseDelta(raw)
		if err != nil {
			return
		}
		if out, err := ApplyReleaseDelta(xb, pd); err == nil {
			if _, err := ParseReleaseIndex(out); err != nil {
				t.Fatalf("ApplyReleaseDelta produced an index that does not parse: %v", err)
			}
		}
	})
}
