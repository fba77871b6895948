package apply

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/manifest"
)

// ckPlanManifest builds an in-memory manifest: archives maps version to
// its tar.zst size (a negative size: a tar.gz only, of -size), patches
// are "FROM>TO:SIZE".
func ckPlanManifest(t *testing.T, archives map[string]int64, patches ...string) *manifest.Manifest {
	t.Helper()
	m := &manifest.Manifest{Schema: 1, App: "demo", Channels: []string{"stable"}, Sequence: 1}
	idx := map[string]int{}
	for v, size := range archives {
		a := manifest.Archive{Format: manifest.FormatTarZst, Artifact: manifest.Artifact{Path: "archives/demo-" + v + ".tar.zst", Size: size}}
		if size < 0 {
			a = manifest.Archive{Format: manifest.FormatTarGz, Artifact: manifest.Artifact{Path: "archives/demo-" + v + ".tar.gz", Size: -size}}
		}
		idx[v] = len(m.Releases)
		m.Releases = append(m.Releases, manifest.Release{Version: v, Channel: "stable",
			Archives: []manifest.Archive{{Format: manifest.FormatTarGz, Artifact: manifest.Artifact{Path: "archives/demo-" + v + ".tar.gz", Size: 1 << 40}}, a}})
		if size < 0 {
			m.Releases[len(m.Releases)-1].Archives = []manifest.Archive{a}
		}
	}
	for _, p := range patches {
		var from, to string
		var size int64
		if _, err := fmt.Sscanf(strings.NewReplacer(">", " ", ":", " ").Replace(p), "%s %s %d", &from, &to, &size); err != nil {
			t.Fatalf("patch %q: %v", p, err)
		}
		i, ok := idx[to]
		if !ok {
			t.Fatalf("patch %q: no release %s", p, to)
		}
		m.Releases[i].Patches = append(m.Releases[i].Patches, manifest.Patch{From: from, To: to,
			Artifact: manifest.Artifact{Path: "patches/demo-" + from + "-to-" + to + ".dupb", Size: size}})
	}
	return m
}

func ckRouteString(r *Route) string {
	var parts []string
	for _, s := range r.Steps {
		if s.Kind == StepArchive {
			parts = append(parts, "archive("+s.Format+")")
		} else {
			parts = append(parts, s.From+">"+s.To)
		}
	}
	return strings.Join(parts, " ")
}

