package manifest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

func newKey(t testing.TB) PrivateKey {
	t.Helper()
	_, keyFile, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKey(keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rootOf builds a root of version v with the given keys per role.
func rootOf(v uint64, roles map[string][]PrivateKey, thresholds map[string]int) *Root {
	r := &Root{Schema: RolesSchema, App: "demo", Version: v, Expires: testNow.Add(365 * 24 * time.Hour), Keys: map[string]PublicKey{}, Roles: map[string]Role{}}
	for _, name := range Roles {
		var ids []string
		for _, k := range roles[name] {
			pub := k.Public()
			r.Keys[pub.ID()] = pub
			ids = append(ids, pub.ID())
		}
		slices.Sort(ids)
		th := thresholds[name]
		if th == 0 {
			th = 1
		}
		r.Roles[name] = Role{KeyIDs: ids, Threshold: th}
	}
	return r
}

func signAll(t testing.TB, raw []byte, sign func(PrivateKey, []byte) ([]byte, error), keys ...PrivateKey) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, k := range keys {
		sig, err := sign(k, raw)
		if err != nil {
			t.Fatal(err)
		}
		out[k.Public().ID()] = sig
	}
	return out
}

func TestRootRoundTripAndNext(t *testing.T) {
	r1a, r1b, rel, ts := newKey(t), newKey(t), newKey(t), newKey(t)
	root1 := rootOf(1, map[string][]PrivateKey{RoleRoot: {r1a, r1b}, RoleRelease: {rel}, RoleTimestamp: {ts}}, map[string]int{RoleRoot: 2})
	raw1, err := MarshalRoot(root1)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := ParseRoot(raw1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p1.Raw(), raw1) || p1.ContentHash() != sha256.Sum256(raw1) {
		t.Fatal("raw or hash not kept")
	}
	// Version 2 rotates one root key (r1b -> r2) and the timestamp key.
	r2, ts2 := newKey(t), newKey(t)
	root2 := rootOf(2, map[string][]PrivateKey{RoleRoot: {r1a, r2}, RoleRelease: {rel}, RoleTimestamp: {ts2}}, map[string]int{RoleRoot: 2})
	raw2, err := MarshalRoot(root2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		raw     []byte
		signers []PrivateKey
		want    error
	}{
		{"old and new thresholds", raw2, []PrivateKey{r1a, r1b, r2}, nil},
		{"only the old keys", raw2, []PrivateKey{r1a, r1b}, ErrSignature},
		{"only the new keys", raw2, []PrivateKey{r1a, r2}, ErrSignature},
		{"one stolen old key", raw2, []PrivateKey{r1b}, ErrSignature},
		{"stolen key plus new keys it chose", raw2, []PrivateKey{r1b, r2}, ErrSignature},
		{"same version again", raw1, []PrivateKey{r1a, r1b}, ErrRollback},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := p1.Next(tc.raw, signAll(t, tc.raw, SignRoot, tc.signers...))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (n != nil) {
				t.Fatalf("Next = %v, want %v", err, tc.want)
			}
			if n != nil && n.RoleFingerprint(RoleTimestamp) == p1.RoleFingerprint(RoleTimestamp) {
				t.Fatal("timestamp fingerprint did not change with its key")
			}
			if n != nil && n.RoleFingerprint(RoleRelease) != p1.RoleFingerprint(RoleRelease) {
				t.Fatal("release fingerprint changed without a key change")
			}
		})
	}
	// A root for another app, signed by everyone.
	other := rootOf(2, map[string][]PrivateKey{RoleRoot: {r1a, r1b}, RoleRelease: {rel}, RoleTimestamp: {ts}}, map[string]int{RoleRoot: 2})
	other.App = "evil"
	rawO, _ := MarshalRoot(other)
	if _, err := p1.Next(rawO, signAll(t, rawO, SignRoot, r1a, r1b)); !errors.Is(err, ErrWrongApp) {
		t.Fatalf("other app: %v", err)
	}
	if err := p1.CheckFresh(root1.Expires); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired root: %v", err)
	}
}

