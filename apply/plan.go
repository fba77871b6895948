package apply

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/deltaup/deltaup/manifest"
)

// Step kinds.
const (
	StepPatch   = "patch"   // apply a directory bundle From -> To
	StepArchive = "archive" // extract the full archive of To
	// StepRepair rebuilds release To from the app directory and the
	// frames of To's framed archive that hold its damaged files (see
	// Repair); only ever the first step of a route, before patches.
	StepRepair = "repair"
)

// ErrNoRoute: the target has no usable archive, or is not in the manifest.
var ErrNoRoute = errors.New("apply: no route to the target version")

// Step is one download of a Route.
type Step struct {
	Kind     string // StepPatch or StepArchive
	From, To string // From is "" for an archive taken without a usable installed version
	// Format is the archive format (manifest.FormatTarZst or FormatTarGz)
	// of an archive step, "" for a patch.
	Format   string
	Artifact manifest.Artifact
	// Repair says what a repair step fetches and why; nil otherwise.
	Repair *Repair
}

// String describes the step: "1.0.0→1.1.0", "full archive of 1.2.0",
// "repair of 1.1.0 (1 file, 2 frames of its archive)".
func (s Step) String() string {
	switch {
	case s.Kind == StepPatch:
		return s.From + "→" + s.To
	case s.Kind == StepRepair && s.Repair != nil:
		return fmt.Sprintf("repair of %s (%s, %s of its archive)", s.To, count(len(s.Repair.Files), "file"), count(len(s.Repair.Frames), "frame"))
	}
	return "full archive of " + s.To
}

// Route is how to get from one version to another.
type Route struct {
	From, To string
	Steps    []Step // empty when From is To (up to date)
	// Bytes is the total download size of Steps; FullBytes the size of
	// the target's preferred full archive; Saving is FullBytes - Bytes
	// (0 for an empty route).
	Bytes, FullBytes, Saving int64
}

// Plan returns the cheapest route from version from to version to by total
// download bytes: any chain of the manifest's patches, or the target's full
// archive (tar.zst preferred), which is the only route when from is "" or
// not a release of the manifest (unknown or modified installed tree). Ties
// go to the route with fewer steps, then to the archive, then to the
// chain through lower versions. Versions in bad are never passed through
// (from and to themselves may be bad). from equal to to gives an empty
// route. Versions compare by semver precedence. Cost: O(V² + E) for V
// releases and E patches.
func Plan(m *manifest.Manifest, from, to string, bad []string) (*Route, error) {
	sorted := m.Sorted("")
	// index maps a version to its position in sorted, by semver
	// precedence; -1 when absent.
	exact := make(map[string]int, len(sorted))
	for i, r := range sorted {
		exact[r.Version] = i
	}
	index := func(v string) int {
		if i, ok := exact[v]; ok {
			return i
		}
		i, ok := slices.BinarySearchFunc(sorted, v, func(r *manifest.Release, v string) int {
			c, err := manifest.Compare(r.Version, v)
			if err != nil {
				return -1
			}
			return c
		})
		if !ok {
			return -1
		}
		return i
	}
	ti := index(to)
	if ti < 0 {
		return nil, fmt.Errorf("%w: version %s is not in the manifest", errors.Join(ErrNoRoute, manifest.ErrNotFound), to)
	}
	target := sorted[ti]
	arch, ok := preferredArchive(target)
	if !ok {
		return nil, fmt.Errorf("%w: release %s has no full archive", ErrNoRoute, target.Version)
	}
	route := &Route{From: from, To: target.Version, FullBytes: arch.Size}
	fi := -1
	if from != "" {
		fi = index(from)
	}
	if fi >= 0 {
		route.From = sorted[fi].Version
	}
	if fi == ti {
		return route, nil
	}

	n := len(sorted)
	start := n // virtual start node when from is unknown
	if fi >= 0 {
		start = fi
	}
	isBad := make([]bool, n+1)
	for _, b := range bad {
		if i := index(b); i >= 0 && i != start && i != ti {
			isBad[i] = true
		}
	}
	// Edges into each node: patches of that release.
	type edge struct {
		to    int
		patch *manifest.Patch
	}
	out := make([][]edge, n+1) // by source node
	for i, r := range sorted {
		for j := range r.Patches {
			p := &r.Patches[j]
			s := index(p.From)
			if s < 0 || isBad[s] || isBad[i] {
				continue
			}
			out[s] = append(out[s], edge{to: i, patch: p})
		}
	}

	const inf = math.MaxInt64
	type label struct {
		bytes   int64
		hops    int
		prev    int
		patch   *manifest.Patch // nil: archive step from start
		settled bool
	}
	lab := make([]label, n+1)
	for i := range lab {
		lab[i] = label{bytes: inf, prev: -1}
	}
	lab[start] = label{bytes: 0, prev: -1}
	// better reports whether (b, h) via prev beats the current label.
	better := func(cur label, b int64, h int, isArchive bool, prev int) bool {
		if b != cur.bytes {
			return b < cur.bytes
		}
		if h != cur.hops {
			return h < cur.hops
		}
		curArchive := cur.prev >= 0 && cur.patch == nil
		if isArchive != curArchive {
			return isArchive
		}
		return prev < cur.prev
	}
	// The archive: one step from the start straight to the target.
	lab[ti] = label{bytes: arch.Size, hops: 1, prev: start}
	for {
		u := -1
		for i := range lab {
			if lab[i].settled || lab[i].bytes == inf {
				continue
			}
			if u < 0 || lab[i].bytes < lab[u].bytes || (lab[i].bytes == lab[u].bytes && lab[i].hops < lab[u].hops) {
				u = i
			}
		}
		if u < 0 || u == ti {
			break
		}
		lab[u].settled = true
		for _, e := range out[u] {
			v := e.to
			if lab[v].settled {
				continue
			}
			b := satAdd(lab[u].bytes, e.patch.Size)
			if better(lab[v], b, lab[u].hops+1, false, u) {
				lab[v] = label{bytes: b, hops: lab[u].hops + 1, prev: u, patch: e.patch}
			}
		}
	}
	var steps []Step
	name := func(i int) string {
		if i == n {
			return ""
		}
		return sorted[i].Version
	}
	for v := ti; v != start; v = lab[v].prev {
		if lab[v].patch == nil {
			steps = append(steps, Step{Kind: StepArchive, From: name(lab[v].prev), To: target.Version, Format: arch.Format, Artifact: arch.Artifact})
			continue
		}
		p := lab[v].patch
		steps = append(steps, Step{Kind: StepPatch, From: name(lab[v].prev), To: sorted[v].Version, Artifact: p.Artifact})
	}
	slices.Reverse(steps)
	route.Steps = steps
	route.Bytes = lab[ti].bytes
	route.Saving = route.FullBytes - route.Bytes
	return route, nil
}

// preferredArchive returns the release's tar.zst archive, else its first.
func preferredArchive(r *manifest.Release) (manifest.Archive, bool) {
	for _, a := range r.Archives {
		if a.Format == manifest.FormatTarZst {
			return a, true
		}
	}
	if len(r.Archives) == 0 {
		return manifest.Archive{}, false
	}
	return r.Archives[0], true
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64 - 1
	}
	return a + b
}
