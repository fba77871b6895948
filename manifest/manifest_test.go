package manifest

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

// TestGolden pins the byte form of the fixture, its file list and its
// signature. `go test ./manifest -run TestGolden -update` rewrites them.
func TestGolden(t *testing.T) {
	priv, pub := testKeys(t)
	m := fixture(t)
	raw, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	flDoc, err := MarshalFileList(fixtureFileList())
	if err != nil {
		t.Fatal(err)
	}
	sig, err := Sign(priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		writeTestdata(t, "golden.json", raw)
		writeTestdata(t, "golden.json.minisig", sig)
		writeTestdata(t, "golden-files.json", flDoc)
	}
	for name, want := range map[string][]byte{"golden.json": raw, "golden.json.minisig": sig, "golden-files.json": flDoc} {
		if got := readTestdata(t, name); !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the code produces (run with -update if the change is intended)\n got %q\nwant %q", name, got, want)
		}
	}

	got, err := Open(raw, sig, pub, openOpts())
	if err != nil {
		t.Fatal(err)
	}
	if got.ContentHash() != m.ContentHash() {
		t.Error("ContentHash of parsed and built manifests differ")
	}
	again, err := Marshal(got)
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("Marshal(Open(x)) != x: %v", err)
	}
	got.hash, got.parsed = [32]byte{}, false
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Open(Marshal(m)) != m\n got %+v\nwant %+v", got, m)
	}
	comment, err := Verify(pub, raw, sig)
	if err != nil {
		t.Fatal(err)
	}
	wantComment := "deltaup manifest app:demo sequence:7 issued:2026-01-01T00:00:00Z sha256:"
	if !strings.HasPrefix(comment, wantComment) || !strings.Contains(comment, hexOf(m.ContentHash())) {
		t.Errorf("trusted comment %q", comment)
	}

	// The file list referenced by the beta release.
	beta, err := got.Release("1.2.0-rc.1")
	if err != nil {
		t.Fatal(err)
	}
	es, err := beta.Entries(readTestdata(t, "golden-files.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(es, fixtureFileList().Files) {
		t.Error("file list entries differ")
	}
	stable, _ := got.Release("1.1.0")
	if es, err := stable.Entries(nil); err != nil || len(es) != 6 {
		t.Errorf("inline Entries: %d, %v", len(es), err)
	}
}

func TestRoundTripVariants(t *testing.T) {
	priv, pub := testKeys(t)
	cases := map[string]func(m *Manifest){
		"as is":             func(m *Manifest) {},
		"no releases":       func(m *Manifest) { m.Releases = nil },
		"no patches":        func(m *Manifest) { m.Releases[1].Patches = nil },
		"build metadata":    func(m *Manifest) { renameVersion(m, 0, "1.0.0+build.5") },
		"non-UTC times":     func(m *Manifest) { m.Issued = m.Issued.In(time.FixedZone("X", 3600)) },
		"big sequence":      func(m *Manifest) { m.Sequence = MaxSafeInteger },
		"one channel":       func(m *Manifest) { m.Channels = m.Channels[:1]; m.Releases = m.Releases[:2] },
		"symlink mode zero": func(m *Manifest) { m.Releases[0].Files[2].Mode = 0 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			m := fixture(t)
			mutate(m)
			raw, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := Sign(priv, raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Open(raw, sig, pub, openOpts())
			if err != nil {
				t.Fatal(err)
			}
			again, err := Marshal(got)
			if err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("re-marshal differs: %v", err)
			}
			if got.ContentHash() != m.ContentHash() {
				t.Fatal("content hash differs")
			}
		})
	}
}

// renameVersion changes release i's version and every path and patch that
// names it.
func renameVersion(m *Manifest, i int, v string) {
	old := m.Releases[i].Version
	m.Releases[i].Version = v
	for ri := range m.Releases {
		r := &m.Releases[ri]
		for j := range r.Archives {
			r.Archives[j].Path = strings.ReplaceAll(r.Archives[j].Path, old, v)
		}
		for j := range r.Patches {
			p := &r.Patches[j]
			if p.From == old {
				p.From = v
			}
			if p.To == old {
				p.To = v
			}
			p.Path = strings.ReplaceAll(p.Path, old, v)
		}
	}
}

