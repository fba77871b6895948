package manifest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

func TestCompare(t *testing.T) {
	// Each list is in strictly ascending semver order.
	ascending := []string{
		"0.0.1",
		"0.9.0",
		"1.0.0-0",
		"1.0.0-1",
		"1.0.0-2",
		"1.0.0-10",
		"1.0.0-alpha",
		"1.0.0-alpha.1",
		"1.0.0-alpha.beta",
		"1.0.0-beta",
		"1.0.0-beta.2",
		"1.0.0-beta.11",
		"1.0.0-rc.1",
		"1.0.0",
		"1.0.1",
		"1.2.0",
		"1.9.0",
		"1.10.0",
		"1.10.1-rc.9",
		"1.10.1-rc.10",
		"1.10.1",
		"2.0.0",
		"10.0.0",
	}
	for i := range ascending {
		for j := range ascending {
			got, err := Compare(ascending[i], ascending[j])
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", ascending[i], ascending[j], got, want)
			}
		}
	}
	if c, err := Compare("1.0.0+build.1", "1.0.0+build.2"); err != nil || c != 0 {
		t.Errorf("build metadata: %d, %v", c, err)
	}
	for _, bad := range []string{"", "1", "1.0", "v1.0.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", "1.0.0-a..b", " 1.0.0", "1.0.0-é", "1.0.0-99999999999999999999"} {
		if _, err := Compare(bad, "1.0.0"); err == nil {
			t.Errorf("Compare accepted %q", bad)
		}
		if _, err := Compare("1.0.0", bad); err == nil {
			t.Errorf("Compare accepted %q as second argument", bad)
		}
	}
}

func TestNormalizeVersion(t *testing.T) {
	for _, c := range []struct {
		in, want string // want "" means refused
		errHas   string
	}{
		{"1.2.3", "1.2.3", ""},
		{"v1.2.3", "1.2.3", ""},
		{"V1.2.3", "1.2.3", ""},
		{"v1.2.3-rc.1+build.5", "1.2.3-rc.1+build.5", ""},
		{"1.0.0-v2", "1.0.0-v2", ""},
		{"v1.2", "", `version "v1.2" is not a strict semantic version`},
		{"vv1.2.3", "", `version "vv1.2.3" is not`},
		{"v", "", `version "v" is not`},
		{"", "", `version "" is not`},
		{"v01.2.3", "", `version "v01.2.3" is not`},
		{" v1.2.3", "", "is not"},
		{"v 1.2.3", "", "is not"},
		{"version1.2.3", "", "is not"},
		{"1.2.3v", "", "is not"},
		{"v1.0.0-99999999999999999999", "", `version "v1.0.0-99999999999999999999": numeric prerelease identifier`},
		{"v1.0.0-" + strings.Repeat("a", MaxVersionLen-5), "", "longer than"},
		{"v1.0.0-" + strings.Repeat("a", MaxVersionLen-6), "1.0.0-" + strings.Repeat("a", MaxVersionLen-6), ""},
	} {
		got, err := NormalizeVersion(c.in)
		if c.want == "" {
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("NormalizeVersion(%q) = %q, %v; want an error with %q", c.in, got, err, c.errHas)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("NormalizeVersion(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func orderManifest(t *testing.T) *Manifest {
	m := &Manifest{
		Schema: SchemaVersion, App: "demo", Channels: []string{"stable", "beta", "empty"}, Sequence: 1,
		Issued: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Expires: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for _, rv := range []struct{ v, ch string }{
		{"1.10.0", "stable"}, {"1.9.0", "stable"}, {"1.2.0", "stable"}, {"1.11.0-rc.1", "beta"},
		{"1.11.0-rc.10", "beta"}, {"1.11.0-rc.2", "beta"}, {"1.0.0+build.7", "stable"},
	} {
		files := treeOf(rv.v)
		m.Releases = append(m.Releases, Release{Version: rv.v, Channel: rv.ch, Files: files, TreeDigest: tree.Digest(files), Archives: archives(rv.v)[:1]})
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLatestSortedRelease(t *testing.T) {
	m := orderManifest(t)
	versions := func(rs []*Release) (out []string) {
		for _, r := range rs {
			out = append(out, r.Version)
		}
		return out
	}
	check := func(got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
	}
	check(versions(m.Sorted("stable")), "1.0.0+build.7", "1.2.0", "1.9.0", "1.10.0")
	check(versions(m.Sorted("beta")), "1.11.0-rc.1", "1.11.0-rc.2", "1.11.0-rc.10")
	check(versions(m.Sorted("")), "1.0.0+build.7", "1.2.0", "1.9.0", "1.10.0", "1.11.0-rc.1", "1.11.0-rc.2", "1.11.0-rc.10")
	check(versions(m.Sorted("nope")))

	if r, err := m.Latest("stable"); err != nil || r.Version != "1.10.0" {
		t.Errorf("Latest(stable) = %v, %v", r, err)
	}
	if r, err := m.Latest("beta"); err != nil || r.Version != "1.11.0-rc.10" {
		t.Errorf("Latest(beta) = %v, %v", r, err)
	}
	if _, err := m.Latest("empty"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Latest(empty): %v", err)
	}
	if _, err := m.Latest("nightly"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Latest(nightly): %v", err)
	}

	if r, err := m.Release("1.9.0"); err != nil || r.Version != "1.9.0" {
		t.Errorf("Release(1.9.0) = %v, %v", r, err)
	}
	if r, err := m.Release("1.0.0"); err != nil || r.Version != "1.0.0+build.7" {
		t.Errorf("Release(1.0.0) ignores build metadata: %v, %v", r, err)
	}
	if r, err := m.Release("1.0.0+other"); err != nil || r.Version != "1.0.0+build.7" {
		t.Errorf("Release(1.0.0+other): %v, %v", r, err)
	}
	for _, v := range []string{"1.3.0", "1.11.0", "junk"} {
		if _, err := m.Release(v); !errors.Is(err, ErrNotFound) {
			t.Errorf("Release(%s): %v", v, err)
		}
	}

	// Invalid versions (a manifest that fails Validate) sort first.
	m.Releases[0].Version = "bogus"
	check(versions(m.Sorted("stable")), "bogus", "1.0.0+build.7", "1.2.0", "1.9.0")
}

func TestPatchFrom(t *testing.T) {
	m := fixture(t)
	beta, _ := m.Release("1.2.0-rc.1")
	if p, ok := beta.PatchFrom("1.1.0"); !ok || p.From != "1.1.0" {
		t.Errorf("PatchFrom(1.1.0) = %v, %v", p, ok)
	}
	if _, ok := beta.PatchFrom("0.1.0"); ok {
		t.Error("PatchFrom(0.1.0) found something")
	}
	if _, ok := beta.PatchFrom("x"); ok {
		t.Error("PatchFrom(x) found something")
	}
}