func TestRootHostile(t *testing.T) {
	k, k2 := newKey(t), newKey(t)
	good := rootOf(1, map[string][]PrivateKey{RoleRoot: {k}, RoleRelease: {k}, RoleTimestamp: {k}}, nil)
	raw, err := MarshalRoot(good)
	if err != nil {
		t.Fatal(err)
	}
	id, id2 := k.Public().ID(), k2.Public().ID()
	s := string(raw)
	tests := []struct {
		name string
		doc  string
		want error
	}{
		{"not canonical", s + "\n", ErrMalformed},
		{"schema 1", strings.Replace(s, `"schema":2`, `"schema":1`, 1), ErrSchema},
		{"schema 3", strings.Replace(s, `"schema":2`, `"schema":3`, 1), ErrSchema},
		{"type timestamp", strings.Replace(s, `"type":"root"`, `"type":"timestamp"`, 1), ErrMalformed},
		{"threshold 0", strings.Replace(s, `"threshold":1}`, `"threshold":0}`, 1), ErrMalformed},
		{"threshold above keys", strings.Replace(s, `"threshold":1}`, `"threshold":2}`, 1), ErrMalformed},
		{"unknown key in role", strings.Replace(s, `"release":{"keys":["`+id+`"]`, `"release":{"keys":["`+id2+`"]`, 1), ErrMalformed},
		{"key under another ID", strings.Replace(s, `"keys":{"`+id+`"`, `"keys":{"`+id2+`"`, 1), ErrMalformed},
		{"duplicate key ID in role", strings.Replace(s, `"release":{"keys":["`+id+`"]`, `"release":{"keys":["`+id+`","`+id+`"]`, 1), ErrMalformed},
		{"unknown member", strings.Replace(s, `"app":`, `"aaa":1,"app":`, 1), ErrMalformed},
		{"version 0", strings.Replace(s, `"version":1`, `"version":0`, 1), ErrMalformed},
		{"no roles", `{"app":"demo","expires":"2027-01-01T00:00:00Z","keys":{},"roles":{},"schema":2,"type":"root","version":1}`, ErrMalformed},
		{"huge", `{"app":"` + strings.Repeat("a", MaxRootSize) + `"}`, ErrTooLarge},
		{"not an object", `[]`, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseRoot([]byte(tc.doc)); !errors.Is(err, tc.want) {
				t.Fatalf("ParseRoot = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := SignRoot(k, []byte(tests[0].doc)); err == nil {
		t.Fatal("signed a malformed root")
	}
}

func TestTimestampOpen(t *testing.T) {
	ts, ts2, rel := newKey(t), newKey(t), newKey(t)
	root, _ := ParseRoot(mustMarshalRoot(t, rootOf(1, map[string][]PrivateKey{RoleRoot: {rel}, RoleRelease: {rel}, RoleTimestamp: {ts, ts2}}, map[string]int{RoleTimestamp: 2})))
	mk := func(seq uint64, exp time.Time) []byte {
		raw, err := MarshalTimestamp(&Timestamp{Schema: RolesSchema, App: "demo", Sequence: seq, Expires: exp, Index: IndexRef{Sequence: 4, Size: 100, SHA256: sum("x")}})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	fresh := mk(5, testNow.Add(time.Hour))
	seen, _ := ParseTimestamp(fresh)
	tests := []struct {
		name    string
		raw     []byte
		signers []PrivateKey
		opts    TimestampOptions
		want    error
	}{
		{"good", fresh, []PrivateKey{ts, ts2}, TimestampOptions{App: "demo", Now: testNow}, nil},
		{"one key of two (stolen)", fresh, []PrivateKey{ts}, TimestampOptions{App: "demo", Now: testNow}, ErrSignature},
		{"release key", fresh, []PrivateKey{rel}, TimestampOptions{App: "demo", Now: testNow}, ErrSignature},
		{"frozen: expired", mk(5, testNow), []PrivateKey{ts, ts2}, TimestampOptions{App: "demo", Now: testNow}, ErrExpired},
		{"replayed", mk(4, testNow.Add(time.Hour)), []PrivateKey{ts, ts2}, TimestampOptions{App: "demo", Now: testNow, MinSequence: 5}, ErrRollback},
		{"same sequence other bytes", mk(5, testNow.Add(2*time.Hour)), []PrivateKey{ts, ts2}, TimestampOptions{App: "demo", Now: testNow, MinSequence: 5, SeenHash: seen.ContentHash()}, ErrRollback},
		{"wrong app", fresh, []PrivateKey{ts, ts2}, TimestampOptions{App: "other", Now: testNow}, ErrWrongApp},
		{"too large", bytes.Repeat([]byte(" "), MaxTimestampSize+1), nil, TimestampOptions{App: "demo", Now: testNow}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenTimestamp(tc.raw, signAll(t, tc.raw, func(k PrivateKey, b []byte) ([]byte, error) { return signBytes(k, b, "x"), nil }, tc.signers...), root, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("OpenTimestamp = %v, want %v", err, tc.want)
			}
		})
	}
	for _, bad := range []string{
		strings.Replace(string(fresh), `"type":"timestamp"`, `"type":"root"`, 1),
		strings.Replace(string(fresh), `"size":100`, `"size":0`, 1),
		strings.Replace(string(fresh), `"size":100`, `"size":99999999`, 1),
		strings.Replace(string(fresh), `"sequence":5`, `"sequence":0`, 1),
	} {
		if _, err := ParseTimestamp([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseTimestamp(%s) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestOpenIndex(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	root, _ := ParseRoot(mustMarshalRoot(t, rootOf(1, map[string][]PrivateKey{RoleRoot: {a}, RoleRelease: {a, b, c}, RoleTimestamp: {a}}, map[string]int{RoleRelease: 2})))
	raw, err := Marshal(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ParseUnverified(raw)
	ref := IndexRef{Sequence: m.Sequence, Size: int64(len(raw)), SHA256: sha256.Sum256(raw)}
	opts := OpenOptions{App: m.App, Now: testNow}
	tests := []struct {
		name    string
		raw     []byte
		ref     IndexRef
		signers []PrivateKey
		want    error
	}{
		{"two of three", raw, ref, []PrivateKey{a, c}, nil},
		{"one stolen key", raw, ref, []PrivateKey{b}, ErrSignature},
		{"other bytes than the timestamp names", append(slices.Clone(raw[:len(raw)-1]), ' '), ref, []PrivateKey{a, b}, ErrHashMismatch},
		{"other size", raw[:10], ref, []PrivateKey{a, b}, ErrHashMismatch},
		{"sequence not the timestamp's", raw, IndexRef{Sequence: ref.Sequence + 1, Size: ref.Size, SHA256: ref.SHA256}, []PrivateKey{a, b}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenIndex(tc.raw, signAll(t, tc.raw, func(k PrivateKey, b []byte) ([]byte, error) { return signBytes(k, b, "x"), nil }, tc.signers...), root, tc.ref, opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("OpenIndex = %v, want %v", err, tc.want)
			}
		})
	}
}

func mustMarshalRoot(t testing.TB, r *Root) []byte {
	t.Helper()
	raw, err := MarshalRoot(r)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// FuzzRoot: root documents come from mirrors (root/N.json) and are
// parsed after the previous root's signatures verified, but the pinned
// root is parsed as shipped. Any bytes: no panic; what parses re-encodes
// to itself and validates.
func FuzzRoot(f *testing.F) {
	k := newKey(f)
	raw, err := MarshalRoot(rootOf(1, map[string][]PrivateKey{RoleRoot: {k}, RoleRelease: {k}, RoleTimestamp: {k}}, nil))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"schema":2,"type":"root"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ParseRoot(raw)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed root does not validate: %v", err)
		}
		enc, err := MarshalRoot(r)
		if err != nil || !bytes.Equal(enc, raw) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzTimestamp: the timestamp is the document every poll fetches. Any
// bytes: no panic; what parses re-encodes to itself.
func FuzzTimestamp(f *testing.F) {
	raw, err := MarshalTimestamp(&Timestamp{Schema: RolesSchema, App: "demo", Sequence: 3, Expires: testNow, Index: IndexRef{Sequence: 2, Size: 10, SHA256: sum("i")}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"schema":2,"type":"timestamp"}`))
	for _, ts := range platformTimestamps(f) {
		f.Add(ts)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ts, err := ParseTimestamp(raw)
		if err != nil {
			return
		}
		enc, err := MarshalTimestamp(ts)
		if err != nil || !bytes.Equal(enc, raw) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func TestIndexDelta(t *testing.T) {
	base := fixture(t)
	baseRaw, err := Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	base, _ = ParseUnverified(baseRaw)
	next := fixture(t)
	next.Sequence++
	next.Releases = append(next.Releases[:2], Release{Version: "1.3.0", Channel: "stable", Files: treeOf("1.3.0"), Archives: archives("1.3.0"), Patches: []Patch{patch("1.1.0", "1.3.0")}})
	next.Releases[2].TreeDigest = tree.Digest(next.Releases[2].Files)
	want, err := Marshal(next)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := MakeDelta(base, next, map[string][]byte{"0123456789ABCDEF": []byte("sig")})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDelta(raw)
	if err != nil {
		t.Fatal(err)
	}
	if d.Keep != 2 || len(d.Index.Releases) != 1 || len(raw) >= len(want) || string(d.Sigs["0123456789ABCDEF"]) != "sig" {
		t.Fatalf("delta keeps %d, appends %d, %d bytes (index %d)", d.Keep, len(d.Index.Releases), len(raw), len(want))
	}
	got, err := ApplyDelta(base, d)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ApplyDelta: %v (equal %v)", err, bytes.Equal(got, want))
	}
	other := *base
	other.Sequence = 99
	if _, err := ApplyDelta(&other, d); !errors.Is(err, ErrMalformed) {
		t.Fatalf("delta on another base: %v", err)
	}
	for _, bad := range []string{`{}`, `{"from":1,"index":null,"keep":0,"type":"delta"}`, strings.Replace(string(raw), `"keep":2`, `"keep":-1`, 1), strings.Replace(string(raw), `"type":"delta"`, `"type":"index"`, 1)} {
		if _, err := ParseDelta([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseDelta(%.60s) = %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzDelta: index deltas come unsigned from mirrors. Any bytes: no
// panic; what parses and applies to the fixture marshals (Validate holds).
func FuzzDelta(f *testing.F) {
	base := fixture(f)
	next := fixture(f)
	next.Sequence++
	raw, err := MakeDelta(base, next, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"from":7,"index":{},"keep":0,"type":"delta"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := ParseDelta(raw)
		if err != nil {
			return
		}
		if out, err := ApplyDelta(base, d); err == nil {
			if _, err := ParseUnverified(out); err != nil {
				t.Fatalf("ApplyDelta produced an index that does not parse: %v", err)
			}
		}
	})
}
