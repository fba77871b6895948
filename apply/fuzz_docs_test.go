package apply

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/deltaup/deltaup/manifest"
)

// FuzzConfigFile: deltaup.json ships inside the app directory, so the
// client reads it before anything is verified. Any bytes: no panic; a file
// that loads merges into a Config without panicking.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte(`{"app":"demo","servers":["https://u.example.com/demo/"],"pubkey":"deltaup.pub","channel":"stable"}`))
	f.Add([]byte(`{"app":"demo","relaunch":["bin/app","--flag"],"limit_rate":125000,"backup_dir":"../b"}`))
	f.Add([]byte(`{"app":1}`))
	f.Add([]byte(`{"pubkey":"RWQ"}`))
	f.Add([]byte("\xff\xfe{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfigFileName), data, 0o644); err != nil {
			t.Fatal(err)
		}
		fc, err := LoadConfigFile(dir)
		if err != nil {
			return
		}
		var c Config
		_ = fc.Merge(&c)
	})
}

// FuzzTrustedComment: the sequence number is read from an unverified
// signature file to find manifests/N.json after a torn publish. Any bytes:
// no panic, and a sequence is only ever returned in 1..2^53-1.
func FuzzTrustedComment(f *testing.F) {
	f.Add([]byte("untrusted comment: x\nRWQ\ntrusted comment: deltaup manifest app:demo sequence:7 issued:2026-01-01T00:00:00Z sha256:ab\nxx\n"), "demo")
	f.Add([]byte("trusted comment: deltaup manifest app:demo sequence:99999999999999999999\n"), "demo")
	f.Add([]byte("trusted comment: deltaup manifest app:other sequence:1\n"), "demo")
	f.Fuzz(func(t *testing.T, sig []byte, app string) {
		if seq, ok := commentSequence(sig, app); ok && (seq == 0 || seq > 1<<53-1) {
			t.Fatalf("sequence %d accepted", seq)
		}
	})
}

// FuzzSidecar: the .part.json sidecar beside a partial download is read
// back after a crash, and anything may have happened to it. Any bytes: no
// panic; the part is resumed only when the sidecar names this artifact
// (size and SHA-256) and the part is no longer than the artifact, otherwise
// both files are discarded.
func FuzzSidecar(f *testing.F) {
	art := manifest.Artifact{Path: "p/a.dupb", Size: 1000}
	art.SHA256[0] = 0xab
	sum := hex.EncodeToString(art.SHA256[:])
	f.Add([]byte(`{"url":"http://m/p/a.dupb","etag":"\"x\"","size":1000,"sha256":"`+sum+`"}`), 500)
	f.Add([]byte(`{"size":1000,"sha256":"`+sum+`"}`), 1001)
	f.Add([]byte(`{"size":999,"sha256":"`+sum+`"}`), 10)
	f.Add([]byte(`{"size":1000,"sha256":"AB`+sum[2:]+`"}`), 10)
	f.Add([]byte(`{"size":1e3,"sha256":null}`), 0)
	f.Add([]byte("\x00garbage"), 3)
	f.Fuzz(func(t *testing.T, side []byte, partLen int) {
		if partLen < 0 || partLen > 4096 {
			return
		}
		dir := t.TempDir()
		dest := filepath.Join(dir, "a.dupb")
		if err := os.WriteFile(dest+SidecarSuffix, side, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dest+PartSuffix, make([]byte, partLen), 0o644); err != nil {
			t.Fatal(err)
		}
		fs := &fetchState{d: &Downloader{}, art: art, dest: dest, part: dest + PartSuffix, side: dest + SidecarSuffix, sum: sum}
		sc, have, err := fs.resumable()
		if err != nil {
			t.Fatal(err)
		}
		if sc == nil {
			if have != 0 || dlExists(t, fs.part) || dlExists(t, fs.side) {
				t.Fatalf("untrusted part kept: have %d", have)
			}
			return
		}
		if sc.Size != art.Size || sc.SHA256 != sum || have != int64(partLen) || have > art.Size {
			t.Fatalf("resumed from a sidecar that does not name the artifact: %+v, have %d", sc, have)
		}
	})
}