// TestValidate covers the rules of Validate one by one, on the fixture.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Manifest)
		msg    string
		is     error
	}{
		{"schema", func(m *Manifest) { m.Schema = 2 }, "schema 2", ErrSchema},
		{"app empty", func(m *Manifest) { m.App = "" }, "app", nil},
		{"app slash", func(m *Manifest) { m.App = "a/b" }, "app", nil},
		{"app leading dot", func(m *Manifest) { m.App = ".demo" }, "app", nil},
		{"no channels", func(m *Manifest) { m.Channels = nil }, "no channels", nil},
		{"duplicate channel", func(m *Manifest) { m.Channels = []string{"stable", "stable"} }, "declared twice", nil},
		{"sequence zero", func(m *Manifest) { m.Sequence = 0 }, "sequence 0", nil},
		{"sequence too big", func(m *Manifest) { m.Sequence = MaxSafeInteger + 1 }, "sequence", nil},
		{"no issued", func(m *Manifest) { m.Issued = time.Time{} }, "must both be set", nil},
		{"fractional time", func(m *Manifest) { m.Expires = m.Expires.Add(time.Millisecond) }, "whole seconds", nil},
		{"expires before issued", func(m *Manifest) { m.Expires = m.Issued }, "not after issued", nil},
		{"bad semver", func(m *Manifest) { m.Releases[0].Version = "1.0" }, "strict semantic version", nil},
		{"v prefix", func(m *Manifest) { m.Releases[0].Version = "v1.0.0" }, "strict semantic version", nil},
		{"leading zero", func(m *Manifest) { m.Releases[0].Version = "01.0.0" }, "strict semantic version", nil},
		{"huge prerelease number", func(m *Manifest) { m.Releases[0].Version = "1.0.0-99999999999999999999" }, "64 bits", nil},
		{"duplicate version", func(m *Manifest) { m.Releases[0].Version = "1.1.0" }, "unique", nil},
		{"duplicate up to build", func(m *Manifest) { renameVersion(m, 0, "1.1.0+other") }, "unique", nil},
		{"undeclared channel", func(m *Manifest) { m.Releases[0].Channel = "nightly" }, "not declared", nil},
		{"files and file list", func(m *Manifest) { m.Releases[2].Files = treeOf("x") }, "both", nil},
		{"no files", func(m *Manifest) { m.Releases[0].Files = nil }, "no files", nil},
		{"empty files", func(m *Manifest) { m.Releases[0].Files = []tree.Entry{} }, "no files", nil},
		{"tree digest", func(m *Manifest) { m.Releases[0].TreeDigest[0] ^= 1 }, "tree_digest", nil},
		{"unsorted files", func(m *Manifest) { f := m.Releases[0].Files; f[4], f[5] = f[5], f[4] }, "sorted", nil},
		{"duplicate file", func(m *Manifest) { f := m.Releases[0].Files; f[4] = f[3] }, "sorted", nil},
		{"missing parent", func(m *Manifest) { m.Releases[0].Files = m.Releases[0].Files[1:] }, "parent", nil},
		{"parent is a file", func(m *Manifest) {
			f := m.Releases[0].Files
			f[0] = fileEntry("bin", 0o644, "x")
		}, "parent", nil},
		{"case collision", func(m *Manifest) {
			r := &m.Releases[0]
			r.Files = append(r.Files, fileEntry("share/readme.txt", 0o644, "x"))
			tree.Sort(r.Files)
		}, "case is ignored", nil},
		{"unsafe entry", func(m *Manifest) { m.Releases[0].Files[0].Path = "../bin" }, "unsafe", tree.ErrUnsafePath},
		{"reserved name", func(m *Manifest) { m.Releases[0].Files[0].Path = "aux" }, "reserved", tree.ErrUnsafePath},
		{"mode bits", func(m *Manifest) { m.Releases[0].Files[1].Mode |= 0o4000 }, "0777", nil},
		{"negative size", func(m *Manifest) { m.Releases[0].Files[1].Size = -1 }, "size", nil},
		{"unhashed file", func(m *Manifest) { m.Releases[0].Files[1].SHA256 = [32]byte{} }, "no SHA-256", nil},
		{"dir with size", func(m *Manifest) { m.Releases[0].Files[0].Size = 3 }, "dir must", nil},
		{"link escape", func(m *Manifest) { m.Releases[0].Files[2].Target = "../../etc/passwd" }, "escapes", tree.ErrLinkEscape},
		{"link absolute", func(m *Manifest) { m.Releases[0].Files[2].Target = "/etc/passwd" }, "escapes", tree.ErrLinkEscape},
		{"link control", func(m *Manifest) { m.Releases[0].Files[2].Target = "de\nmo" }, "printable", nil},
		{"bad type", func(m *Manifest) { m.Releases[0].Files[0].Type = "fifo" }, "not file, dir or symlink", nil},
		{"no archives", func(m *Manifest) { m.Releases[0].Archives = nil }, "no full archive", nil},
		{"archive format", func(m *Manifest) { m.Releases[0].Archives[0].Format = "zip" }, "format", nil},
		{"two zst archives", func(m *Manifest) {
			a := &m.Releases[0].Archives[1]
			a.Format, a.Path = FormatTarZst, "other/demo-1.0.0.tar.zst"
		}, "second tar.zst", nil},
		{"archive suffix", func(m *Manifest) { m.Releases[0].Archives[0].Path = "demo-1.0.0.tar.gz" }, "does not end in .tar.zst", nil},
		{"archive without version", func(m *Manifest) { m.Releases[0].Archives[0].Path = "demo.tar.zst" }, "does not contain the version", nil},
		{"archive wrong version", func(m *Manifest) { m.Releases[0].Archives[0].Path = "demo-11.0.0.tar.zst" }, "does not contain the version", nil},
		{"archive version prefix", func(m *Manifest) { m.Releases[0].Archives[0].Path = "demo-1.0.01.tar.zst" }, "does not contain the version", nil},
		{"archive dotdot", func(m *Manifest) { m.Releases[0].Archives[0].Path = "../x/demo-1.0.0.tar.zst" }, "unsafe", tree.ErrUnsafePath},
		{"archive drive", func(m *Manifest) { m.Releases[0].Archives[0].Path = "C:/x/demo-1.0.0.tar.zst" }, "absolute", tree.ErrUnsafePath},
		{"archive absolute", func(m *Manifest) { m.Releases[0].Archives[0].Path = "/srv/demo-1.0.0.tar.zst" }, "absolute", tree.ErrUnsafePath},
		{"archive backslash", func(m *Manifest) { m.Releases[0].Archives[0].Path = `x\demo-1.0.0.tar.zst` }, "unsafe", tree.ErrUnsafePath},
		{"archive zero size", func(m *Manifest) { m.Releases[0].Archives[0].Size = 0 }, "size 0", nil},
		{"archive zero hash", func(m *Manifest) { m.Releases[0].Archives[0].SHA256 = [32]byte{} }, "all zero", nil},
		{"archive is manifest", func(m *Manifest) {
			m.Releases[0].Archives[0].Path = "manifest.json"
		}, "does not contain the version", nil},
		{"artifact path reused", func(m *Manifest) { m.Releases[1].Patches[0].Path = m.Releases[0].Archives[0].Path }, "does not contain the version", nil},
		{"artifact path reused 2", func(m *Manifest) {
			m.Releases[2].FileList.Path = m.Releases[2].Archives[0].Path
		}, "already used", nil},
		{"patch to other", func(m *Manifest) { m.Releases[1].Patches[0].To = "1.2.0-rc.1" }, "own version", nil},
		{"patch from unknown", func(m *Manifest) {
			p := &m.Releases[1].Patches[0]
			p.From, p.Path = "0.9.0", "patches/demo-0.9.0-1.1.0.dup"
		}, "not a release", nil},
		{"patch from build variant", func(m *Manifest) { m.Releases[1].Patches[0].From = "1.0.0+x" }, "not a release", nil},
		{"patch backwards", func(m *Manifest) {
			m.Releases[0].Patches = []Patch{patch("1.1.0", "1.0.0")}
		}, "lower than to", nil},
		{"patch duplicate", func(m *Manifest) {
			r := &m.Releases[1]
			p := r.Patches[0]
			p.Path = "other/" + p.Path
			r.Patches = append(r.Patches, p)
		}, "second patch", nil},
		{"patch path versions", func(m *Manifest) { m.Releases[1].Patches[0].Path = "patches/demo-1.1.0.dup" }, `contain the version "1.0.0"`, nil},
		{"file list too big", func(m *Manifest) { m.Releases[2].FileList.Size = MaxFileListSize + 1 }, "cap", nil},
		{"file list path", func(m *Manifest) { m.Releases[2].FileList.Path = "files.json" }, "does not contain the version", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fixture(t)
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			tt.mutate(m)
			err := m.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want ErrMalformed mentioning %q", err, tt.msg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want it to match %v", err, tt.is)
			}
			if _, err := Marshal(m); err == nil {
				t.Fatal("Marshal accepted an invalid manifest")
			}
		})
	}
}

