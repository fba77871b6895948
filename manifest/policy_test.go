package manifest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func policyFixture() *Policy {
	return &Policy{Schema: RolesSchema, App: "demo", Sequence: 3, Expires: testNow.Add(30 * 24 * time.Hour), MinimumVersion: "1.0.0",
		Releases: []PolicyEntry{
			{Version: "1.1.0", Rollout: 10},
			{Version: "1.2.0", Rollout: FullRollout, Critical: true, Notes: "Fixes a crash.\nUpdate soon.", NotesURL: "https://example.com/notes/1.2.0"},
			{Version: "1.3.0", Rollout: 50, Halted: true},
			{Version: "1.4.0", Rollout: FullRollout, Pulled: true},
		}}
}

func TestPolicyRoundTrip(t *testing.T) {
	p := policyFixture()
	raw, err := MarshalPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePolicy(raw)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Releases) != fmt.Sprint(p.Releases) || got.MinimumVersion != "1.0.0" || got.ContentHash() != sha256.Sum256(raw) {
		t.Fatalf("round trip: %+v", got)
	}
	if strings.Contains(string(raw), `"rollout":100`) || strings.Contains(string(raw), "false") {
		t.Fatalf("defaults must be omitted: %s", raw)
	}
	if e, ok := got.Entry("v1.3.0"); !ok || !e.Halted || e.Rollout != 50 {
		t.Fatalf("Entry(v1.3.0) = %+v, %v", e, ok)
	}
	if e, ok := got.Entry("9.0.0"); ok || e.Rollout != FullRollout {
		t.Fatalf("Entry(9.0.0) = %+v, %v: a release without an entry is offered to everyone", e, ok)
	}
	if s := got.Releases[2].String(); s != "1.3.0 (halted, 50%)" {
		t.Fatalf("String = %q", s)
	}
}

// TestPolicyHostile replays testdata/manifest/policy/hostile.txt and the
// cases too large to commit as lines.
func TestPolicyHostile(t *testing.T) {
	f, err := os.Open(filepath.Join(testdataDir, "policy", "hostile.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	classes := map[string]error{"malformed": ErrMalformed, "schema": ErrSchema, "too-large": ErrTooLarge}
	type tc struct{ name, want, doc string }
	var cases []tc
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		cols := strings.SplitN(line, "\t", 4)
		if len(cols) != 4 {
			t.Fatalf("bad line %q", line)
		}
		cases = append(cases, tc{cols[0], cols[1], cols[3]})
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases read", len(cases))
	}
	// Generated: caps.
	many := policyFixture()
	many.Releases = nil
	for i := range MaxPolicyEntries + 1 {
		many.Releases = append(many.Releases, PolicyEntry{Version: fmt.Sprintf("1.0.%d", i), Rollout: 1})
	}
	manyRaw, _ := encodeJSON(many.wire(), 1<<30)
	long := policyFixture()
	long.Releases[1].Notes = strings.Repeat("x", MaxNotesSize+1)
	longRaw, _ := encodeJSON(long.wire(), 1<<30)
	longURL := policyFixture()
	longURL.Releases[1].NotesURL = "https://example.com/" + strings.Repeat("a", MaxNotesURLSize)
	longURLRaw, _ := encodeJSON(longURL.wire(), 1<<30)
	cases = append(cases,
		tc{"too-many-entries", "malformed", string(manyRaw)},
		tc{"notes-too-long", "malformed", string(longRaw)},
		tc{"notes-url-too-long", "malformed", string(longURLRaw)},
		tc{"huge", "too-large", `{"app":"` + strings.Repeat("a", MaxPolicySize) + `"}`},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(c.doc))
			if c.want == "ok" {
				if err != nil {
					t.Fatalf("ParsePolicy: %v", err)
				}
				if enc, err := MarshalPolicy(p); err != nil || string(enc) != c.doc {
					t.Fatalf("re-encoding: %v", err)
				}
				return
			}
			want, ok := classes[c.want]
			if !ok {
				t.Fatalf("unknown class %q", c.want)
			}
			if !errors.Is(err, want) {
				t.Fatalf("ParsePolicy = %v, want %v", err, want)
			}
		})
	}
	if _, err := SignPolicy(newKey(t), []byte(cases[len(cases)-1].doc)); err == nil {
		t.Fatal("signed a malformed policy")
	}
}

