package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"
)

// cm2Pairs are (old, new) pairs whose edit scripts have non-zero
// difference bytes of every kind: moved code (the same value over the same
// old byte, what cm2 adds a decision for), random changes and text.
func cm2Pairs() map[string][2][]byte {
	code := codeLike(7, 20000)
	r := rand.New(rand.NewPCG(3, 4))
	// Table-like data: records of seven random bytes and a marker byte,
	// 0x10 and 0x20 in turn, that the new version moves by 5 and by 9: the
	// difference over each marker is always the same, yet never the last.
	var table []byte
	for i := range 3000 {
		for range 7 {
			table = append(table, byte(0x30+r.IntN(64)))
		}
		table = append(table, 0x10+byte(i&1)*0x10)
	}
	moved := bytes.Clone(table)
	for i := range moved {
		switch table[i] {
		case 0x10:
			moved[i] += 5
		case 0x20:
			moved[i] += 9
		}
	}
	noisy := bytes.Clone(code)
	for range 500 {
		noisy[r.IntN(len(noisy))] ^= byte(1 + r.IntN(255))
	}
	text := []byte(strings.Repeat("function f(a, b) { return a + b; }\n", 300))
	text2 := bytes.ReplaceAll(text, []byte("a + b"), []byte("a - b"))
	return map[string][2][]byte{
		"moved fields": {table, moved},
		"noisy":        {code, noisy},
		"text":         {text, text2},
		"empty old":    {nil, code[:3000]},
		"one byte new": {code, code[:1]},
	}
}

// opsOf runs the bsdiff scan of newb against old.
func opsOf(t testing.TB, old, newb []byte) []op {
	t.Helper()
	m, err := newMatcher(old)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := diffOps(context.Background(), m, newb, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// TestCM2RoundTrip: cm2 streams decode to the new file; cm1's are
// unchanged by cm2's presence (the same bytes as a model without it would
// write: a cm1 stream decodes through cm1); and on moved code cm2 is
// smaller than cm1.
func TestCM2RoundTrip(t *testing.T) {
	for name, pr := range cm2Pairs() {
		t.Run(name, func(t *testing.T) {
			old, newb := pr[0], pr[1]
			ops := opsOf(t, old, newb)
			s1 := encodeScriptCoder(old, newb, ops, false)
			s2 := encodeScriptCoder(old, newb, ops, true)
			for _, c := range []struct {
				stream []byte
				cm2    bool
			}{{s1, false}, {s2, true}} {
				var out bytes.Buffer
				if err := decodeScriptCoder(old, c.stream, int64(len(newb)), &out, c.cm2); err != nil {
					t.Fatalf("cm2=%v: %v", c.cm2, err)
				}
				if !bytes.Equal(out.Bytes(), newb) {
					t.Fatalf("cm2=%v: output differs from the new file", c.cm2)
				}
			}
			if name == "moved fields" && len(s2) >= len(s1) {
				t.Fatalf("cm2 %d bytes, cm1 %d: cm2 should win on moved fields", len(s2), len(s1))
			}
		})
	}
}

// TestDiffKeepsSmallerCoder: Diff tries cm1 and cm2 and keeps the smaller;
// restricted to the methods before cm2 it writes none of 6 and 7.
func TestDiffKeepsSmallerCoder(t *testing.T) {
	for name, pr := range cm2Pairs() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			st, err := Diff(context.Background(), pr[0], pr[1], &buf, nil)
			if err != nil {
				t.Fatal(err)
			}
			for m, n := range st.Candidates {
				if n < st.Candidates[st.Method] {
					t.Fatalf("kept %v (%d bytes) over %v (%d bytes)", st.Method, st.Candidates[st.Method], m, n)
				}
			}
			if len(pr[1]) > 0 && len(pr[0]) > 0 {
				if _, ok := st.Candidates[MethodBsdiffCM2]; !ok {
					t.Fatalf("no bsdiff-cm2 candidate: %v", st.Candidates)
				}
			}
			var out bytes.Buffer
			if _, err := Apply(context.Background(), pr[0], bytes.NewReader(buf.Bytes()), &out, nil); err != nil || !bytes.Equal(out.Bytes(), pr[1]) {
				t.Fatalf("round trip of %v: %v", st.Method, err)
			}
			buf.Reset()
			st, err = Diff(context.Background(), pr[0], pr[1], &buf, &DiffOptions{Methods: methodsBeforeCM2})
			if err != nil {
				t.Fatal(err)
			}
			if st.Method == MethodBsdiffCM2 || st.Method == MethodExeBsdiffCM2 {
				t.Fatalf("methods 1-5 asked, got %v", st.Method)
			}
		})
	}
}