func TestMarshalTooLarge(t *testing.T) {
	m := fixture(t)
	r := &m.Releases[0]
	r.Files = []tree.Entry{dirEntry("d")}
	for i := range 40000 {
		r.Files = append(r.Files, fileEntry("d/"+strings.Repeat("x", 40)+strconv.Itoa(i), 0o644, strconv.Itoa(i)))
	}
	tree.Sort(r.Files)
	r.TreeDigest = tree.Digest(r.Files)
	if _, err := Marshal(m); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestFileList(t *testing.T) {
	fl := fixtureFileList()
	doc, err := MarshalFileList(fl)
	if err != nil {
		t.Fatal(err)
	}
	ref := NewFileListRef(fixtureFileListPath, doc)
	got, err := OpenFileList(doc, ref)
	if err != nil || !reflect.DeepEqual(got, fl) {
		t.Fatalf("OpenFileList: %v", err)
	}

	flipped := bytes.Clone(doc)
	flipped[len(flipped)/2] ^= 1
	if _, err := OpenFileList(flipped, ref); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("flipped byte: %v, want ErrHashMismatch", err)
	}
	if _, err := OpenFileList(doc[:len(doc)-1], ref); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("truncated: %v, want ErrHashMismatch", err)
	}
	big := ref
	big.Size = MaxFileListSize + 1
	if _, err := OpenFileList(doc, big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversize reference: %v, want ErrTooLarge", err)
	}
	if _, err := OpenFileList(make([]byte, MaxFileListSize+1), ref); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversize document: %v, want ErrTooLarge", err)
	}

	// Documents that match their reference but are malformed.
	bad := map[string][]byte{
		"non-canonical": append(bytes.Clone(doc), '\n'),
		"unknown field": mutateJSON(t, doc, func(m map[string]any) { m["extra"] = true }),
		"schema":        mutateJSON(t, doc, func(m map[string]any) { m["schema"] = 2 }),
		"no files":      mutateJSON(t, doc, func(m map[string]any) { m["files"] = []any{} }),
		"unsafe path": mutateJSON(t, doc, func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["path"] = "../bin"
		}),
		"int mode": mutateJSON(t, doc, func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["mode"] = 493
		}),
		"mode 3 digits": mutateJSON(t, doc, func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["mode"] = "755"
		}),
		"dir with sha": mutateJSON(t, doc, func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["sha256"] = hexOf(sum("x"))
		}),
		"file without size": mutateJSON(t, doc, func(m map[string]any) {
			delete(m["files"].([]any)[1].(map[string]any), "size")
		}),
		"symlink with mode": mutateJSON(t, doc, func(m map[string]any) {
			m["files"].([]any)[2].(map[string]any)["mode"] = "0777"
		}),
		"Path key": mutateJSON(t, doc, func(m map[string]any) {
			e := m["files"].([]any)[0].(map[string]any)
			e["Path"] = e["path"]
			delete(e, "path")
		}),
	}
	for name, b := range bad {
		_, err := OpenFileList(b, NewFileListRef(fixtureFileListPath, b))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}

	// Entries: the document must be the release's.
	m := fixture(t)
	beta := &m.Releases[2]
	other := &FileList{Schema: 1, Version: "1.1.0", Files: fl.Files}
	otherDoc, _ := MarshalFileList(other)
	ref2 := NewFileListRef(beta.FileList.Path, otherDoc)
	beta.FileList = &ref2
	if _, err := beta.Entries(otherDoc); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "describes version 1.1.0") {
		t.Errorf("Entries of another version's list: %v", err)
	}
	m = fixture(t)
	beta = &m.Releases[2]
	beta.TreeDigest[0] ^= 1
	if _, err := beta.Entries(doc); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "tree digest") {
		t.Errorf("Entries with another digest: %v", err)
	}
}

