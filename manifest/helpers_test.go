package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

var update = flag.Bool("update", false, "regenerate testdata/manifest: golden files and hostile cases (the test key is kept; it is generated only when missing)")

// testdataDir holds the committed fixtures.
const testdataDir = "../testdata/manifest"

// testNow is the clock of every fixture test: inside golden's validity.
var testNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func fileEntry(p string, mode uint32, content string) tree.Entry {
	return tree.Entry{Path: p, Type: tree.File, Mode: fs.FileMode(mode), Size: int64(len(content)), SHA256: sum(content)}
}

func dirEntry(p string) tree.Entry {
	return tree.Entry{Path: p, Type: tree.Dir, Mode: 0o755}
}

func linkEntry(p, target string) tree.Entry {
	return tree.Entry{Path: p, Type: tree.Symlink, Mode: 0o777, Target: target}
}

func art(path, content string) Artifact {
	return Artifact{Path: path, Size: int64(len(content)), SHA256: sum(content)}
}

func archives(v string) []Archive {
	return []Archive{
		{Format: FormatTarZst, Artifact: art("releases/"+v+"/demo-"+v+".tar.zst", "zst archive of "+v)},
		{Format: FormatTarGz, Artifact: art("releases/"+v+"/demo-"+v+".tar.gz", "gz archive of "+v)},
	}
}

func patch(from, to string) Patch {
	return Patch{From: from, To: to, Artifact: art("patches/demo-"+from+"-"+to+".dup", "patch "+from+" "+to)}
}

func treeOf(v string) []tree.Entry {
	return []tree.Entry{
		dirEntry("bin"),
		fileEntry("bin/demo", 0o755, "demo binary "+v),
		linkEntry("bin/demo-latest", "demo"),
		dirEntry("share"),
		fileEntry("share/README.txt", 0o644, "read me\n"),
		fileEntry("share/empty", 0o600, ""),
	}
}

// fixtureFileList is the file-list document of 1.2.0-rc.1 in the fixture.
func fixtureFileList() *FileList {
	files := treeOf("1.2.0-rc.1")
	files = append(files, fileEntry("share/ünïcödé 'x' & ~.txt", 0o644, "unicode\n"))
	tree.Sort(files)
	return &FileList{Schema: SchemaVersion, Version: "1.2.0-rc.1", Files: files}
}

const fixtureFileListPath = "releases/1.2.0-rc.1/demo-1.2.0-rc.1.files.json"

// fixture is the manifest of testdata/manifest/golden.json: two stable
// releases with inline trees and one beta prerelease whose tree is in a
// file-list document.
func fixture(t testing.TB) *Manifest {
	t.Helper()
	flDoc, err := MarshalFileList(fixtureFileList())
	if err != nil {
		t.Fatal(err)
	}
	rel := func(v, ch string, patches ...Patch) Release {
		files := treeOf(v)
		return Release{Version: v, Channel: ch, Files: files, TreeDigest: tree.Digest(files), Archives: archives(v), Patches: patches}
	}
	beta := Release{
		Version: "1.2.0-rc.1", Channel: "beta",
		TreeDigest: tree.Digest(fixtureFileList().Files),
		Archives:   archives("1.2.0-rc.1")[:1],
		Patches:    []Patch{patch("1.0.0", "1.2.0-rc.1"), patch("1.1.0", "1.2.0-rc.1")},
	}
	ref := NewFileListRef(fixtureFileListPath, flDoc)
	beta.FileList = &ref
	return &Manifest{
		Schema:   SchemaVersion,
		App:      "demo",
		Channels: []string{"stable", "beta"},
		Sequence: 7,
		Issued:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Expires:  time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		Releases: []Release{
			rel("1.0.0", "stable"),
			rel("1.1.0", "stable", patch("1.0.0", "1.1.0")),
			beta,
		},
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir, name))
	if err != nil {
		t.Fatalf("%v (run `go test ./manifest -run TestGolden -update` to create it)", err)
	}
	return b
}

func writeTestdata(t testing.TB, name string, data []byte) {
	t.Helper()
	p := filepath.Join(testdataDir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testKeyComment labels the committed test key.
const testKeyComment = "untrusted comment: TEST-ONLY deltaup manifest key, published in the repository: never sign a real release with it"

// testKeys returns the committed TEST-ONLY key pair, creating it under
// -update when it is missing.
func testKeys(t testing.TB) (PrivateKey, PublicKey) {
	t.Helper()
	keyPath := filepath.Join(testdataDir, "test.key")
	if _, err := os.Stat(keyPath); os.IsNotExist(err) && *update {
		pubFile, keyFile, err := GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		keyFile = append([]byte(testKeyComment+"\n"), keyFile[bytes.IndexByte(keyFile, '\n')+1:]...)
		writeTestdata(t, "test.key", keyFile)
		pubFile = append([]byte(testKeyComment+"\n"), pubFile[bytes.IndexByte(pubFile, '\n')+1:]...)
		writeTestdata(t, "test.pub", pubFile)
	}
	priv, err := ParsePrivateKey(readTestdata(t, "test.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(readTestdata(t, "test.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if !priv.Public().Equal(pub) {
		t.Fatal("test.key and test.pub do not match")
	}
	return priv, pub
}

// mutateJSON decodes canonical raw into generic values, lets f change them
// and re-encodes canonically.
func mutateJSON(t testing.TB, raw []byte, f func(m map[string]any)) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Canonicalize(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// relOf returns releases[i] of a generic manifest.
func relOf(m map[string]any, i int) map[string]any {
	return m["releases"].([]any)[i].(map[string]any)
}

func openOpts() OpenOptions {
	return OpenOptions{App: "demo", Now: testNow, MinSequence: 7}
}
