package manifest

import "testing"

// FuzzKeys: public and secret key files are read from disk (the client's
// pinned key, the publisher's secret key). Any bytes: no panic; a public
// key that parses round-trips through its text form.
func FuzzKeys(f *testing.F) {
	pub, key, err := GenerateKey(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pub)
	f.Add(key)
	f.Add([]byte("untrusted comment: minisign public key\nRWQ\n"))
	f.Add([]byte("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"))
	f.Fuzz(func(t *testing.T, text []byte) {
		if p, err := ParsePublicKey(text); err == nil {
			b, err := p.MarshalText()
			if err != nil {
				t.Fatalf("MarshalText of a parsed key: %v", err)
			}
			q, err := ParsePublicKey(b)
			if err != nil || !q.Equal(p) {
				t.Fatalf("round trip: %v", err)
			}
		}
		_, _ = ParsePrivateKey(text, nil)
	})
}

// FuzzFileList: a file-list document is checked against its reference
// (size, SHA-256) before it is parsed; any bytes that match their own
// reference must still parse strictly or fail cleanly, never panic.
func FuzzFileList(f *testing.F) {
	f.Add([]byte(`{"files":[{"mode":"0644","path":"a","sha256":"` + "00000000000000000000000000000000000000000000000000000000000000aa" + `","size":1,"type":"file"}],"schema":1,"version":"1.0.0"}`))
	f.Add([]byte(`{"files":[],"schema":1,"version":"1.0.0"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ref := NewFileListRef("filelists/x.json", raw)
		fl, err := OpenFileList(raw, ref)
		if err == nil {
			if err := fl.Validate(); err != nil {
				t.Fatalf("OpenFileList accepted a list that does not validate: %v", err)
			}
		}
	})
}