func TestOpenChecks(t *testing.T) {
	priv, pub := testKeys(t)
	raw := readTestdata(t, "golden.json")
	sig := readTestdata(t, "golden.json.minisig")
	m, err := ParseUnverified(raw)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(o OpenOptions) error { _, err := Open(raw, sig, pub, o); return err }
	with := func(f func(o *OpenOptions)) OpenOptions { o := openOpts(); f(&o); return o }

	tests := []struct {
		name string
		opts OpenOptions
		want error
	}{
		{"baseline", openOpts(), nil},
		{"lower min sequence", with(func(o *OpenOptions) { o.MinSequence = 1 }), nil},
		{"zero min sequence", with(func(o *OpenOptions) { o.MinSequence = 0 }), nil},
		{"same hash", with(func(o *OpenOptions) { o.SeenHash = m.ContentHash() }), nil},
		{"other hash, lower sequence seen", with(func(o *OpenOptions) { o.MinSequence = 6; o.SeenHash = sum("x") }), nil},
		{"other hash, same sequence", with(func(o *OpenOptions) { o.SeenHash = sum("x") }), ErrRollback},
		{"rollback", with(func(o *OpenOptions) { o.MinSequence = 8 }), ErrRollback},
		{"wrong app", with(func(o *OpenOptions) { o.App = "Demo" }), ErrWrongApp},
		{"empty app", with(func(o *OpenOptions) { o.App = "" }), ErrWrongApp},
		{"expired exactly", with(func(o *OpenOptions) { o.Now = m.Expires }), ErrExpired},
		{"just before expiry", with(func(o *OpenOptions) { o.Now = m.Expires.Add(-time.Second) }), nil},
		{"issued in skew", with(func(o *OpenOptions) { o.Now = m.Issued.Add(-ClockSkew) }), nil},
		{"issued in future", with(func(o *OpenOptions) { o.Now = m.Issued.Add(-ClockSkew - time.Second) }), ErrExpired},
		{"max size", with(func(o *OpenOptions) { o.MaxSize = int64(len(raw)) }), nil},
		{"max size minus one", with(func(o *OpenOptions) { o.MaxSize = int64(len(raw)) - 1 }), ErrTooLarge},
	}
	for _, tt := range tests {
		err := ok(tt.opts)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}

	// Real clock: the golden manifest expires on 2027-01-01.
	if time.Now().Before(m.Expires) {
		if err := ok(with(func(o *OpenOptions) { o.Now = time.Time{} })); err != nil {
			t.Errorf("zero Now: %v", err)
		}
	}

	// Default cap: 4 MiB, checked before the signature.
	huge := make([]byte, MaxManifestSize+1)
	if _, err := Open(huge, sig, pub, openOpts()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge: %v", err)
	}
	if _, err := Open(raw, sig, PublicKey{}, openOpts()); !errors.Is(err, ErrSignature) {
		t.Errorf("zero key: %v", err)
	}
	if _, err := Sign(PrivateKey{}, raw); err == nil {
		t.Error("Sign with zero key")
	}
	if _, err := Sign(priv, append(bytes.Clone(raw), '\n')); !errors.Is(err, ErrMalformed) {
		t.Errorf("Sign of non-canonical bytes: %v", err)
	}
}
