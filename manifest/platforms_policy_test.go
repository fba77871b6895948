package manifest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestTimestampPlatformsPolicy: a timestamp naming platforms and the
// release policy, with or without a platform-less index, round-trips;
// each member keeps its own checks when the other is present.
func TestTimestampPlatformsPolicy(t *testing.T) {
	plats := map[string]IndexRef{"linux-amd64": {Sequence: 7, Size: 3120, SHA256: sum("l")}, "windows-amd64": {Sequence: 5, Size: 3010, SHA256: sum("w")}}
	pol := &IndexRef{Sequence: 3, Size: 142, SHA256: sum("p")}
	for _, index := range []IndexRef{{}, {Sequence: 4, Size: 900, SHA256: sum("i")}} {
		ts := &Timestamp{Schema: RolesSchema, App: "demo", Sequence: 17, Expires: testNow, Index: index, Platforms: plats, Policy: pol}
		raw, err := MarshalTimestamp(ts)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), `"platforms":{"linux-amd64"`) || !strings.Contains(string(raw), `"policy":{"sequence":3`) ||
			strings.Contains(string(raw), `"index"`) != (index != IndexRef{}) {
			t.Fatalf("encoded: %s", raw)
		}
		got, err := ParseTimestamp(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got.Index != index || !reflect.DeepEqual(got.Platforms, plats) || got.Policy == nil || *got.Policy != *pol {
			t.Fatalf("parsed: %+v", got)
		}
	}
	for name, ts := range map[string]*Timestamp{
		"policy too large":    {Platforms: plats, Policy: &IndexRef{Sequence: 3, Size: MaxPolicySize + 1, SHA256: sum("p")}},
		"policy without hash": {Platforms: plats, Policy: &IndexRef{Sequence: 3, Size: 142}},
		"bad platform":        {Platforms: map[string]IndexRef{"Linux-amd64": plats["linux-amd64"]}, Policy: pol},
		"policy only":         {Policy: pol},
	} {
		ts.Schema, ts.App, ts.Sequence, ts.Expires = RolesSchema, "demo", 17, testNow
		if _, err := MarshalTimestamp(ts); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}
