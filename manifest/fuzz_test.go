package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzCanonicalize: no panic; the output is valid JSON, canonical
// (Canonicalize is idempotent) and means the same as the input.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[true,false,null,"x\u0000\ud83d\ude00"]}`, `[]`, `{}`, `-0`, `"\u2028"`, `{"\ufb33":1,"😀":2}`,
		`[1.5]`, `{"a":1,"a":2}`, "[\"\xff\"]", `[9007199254740992]`, " [ 1 , { \"k\" : \"v\" } ] ",
	} {
		f.Add([]byte(s))
	}
	addTestdataSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonicalize(in)
		if err != nil {
			if json.Valid(in) && !strings.Contains(err.Error(), "manifest:") {
				t.Fatalf("error without class: %v", err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		again, err := Canonicalize(out)
		if err != nil {
			t.Fatalf("Canonicalize(%q) = %q, which it refuses: %v", in, out, err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, again)
		}
		if CheckCanonical(out) != nil {
			t.Fatalf("CheckCanonical refuses %q", out)
		}
		if !sameJSON(t, in, out) {
			t.Fatalf("meaning changed: %q -> %q", in, out)
		}
	})
}

// sameJSON compares two JSON documents as values (numbers as integers).
func sameJSON(t *testing.T, a, b []byte) bool {
	dec := func(x []byte) any {
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decode %q: %v", x, err)
		}
		return normNumbers(v)
	}
	return reflect.DeepEqual(dec(a), dec(b))
}

func normNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		n, ok := new(big.Int).SetString(string(x), 10)
		if !ok {
			return string(x)
		}
		return n.String()
	case []any:
		for i := range x {
			x[i] = normNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normNumbers(x[k])
		}
	}
	return v
}

func addTestdataSeeds(f *testing.F) {
	for _, pat := range []string{"*.json", "hostile/*.json"} {
		names, _ := filepath.Glob(filepath.Join(testdataDir, pat))
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil {
				f.Add(b)
			}
		}
	}
}

// FuzzOpen runs two targets on each input: Open with the fuzzed signature
// file (the signature parser; almost always ErrSignature), and everything
// Open does after a good signature on the fuzzed manifest (signing each
// input would cost two Ed25519 operations). Properties: no panic, exactly
// one error class, and an accepted manifest re-marshals to the same bytes.
// The manifest bytes are also tried as a file-list document.
func FuzzOpen(f *testing.F) {
	for _, pat := range []string{"golden.json", "hostile/*.json"} {
		names, _ := filepath.Glob(filepath.Join(testdataDir, pat))
		for _, n := range names {
			raw, err := os.ReadFile(n)
			if err != nil {
				continue
			}
			sig, _ := os.ReadFile(n + ".minisig")
			f.Add(raw, sig)
		}
	}
	if fl, err := os.ReadFile(filepath.Join(testdataDir, "golden-files.json")); err == nil {
		f.Add(fl, []byte(nil))
	}
	_, pub := testKeys(f)
	classes := []error{ErrSignature, ErrExpired, ErrRollback, ErrWrongApp, ErrTooLarge, ErrMalformed}
	oneClass := func(t *testing.T, err error) {
		n := 0
		for _, c := range classes {
			if errors.Is(err, c) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error matches %d classes: %v", n, err)
		}
	}
	accepted := func(t *testing.T, m *Manifest, raw []byte) {
		out, err := Marshal(m)
		if err != nil {
			t.Fatalf("accepted, but Marshal fails: %v", err)
		}
		if !bytes.Equal(out, raw) {
			t.Fatalf("accepted %q, re-marshals to %q", raw, out)
		}
		for _, ch := range m.Channels {
			m.Latest(ch)
		}
	}
	f.Fuzz(func(t *testing.T, raw, sig []byte) {
		m, err := Open(raw, sig, pub, openOpts())
		if err != nil {
			oneClass(t, err)
		} else {
			accepted(t, m, raw)
		}
		m, err = openVerified(raw, MaxManifestSize, openOpts())
		if err != nil {
			oneClass(t, err)
			if errors.Is(err, ErrSignature) {
				t.Fatalf("signature error after the signature check: %v", err)
			}
		} else {
			accepted(t, m, raw)
		}
		if fl, err := OpenFileList(raw, NewFileListRef("x/1.0.0.json", raw)); err == nil {
			out, err := MarshalFileList(fl)
			if err != nil || !bytes.Equal(out, raw) {
				t.Fatalf("file list accepted, re-marshals to %q, %v", out, err)
			}
		} else {
			oneClass(t, err)
		}
	})
}