// TestCM2Hostile: damaged cm2 streams and bodies fail with the expected
// class and message, never a panic.
func TestCM2Hostile(t *testing.T) {
	pr := cm2Pairs()["moved fields"]
	old, newb := pr[0], pr[1]
	s2 := encodeScriptCoder(old, newb, opsOf(t, old, newb), true)
	flipped := bytes.Clone(s2)
	flipped[len(flipped)/2] ^= 0x40
	for _, c := range []struct {
		name    string
		stream  []byte
		newSize int64
		want    string
	}{
		{"truncated", s2[:len(s2)/2], int64(len(newb)), "ends early"},
		{"empty", nil, int64(len(newb)), "ends early"},
		{"trailing bytes", append(bytes.Clone(s2), 0, 0, 0), int64(len(newb)), "left after"},
		{"new size too small", s2, int64(len(newb)) / 2, ""},
		{"flipped bit", flipped, int64(len(newb)), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := decodeScriptCoder(old, c.stream, c.newSize, &out, true)
			if c.name == "flipped bit" && err == nil {
				// A flipped bit may decode to other bytes of the right
				// length: the SHA-256 of the new file catches those.
				if bytes.Equal(out.Bytes(), newb) {
					t.Fatal("a flipped bit decoded to the original")
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, want it to say %q", err, c.want)
			}
			if int64(out.Len()) > c.newSize {
				t.Fatalf("wrote %d bytes past the %d-byte new size", out.Len(), c.newSize)
			}
		})
	}
	// A whole patch of method 6 whose body is damaged, and a method past
	// the last one.
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), old, newb, &buf, &DiffOptions{Methods: []Method{MethodBsdiffCM2}}); err != nil {
		t.Fatal(err)
	}
	p := buf.Bytes()
	if Method(p[5]) != MethodBsdiffCM2 {
		t.Fatalf("method %d, want 6", p[5])
	}
	bad := bytes.Clone(p)
	bad[len(bad)-10] ^= 1
	if _, err := Apply(context.Background(), old, bytes.NewReader(bad), &bytes.Buffer{}, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("damaged body: %v, want a checksum ErrCorrupt", err)
	}
	next := bytes.Clone(p)
	next[5] = byte(lastMethod + 1)
	binary.LittleEndian.PutUint32(next[96:], crc32.Checksum(next[:96], castagnoli))
	if _, err := Apply(context.Background(), old, bytes.NewReader(next), &bytes.Buffer{}, nil); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "unknown method") {
		t.Fatalf("method %d: %v, want ErrFormat unknown method", lastMethod+1, err)
	}
}

// FuzzDecodeCM2 decodes arbitrary bytes as a cm2 stream against a small
// old file: ErrCorrupt or an output of exactly newSize bytes, never a
// panic, a hang or more output than newSize.
func FuzzDecodeCM2(f *testing.F) {
	old := codeLike(1, 4000)
	big := cm2Pairs()["moved fields"][0]
	for _, pr := range cm2Pairs() {
		if len(pr[0]) == 0 || len(pr[1]) > 1<<15 {
			continue
		}
		s := encodeScriptCoder(pr[0], pr[1], opsOf(f, pr[0], pr[1]), true)
		f.Add(s, uint32(len(pr[1])), false)
		f.Add(s[:len(s)/2], uint32(len(pr[1])), true)
	}
	f.Add([]byte{0, 0, 0, 0, 0}, uint32(10), false)
	f.Fuzz(func(t *testing.T, stream []byte, newSize uint32, bigOld bool) {
		o := old
		if bigOld {
			o = big
		}
		n := int64(newSize % (1 << 16))
		var out bytes.Buffer
		err := decodeScriptCoder(o, stream, n, &out, true)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error: %v", err)
			}
			if int64(out.Len()) > n {
				t.Fatalf("wrote %d bytes past the %d-byte new size", out.Len(), n)
			}
			return
		}
		if int64(out.Len()) != n {
			t.Fatalf("decoded %d bytes, want %d", out.Len(), n)
		}
		_ = sha256.Sum256(out.Bytes())
	})
}