func TestPlan(t *testing.T) {
	diamond := []string{"1.0.0>1.1.0:10", "1.0.0>1.2.0:30", "1.1.0>2.0.0:50", "1.2.0>2.0.0:20"}
	four := map[string]int64{"1.0.0": 1000, "1.1.0": 1000, "1.2.0": 1000, "2.0.0": 1000}
	cases := []struct {
		name     string
		archives map[string]int64
		patches  []string
		from, to string
		bad      []string
		want     string // steps
		bytes    int64
		err      error
	}{
		{name: "diamond", archives: four, patches: diamond, from: "1.0.0", to: "2.0.0", want: "1.0.0>1.2.0 1.2.0>2.0.0", bytes: 50},
		{name: "diamond from middle", archives: four, patches: diamond, from: "1.1.0", to: "2.0.0", want: "1.1.0>2.0.0", bytes: 50},
		{name: "chain cheaper than direct", archives: four,
			patches: []string{"1.0.0>1.1.0:10", "1.1.0>1.2.0:10", "1.2.0>2.0.0:10", "1.0.0>2.0.0:100"},
			from:    "1.0.0", to: "2.0.0", want: "1.0.0>1.1.0 1.1.0>1.2.0 1.2.0>2.0.0", bytes: 30},
		{name: "archive cheaper than any chain", archives: map[string]int64{"1.0.0": 1000, "1.1.0": 1000, "2.0.0": 90},
			patches: []string{"1.0.0>1.1.0:50", "1.1.0>2.0.0:50", "1.0.0>2.0.0:95"},
			from:    "1.0.0", to: "2.0.0", want: "archive(tar.zst)", bytes: 90},
		{name: "tie goes to fewer hops", archives: four,
			patches: []string{"1.0.0>1.1.0:20", "1.1.0>2.0.0:20", "1.0.0>2.0.0:40"},
			from:    "1.0.0", to: "2.0.0", want: "1.0.0>2.0.0", bytes: 40},
		{name: "tie with archive goes to the archive", archives: map[string]int64{"1.0.0": 1000, "2.0.0": 40},
			patches: []string{"1.0.0>2.0.0:40"}, from: "1.0.0", to: "2.0.0", want: "archive(tar.zst)", bytes: 40},
		{name: "tie on bytes and hops is deterministic", archives: four,
			patches: []string{"1.0.0>1.1.0:10", "1.1.0>2.0.0:10", "1.0.0>1.2.0:10", "1.2.0>2.0.0:10"},
			from:    "1.0.0", to: "2.0.0", want: "1.0.0>1.1.0 1.1.0>2.0.0", bytes: 20},
		{name: "unreachable patches", archives: four,
			patches: []string{"1.1.0>1.2.0:1", "1.2.0>2.0.0:1"},
			from:    "1.0.0", to: "2.0.0", want: "archive(tar.zst)", bytes: 1000},
		{name: "bad intermediate avoided", archives: four, patches: diamond, from: "1.0.0", to: "2.0.0", bad: []string{"1.2.0"},
			want: "1.0.0>1.1.0 1.1.0>2.0.0", bytes: 60},
		{name: "every intermediate bad", archives: four, patches: diamond, from: "1.0.0", to: "2.0.0", bad: []string{"1.2.0", "1.1.0"},
			want: "archive(tar.zst)", bytes: 1000},
		{name: "bad from and to are fine", archives: four, patches: diamond, from: "1.2.0", to: "2.0.0", bad: []string{"1.2.0", "2.0.0"},
			want: "1.2.0>2.0.0", bytes: 20},
		{name: "unknown from: archive only", archives: four, patches: diamond, from: "", to: "2.0.0", want: "archive(tar.zst)", bytes: 1000},
		{name: "from not in manifest: archive only", archives: four, patches: diamond, from: "0.9.0", to: "2.0.0", want: "archive(tar.zst)", bytes: 1000},
		{name: "tar.gz when no tar.zst", archives: map[string]int64{"1.0.0": 10, "2.0.0": -70}, from: "1.0.0", to: "2.0.0", want: "archive(tar.gz)", bytes: 70},
		{name: "downgrade by archive", archives: four, patches: diamond, from: "2.0.0", to: "1.1.0", want: "archive(tar.zst)", bytes: 1000},
		{name: "up to date", archives: four, patches: diamond, from: "2.0.0", to: "2.0.0", want: "", bytes: 0},
		{name: "up to date, build metadata", archives: four, patches: diamond, from: "2.0.0+build.7", to: "2.0.0", want: "", bytes: 0},
		{name: "target missing", archives: four, patches: diamond, from: "1.0.0", to: "3.0.0", err: manifest.ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := ckPlanManifest(t, c.archives, c.patches...)
			r, err := Plan(m, c.from, c.to, c.bad)
			if c.err != nil {
				if !errors.Is(err, c.err) || !errors.Is(err, ErrNoRoute) {
					t.Fatalf("got %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ckRouteString(r); got != c.want || r.Bytes != c.bytes {
				t.Fatalf("route %q (%d bytes), want %q (%d bytes)", got, r.Bytes, c.want, c.bytes)
			}
			full := c.archives[c.to]
			if full < 0 {
				full = -full
			}
			if r.FullBytes != full {
				t.Errorf("FullBytes %d, want %d", r.FullBytes, full)
			}
			if len(r.Steps) > 0 && r.Saving != r.FullBytes-r.Bytes || len(r.Steps) == 0 && r.Saving != 0 {
				t.Errorf("Saving %d", r.Saving)
			}
			var sum int64
			prev := r.From
			for i, s := range r.Steps {
				sum += s.Artifact.Size
				if s.Kind == StepPatch && s.From != prev {
					t.Errorf("step %d starts at %s, previous ends at %s", i, s.From, prev)
				}
				prev = s.To
			}
			if sum != r.Bytes || (len(r.Steps) > 0 && prev != c.to) {
				t.Errorf("steps sum to %d and end at %s", sum, prev)
			}
		})
	}
}

// A long chain: planning stays fast and picks the all-patch route.
func TestPlanLongChain(t *testing.T) {
	archives := map[string]int64{}
	var patches []string
	for i := 0; i < 300; i++ {
		archives[fmt.Sprintf("1.%d.0", i)] = 1 << 20
		if i > 0 {
			patches = append(patches, fmt.Sprintf("1.%d.0>1.%d.0:100", i-1, i))
		}
		if i > 1 {
			patches = append(patches, fmt.Sprintf("1.%d.0>1.%d.0:250", i-2, i))
		}
	}
	m := ckPlanManifest(t, archives, patches...)
	r, err := Plan(m, "1.0.0", "1.299.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes != 299*100 || len(r.Steps) != 299 {
		t.Errorf("route: %d bytes, %d steps", r.Bytes, len(r.Steps))
	}
}
