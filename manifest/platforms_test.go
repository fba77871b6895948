package manifest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// platformTimestamps returns valid timestamps with platforms: with and
// without a platform-less index (also fuzz seeds).
func platformTimestamps(t testing.TB) [][]byte {
	t.Helper()
	ps := map[string]IndexRef{
		"linux-amd64":   {Sequence: 3, Size: 120, SHA256: sum("l")},
		"windows-amd64": {Sequence: 9, Size: 130, SHA256: sum("w")},
	}
	var out [][]byte
	for _, ix := range []IndexRef{{Sequence: 4, Size: 100, SHA256: sum("x")}, {}} {
		raw, err := MarshalTimestamp(&Timestamp{Schema: RolesSchema, App: "demo", Sequence: 5, Expires: testNow.Add(time.Hour), Index: ix, Platforms: ps})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

func TestTimestampPlatforms(t *testing.T) {
	docs := platformTimestamps(t)
	for i, raw := range docs {
		ts, err := ParseTimestamp(raw)
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		if got := strings.Join(ts.PlatformNames(), ","); got != "linux-amd64,windows-amd64" {
			t.Fatalf("platforms %s", got)
		}
		if ref, ok := ts.IndexFor("windows-amd64"); !ok || ref.Sequence != 9 || ref.SHA256 != sum("w") {
			t.Fatalf("windows-amd64: %+v %v", ref, ok)
		}
		if _, ok := ts.IndexFor("darwin-arm64"); ok {
			t.Fatal("an absent platform found")
		}
		if _, ok := ts.IndexFor(""); ok != (i == 0) {
			t.Fatalf("doc %d: platform-less index present = %v", i, ok)
		}
		k := newKey(t)
		sig, err := SignTimestamp(k, raw)
		if err != nil || !strings.Contains(string(sig), " platforms:2") {
			t.Fatalf("SignTimestamp: %v\n%s", err, sig)
		}
	}
	good := string(docs[0])
	lin := `"linux-amd64":{"sequence":3,"sha256":"` + hexOf(sum("l")) + `","size":120}`
	many := `{`
	for i := range MaxPlatforms + 1 {
		if i > 0 {
			many += ","
		}
		many += fmt.Sprintf(`"os%03d-amd64":{"sequence":3,"sha256":"%s","size":120}`, i, hexOf(sum("l")))
	}
	many += `}`
	platforms := good[strings.Index(good, `"platforms":`)+len(`"platforms":`) : strings.Index(good, `,"schema"`)]
	tests := []struct {
		name, doc string
		want      error
	}{
		{"upper case platform", strings.Replace(good, `"linux-amd64"`, `"Linux-amd64"`, 1), ErrMalformed},
		{"no arch", strings.Replace(good, `"linux-amd64"`, `"linux"`, 1), ErrMalformed},
		{"path in the name", strings.Replace(good, `"linux-amd64"`, `"../x-y"`, 1), ErrMalformed},
		{"three parts", strings.Replace(good, `"linux-amd64"`, `"linux-amd64-v3"`, 1), ErrMalformed},
		{"long name", strings.Replace(good, `"linux-amd64"`, `"linux-`+strings.Repeat("a", MaxPlatformLen)+`"`, 1), ErrMalformed},
		{"empty platforms", strings.Replace(good, platforms, `{}`, 1), ErrMalformed},
		{"null platforms", strings.Replace(good, platforms, `null`, 1), ErrMalformed},
		{"unsorted platforms", strings.Replace(good, platforms, `{"windows-amd64":{"sequence":9,"sha256":"`+hexOf(sum("w"))+`","size":130},`+lin+`}`, 1), ErrMalformed},
		{"duplicate platform", strings.Replace(good, platforms, `{`+lin+`,`+lin+`}`, 1), ErrMalformed},
		{"too many platforms", strings.Replace(good, platforms, many, 1), ErrMalformed},
		{"platform index size 0", strings.Replace(good, `"size":120`, `"size":0`, 1), ErrMalformed},
		{"platform index sequence 0", strings.Replace(good, `"sequence":3`, `"sequence":0`, 1), ErrMalformed},
		{"platform index bad hash", strings.Replace(good, hexOf(sum("l")), "abc", 1), ErrMalformed},
		{"platform index unknown member", strings.Replace(good, `"size":120}`, `"size":120,"x":1}`, 1), ErrMalformed},
		{"no index at all", string(docs[1][:strings.Index(string(docs[1]), `"platforms"`)]) + string(docs[1][strings.Index(string(docs[1]), `,"schema"`)+1:]), ErrMalformed},
		{"zero index beside platforms", strings.Replace(string(docs[1]), `"platforms"`, `"index":{"sequence":0,"sha256":"`+strings.Repeat("0", 64)+`","size":0},"platforms"`, 1), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseTimestamp([]byte(tc.doc)); !errors.Is(err, tc.want) {
				t.Fatalf("ParseTimestamp = %v, want %v\n%s", err, tc.want, tc.doc)
			}
		})
	}
	// Built in memory: the same rules.
	if _, err := MarshalTimestamp(&Timestamp{Schema: RolesSchema, App: "demo", Sequence: 1, Expires: testNow, Platforms: map[string]IndexRef{"x": {Sequence: 1, Size: 1, SHA256: sum("a")}}}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("MarshalTimestamp(platform x) = %v", err)
	}
	if _, err := MarshalTimestamp(&Timestamp{Schema: RolesSchema, App: "demo", Sequence: 1, Expires: testNow}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("MarshalTimestamp(no index) = %v", err)
	}
}

func TestValidPlatform(t *testing.T) {
	for s, want := range map[string]bool{
		"linux-amd64": true, "windows-arm64": true, "darwin-arm64": true, "freebsd-386": true,
		"": false, "linux": false, "-amd64": false, "linux-": false, "linux_amd64": false, "Linux-amd64": false,
		"a-b-c": false, "manifests": false, "root": false, strings.Repeat("a", 30) + "-b": true, strings.Repeat("a", 31) + "-b": false,
	} {
		if ValidPlatform(s) != want {
			t.Errorf("ValidPlatform(%q) = %v", s, !want)
		}
	}
}
