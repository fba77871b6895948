package apply

import (
	"os"
	"path/filepath"
	"testing"
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
