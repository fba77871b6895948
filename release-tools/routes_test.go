package releasetools

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// routeManifest builds a manifest of versions 1.0.0 … 1.(n-1).0 whose
// patches are the given pairs of positions (from, to).
func routeManifest(n int, patches [][2]int) *manifest.Manifest {
	m := &manifest.Manifest{App: "demo", Channels: []string{"stable"}}
	v := func(i int) string { return fmt.Sprintf("1.%d.0", i) }
	for i := range n {
		r := manifest.Release{Version: v(i), Channel: "stable", Archives: []manifest.Archive{{Format: manifest.FormatTarZst, Artifact: manifest.Artifact{Path: ArchivePath("demo", v(i), "tar.zst")}}}}
		for _, p := range patches {
			if p[1] == i {
				r.Patches = append(r.Patches, manifest.Patch{From: v(p[0]), To: v(i)})
			}
		}
		m.Releases = append(m.Releases, r)
	}
	return m
}

func keys(m map[string]bool) []string {
	var out []string
	for k, ok := range m {
		if ok {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { c, _ := manifest.Compare(out[i], out[j]); return c < 0 })
	return out
}

func TestPruneSelection(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	chain := [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 7}}
	for _, tc := range []struct {
		name    string
		n       int
		patches [][2]int
		keep    int
		keepFor time.Duration
		young   []int // positions whose archive is a day old (the rest: a year)
		kept    []string
		routed  []string
		noRoute []string // after pruning
	}{
		{name: "newest three", n: 8, patches: chain, keep: 3, kept: []string{"1.5.0", "1.6.0", "1.7.0"}},
		{name: "keep all", n: 3, patches: chain[:2], keep: 5, kept: []string{"1.0.0", "1.1.0", "1.2.0"}},
		{name: "young one kept, its chain too", n: 8, patches: chain, keep: 2, keepFor: 7 * 24 * time.Hour, young: []int{3},
			kept: []string{"1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0"}, routed: []string{"1.4.0", "1.5.0"}},
		{name: "milestone skips the gap", n: 8, patches: append(slices.Clone(chain), [2]int{3, 7}), keep: 2, keepFor: 7 * 24 * time.Hour, young: []int{3},
			kept: []string{"1.3.0", "1.6.0", "1.7.0"}},
		{name: "no route stays no route", n: 4, patches: [][2]int{{2, 3}}, keep: 3, kept: []string{"1.1.0", "1.2.0", "1.3.0"}, noRoute: []string{"1.1.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := routeManifest(tc.n, tc.patches)
			var objs []Object
			for i, r := range m.Releases {
				age := 365 * 24 * time.Hour
				if slices.Contains(tc.young, i) {
					age = 24 * time.Hour
				}
				objs = append(objs, Object{Path: r.Archives[0].Path, ModTime: now.Add(-age)})
			}
			kept := keptVersions(m, tc.keep, tc.keepFor, now, objs)
			routed := routeClosure(m, kept)
			if got := keys(kept); !slices.Equal(got, tc.kept) {
				t.Errorf("kept %v, want %v", got, tc.kept)
			}
			if got := keys(routed); !slices.Equal(got, tc.routed) {
				t.Errorf("routed %v, want %v", got, tc.routed)
			}
			next := *m
			next.Releases = nil
			for _, r := range m.Releases {
				if kept[r.Version] {
					r.Patches = slices.DeleteFunc(slices.Clone(r.Patches), func(p manifest.Patch) bool { return !kept[p.From] })
					next.Releases = append(next.Releases, r)
				}
			}
			if _, none := patchRoutes(&next); !slices.Equal(none, tc.noRoute) {
				t.Errorf("no route after pruning: %v, want %v", none, tc.noRoute)
			}
		})
	}
}