func TestOpenPolicy(t *testing.T) {
	a, b, ts := newKey(t), newKey(t), newKey(t)
	root, _ := ParseRoot(mustMarshalRoot(t, rootOf(1, map[string][]PrivateKey{RoleRoot: {a}, RoleRelease: {a, b}, RoleTimestamp: {ts}}, map[string]int{RoleRelease: 2})))
	mk := func(seq uint64, exp time.Time, notes string) []byte {
		p := policyFixture()
		p.Sequence, p.Expires = seq, exp
		p.Releases[1].Notes = notes
		raw, err := MarshalPolicy(p)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := mk(3, testNow.Add(time.Hour), "n")
	refOf := func(raw []byte, seq uint64) IndexRef {
		return IndexRef{Sequence: seq, Size: int64(len(raw)), SHA256: sha256.Sum256(raw)}
	}
	seen, _ := ParsePolicy(good)
	opts := PolicyOptions{App: "demo", Now: testNow}
	other := mk(3, testNow.Add(time.Hour), "other")
	tests := []struct {
		name    string
		raw     []byte
		ref     IndexRef
		signers []PrivateKey
		opts    PolicyOptions
		want    error
	}{
		{"good", good, refOf(good, 3), []PrivateKey{a, b}, opts, nil},
		{"one stolen release key of two", good, refOf(good, 3), []PrivateKey{a}, opts, ErrSignature},
		{"signed by the timestamp key", good, refOf(good, 3), []PrivateKey{ts}, opts, ErrSignature},
		{"unsigned", good, refOf(good, 3), nil, opts, ErrSignature},
		{"tampered: other bytes than the timestamp names", other, refOf(good, 3), []PrivateKey{a, b}, opts, ErrHashMismatch},
		{"other size", good[:len(good)-1], refOf(good, 3), []PrivateKey{a, b}, opts, ErrHashMismatch},
		{"sequence not the timestamp's", good, refOf(good, 4), []PrivateKey{a, b}, opts, ErrMalformed},
		{"replayed: lower sequence", good, refOf(good, 3), []PrivateKey{a, b}, PolicyOptions{App: "demo", Now: testNow, MinSequence: 4}, ErrRollback},
		{"same sequence other bytes", other, refOf(other, 3), []PrivateKey{a, b}, PolicyOptions{App: "demo", Now: testNow, MinSequence: 3, SeenHash: seen.ContentHash()}, ErrRollback},
		{"same sequence same bytes", good, refOf(good, 3), []PrivateKey{a, b}, PolicyOptions{App: "demo", Now: testNow, MinSequence: 3, SeenHash: seen.ContentHash()}, nil},
		{"expired", mk(3, testNow, "n"), refOf(mk(3, testNow, "n"), 3), []PrivateKey{a, b}, opts, ErrExpired},
		{"wrong app", good, refOf(good, 3), []PrivateKey{a, b}, PolicyOptions{App: "other", Now: testNow}, ErrWrongApp},
		{"malformed though signed", []byte(`{"schema":2}`), refOf([]byte(`{"schema":2}`), 3), []PrivateKey{a, b}, opts, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenPolicy(tc.raw, signAll(t, tc.raw, func(k PrivateKey, b []byte) ([]byte, error) { return signBytes(k, b, "x"), nil }, tc.signers...), root, tc.ref, tc.opts)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("OpenPolicy = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTimestampPolicyRef(t *testing.T) {
	ts := &Timestamp{Schema: RolesSchema, App: "demo", Sequence: 3, Expires: testNow, Index: IndexRef{Sequence: 2, Size: 10, SHA256: sum("i")},
		Policy: &IndexRef{Sequence: 5, Size: 300, SHA256: sum("p")}}
	raw, err := MarshalTimestamp(ts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseTimestamp(raw)
	if err != nil || got.Policy == nil || *got.Policy != *ts.Policy {
		t.Fatalf("ParseTimestamp = %+v, %v", got, err)
	}
	// A timestamp without a policy stays valid (and has none).
	ts.Policy = nil
	raw0, _ := MarshalTimestamp(ts)
	if got, err := ParseTimestamp(raw0); err != nil || got.Policy != nil {
		t.Fatalf("ParseTimestamp without policy = %+v, %v", got, err)
	}
	s := string(raw)
	for _, bad := range []string{
		strings.Replace(s, `"size":300`, `"size":0`, 1),
		strings.Replace(s, `"size":300`, fmt.Sprintf(`"size":%d`, MaxPolicySize+1), 1),
		strings.Replace(s, `"policy":{"sequence":5`, `"policy":{"sequence":0`, 1),
		strings.Replace(s, `"policy":{`, `"policy":{"x":1,`, 1),
		strings.Replace(s, hexOf(sum("p")), strings.Repeat("0", 64), 1),
		strings.Replace(s, hexOf(sum("p")), "zz", 1),
		strings.Replace(s, `"policy":{"sequence":5,"sha256":"`+hexOf(sum("p"))+`","size":300}`, `"policy":null`, 1),
	} {
		if bad == s {
			t.Fatalf("replacement did not apply")
		}
		if _, err := ParseTimestamp([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseTimestamp(%s) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestRolloutBucket(t *testing.T) {
	// The documented formula (docs/FORMAT.md, "Install id and buckets"):
	// the first 8 bytes of SHA-256("deltaup-rollout" 0 ID 0 V), big-endian,
	// modulo 100; in range, and independent between versions.
	for _, c := range [][2]string{{"a", "1.0.0"}, {fmt.Sprintf("%032x", 7), "2.3.4-rc.1"}} {
		h := sha256.Sum256([]byte("deltaup-rollout\x00" + c[0] + "\x00" + c[1]))
		if got, want := RolloutBucket(c[0], c[1]), int(binary.BigEndian.Uint64(h[:8])%100); got != want {
			t.Fatalf("RolloutBucket(%q, %q) = %d, want %d", c[0], c[1], got, want)
		}
	}
	same := 0
	for i := range 1000 {
		id := fmt.Sprintf("%032x", i)
		b := RolloutBucket(id, "1.0.0")
		if b < 0 || b > 99 {
			t.Fatalf("bucket %d", b)
		}
		if (b < 10) == (RolloutBucket(id, "1.1.0") < 10) && b < 10 {
			same++
		}
	}
	// The installs first in line for 1.0.0 are not those of 1.1.0: about
	// 1% of installs are in both 10% samples, never all 10%.
	if same > 40 {
		t.Fatalf("%d of 1000 installs in both 10%% samples: the samples are not independent", same)
	}
	e := PolicyEntry{Version: "1.0.0", Rollout: 0, Critical: true}
	if !e.InRollout("x") {
		t.Fatal("critical ignores the rollout")
	}
}

// FuzzOpenPolicy: the policy comes from mirrors; OpenPolicy checks the
// hash and signatures before parsing, but the parser must stand any bytes
// (publishers parse their own, the fuzzer all). No panic; what parses
// validates and re-encodes to itself; OpenPolicy refuses what is not
// signed by the release keys.
func FuzzOpenPolicy(f *testing.F) {
	k := newKey(f)
	root, err := ParseRoot(mustMarshalRoot(f, rootOf(1, map[string][]PrivateKey{RoleRoot: {k}, RoleRelease: {k}, RoleTimestamp: {k}}, nil)))
	if err != nil {
		f.Fatal(err)
	}
	raw, err := MarshalPolicy(policyFixture())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"schema":2,"type":"policy"}`))
	f.Add([]byte(`{"app":"demo","expires":"2026-07-01T00:00:00Z","releases":[{"rollout":0,"version":"1.0.0"}],"schema":2,"sequence":1,"type":"policy"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ref := IndexRef{Sequence: 3, Size: int64(len(raw)), SHA256: sha256.Sum256(raw)}
		if _, err := OpenPolicy(raw, nil, root, ref, PolicyOptions{App: "demo", Now: testNow}); err == nil {
			t.Fatal("an unsigned policy was accepted")
		}
		p, err := ParsePolicy(raw)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed policy does not validate: %v", err)
		}
		enc, err := MarshalPolicy(p)
		if err != nil || !bytes.Equal(enc, raw) {
			t.Fatalf("round trip: %v", err)
		}
		for _, e := range p.Releases {
			if CheckNotes(e.Notes) != nil || (e.NotesURL != "" && CheckNotesURL(e.NotesURL) != nil) {
				t.Fatalf("notes accepted that CheckNotes refuses: %q %q", e.Notes, e.NotesURL)
			}
		}
	})
}
