package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// treePair is one old→new update of a whole directory tree.
type treePair struct {
	App      string // corpus subdirectory: "prettier" or "esbuild"
	Old, New string // versions
}

// String formats the pair as "APP OLD → NEW".
func (p treePair) String() string { return p.App + " " + p.Old + " → " + p.New }

// treePairs are the tree updates measured by --trees: for each app a small
// step, the last step and the whole range.
var treePairs = []treePair{
	{"prettier", "3.3.0", "3.3.1"},
	{"prettier", "3.3.2", "3.3.3"},
	{"prettier", "3.3.0", "3.3.3"},
	{"esbuild", "0.25.0", "0.25.1"},
	{"esbuild", "0.25.11", "0.25.12"},
	{"esbuild", "0.25.0", "0.25.12"},
}

// publishScenario is a repository built by publishing Setup (untimed) and
// then Timed (timed), each with --patches-from PatchesFrom.
type publishScenario struct {
	App         string
	Setup       []string // versions published first, untimed, oldest first
	Timed       string   // the version whose publish is timed
	PatchesFrom int
}

// publishScenarios are the repositories measured by --trees.
var publishScenarios = []publishScenario{
	{App: "prettier", Setup: []string{"3.3.0", "3.3.1", "3.3.2"}, Timed: "3.3.3", PatchesFrom: 3},
	{App: "esbuild", Setup: []string{"0.25.9", "0.25.10", "0.25.11"}, Timed: "0.25.12", PatchesFrom: 3},
}

// treeDir returns the directory of version v of app in corpus.
func treeDir(corpus, app, v string) string {
	return filepath.Join(corpus, app, v)
}

// checkTreeCorpus verifies that every tree needed by pairs and scenarios is
// a directory in corpus. The error wraps errCorpusMissing.
func checkTreeCorpus(corpus string, pairs []treePair, scenarios []publishScenario) error {
	var missing []string
	seen := map[string]bool{}
	need := func(app, v string) error {
		dir := treeDir(corpus, app, v)
		if seen[dir] {
			return nil
		}
		seen[dir] = true
		st, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, dir)
		case err != nil:
			return fmt.Errorf("%w: %v", errCorpusMissing, err)
		case !st.IsDir():
			missing = append(missing, dir+" (not a directory)")
		}
		return nil
	}
	for _, p := range pairs {
		for _, v := range []string{p.Old, p.New} {
			if err := need(p.App, v); err != nil {
				return err
			}
		}
	}
	for _, s := range scenarios {
		for _, v := range append(append([]string(nil), s.Setup...), s.Timed) {
			if err := need(s.App, v); err != nil {
				return err
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %d tree(s) absent under %s:\n  %s",
			errCorpusMissing, len(missing), corpus, strings.Join(missing, "\n  "))
	}
	return nil
}

// perFileTools are the tools whose single-file patches make up the
// "sum of per-file deltas", deltaup's native format first. Those not
// installed are skipped.
var perFileTools = []string{toolDeltaup, toolBsdiff, toolXdelta3, toolZstd}

// fileCost is what sending one file of a tree update costs on its own.
type fileCost struct {
	Path    string
	Added   bool  // no file at this path in the old tree: the cost is Zstd
	NewSize int64 // bytes of the new file
	// Changed files: patch bytes per tool that succeeded, and the errors of
	// those that failed.
	Patches map[string]int64
	Errs    map[string]string
	// Added files: the zstd -19 size, or NewSize when zstd is unavailable
	// or failed (Raw set).
	Zstd int64
	Raw  bool
}

// perFileSum totals fileCosts. Tool sums cover changed files only; added
// files cost AddedBytes whatever the tool.
type perFileSum struct {
	Changed, Added int
	AddedBytes     int64            // Σ zstd -19 sizes of added files
	AddedRaw       int              // added files counted at their raw size
	Tool           map[string]int64 // Σ patch bytes over changed files, per tool
	Missing        map[string]int   // changed files where the tool has no patch
	Best           int64            // Σ over changed files of the smallest patch of any tool
	BestMissing    int              // changed files no tool could patch
	Wins           map[string]int   // changed files where the tool was smallest (ties: earlier tool)
}

// sumPerFile totals costs over tools (in preference order for ties).
func sumPerFile(costs []fileCost, tools []string) perFileSum {
	s := perFileSum{Tool: map[string]int64{}, Missing: map[string]int{}, Wins: map[string]int{}}
	for _, c := range costs {
		if c.Added {
			s.Added++
			s.AddedBytes += c.Zstd
			if c.Raw {
				s.AddedRaw++
			}
			continue
		}
		s.Changed++
		best, winner := int64(-1), ""
		for _, t := range tools {
			n, ok := c.Patches[t]
			if !ok {
				s.Missing[t]++
				continue
			}
			s.Tool[t] += n
			if best < 0 || n < best {
				best, winner = n, t
			}
		}
		if winner == "" {
			s.BestMissing++
			continue
		}
		s.Best += best
		s.Wins[winner]++
	}
	return s
}

// total returns the cost of the whole update with tool's patches for the
// changed files, and whether every changed file had one.
func (s perFileSum) total(tool string) (int64, bool) {
	return s.Tool[tool] + s.AddedBytes, s.Missing[tool] == 0
}

// bestTotal returns the cost of the whole update with the best patch of
// any tool per changed file, and whether every changed file had one.
func (s perFileSum) bestTotal() (int64, bool) {
	return s.Best + s.AddedBytes, s.BestMissing == 0
}

// winsText renders Wins as "deltaup 30, zstd 6" in tools order.
func (s perFileSum) winsText(tools []string) string {
	var parts []string
	for _, t := range tools {
		if n := s.Wins[t]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", perFileLabel(t), n))
		}
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

// perFileLabel is the report name of a per-file tool.
func perFileLabel(tool string) string {
	if tool == toolDeltaup {
		return "mkdelta native"
	}
	return tool
}

// targetBundleVsNative: a bundle must be at most this times the sum of
// mkdelta's own per-file native patches (plus zstd -19 of added files).
const targetBundleVsNative = 1.01

// timing summarises repeated runs of one command.
type timing struct {
	Runs int
	Secs float64 // median wall time
	RSS  int64   // max peak RSS, or unknownRSS
}

// aggregateTiming combines runs: median wall time, max peak RSS.
func aggregateTiming(runs []procStats) timing {
	t := timing{Runs: len(runs), RSS: unknownRSS}
	var secs []float64
	var rss []int64
	for _, r := range runs {
		secs = append(secs, r.wall.Seconds())
		rss = append(rss, r.rss)
	}
	t.Secs = median(secs)
	t.RSS = maxRSS(rss)
	return t
}

// Archive formats written by mkdelta publish.
const (
	fmtTarZst = "tar.zst"
	fmtTarGz  = "tar.gz"
)

// repoPatch is one bundle found in a repository.
type repoPatch struct {
	From, To string
	Bytes    int64
}

// repoArtifacts lists the archives and patches of one app in a repository.
type repoArtifacts struct {
	Archives map[string]map[string]int64 // version → format → bytes
	Patches  []repoPatch                 // by To, then From (version order)
}

// parseArchiveName parses "APP-VERSION.tar.zst" (or .tar.gz).
func parseArchiveName(app, name string) (version, format string, ok bool) {
	rest, ok := strings.CutPrefix(name, app+"-")
	if !ok {
		return "", "", false
	}
	for _, f := range []string{fmtTarZst, fmtTarGz} {
		if v, ok := strings.CutSuffix(rest, "."+f); ok && v != "" {
			return v, f, true
		}
	}
	return "", "", false
}

// parsePatchName parses "APP-FROM-to-TO.dupb".
func parsePatchName(app, name string) (from, to string, ok bool) {
	rest, ok := strings.CutPrefix(name, app+"-")
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, ".dupb")
	if !ok {
		return "", "", false
	}
	from, to, ok = strings.Cut(rest, "-to-")
	if !ok || from == "" || to == "" {
		return "", "", false
	}
	return from, to, true
}

// listRepoArtifacts reads the sizes of app's archives and patches in the
// repository at repo. Missing directories mean no artifacts of that kind.
func listRepoArtifacts(repo, app string) (repoArtifacts, error) {
	a := repoArtifacts{Archives: map[string]map[string]int64{}}
	read := func(dir string) ([]fs.DirEntry, error) {
		ents, err := os.ReadDir(filepath.Join(repo, dir))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return ents, err
	}
	size := func(d fs.DirEntry) (int64, error) {
		info, err := d.Info()
		if err != nil {
			return 0, err
		}
		return info.Size(), nil
	}
	ents, err := read("archives")
	if err != nil {
		return a, err
	}
	for _, d := range ents {
		v, f, ok := parseArchiveName(app, d.Name())
		if !ok || !d.Type().IsRegular() {
			continue
		}
		n, err := size(d)
		if err != nil {
			return a, err
		}
		if a.Archives[v] == nil {
			a.Archives[v] = map[string]int64{}
		}
		a.Archives[v][f] = n
	}
	if ents, err = read("patches"); err != nil {
		return a, err
	}
	for _, d := range ents {
		from, to, ok := parsePatchName(app, d.Name())
		if !ok || !d.Type().IsRegular() {
			continue
		}
		n, err := size(d)
		if err != nil {
			return a, err
		}
		a.Patches = append(a.Patches, repoPatch{from, to, n})
	}
	sort.Slice(a.Patches, func(i, j int) bool {
		pi, pj := a.Patches[i], a.Patches[j]
		if pi.To != pj.To {
			return versionLess(pi.To, pj.To)
		}
		return versionLess(pi.From, pj.From)
	})
	return a, nil
}

// versions returns the versions with archives, in version order.
func (a repoArtifacts) versions() []string {
	var vs []string
	for v := range a.Archives {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return versionLess(vs[i], vs[j]) })
	return vs
}

// patchesTo returns the patches whose target is version to.
func (a repoArtifacts) patchesTo(to string) []repoPatch {
	var ps []repoPatch
	for _, p := range a.Patches {
		if p.To == to {
			ps = append(ps, p)
		}
	}
	return ps
}

// versionLess orders dotted versions numerically component by component
// ("0.25.9" < "0.25.10"); non-numeric components compare as strings, and a
// version is less than any longer version it prefixes.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		x, errX := strconv.ParseUint(as[i], 10, 64)
		y, errY := strconv.ParseUint(bs[i], 10, 64)
		if errX == nil && errY == nil {
			return x < y
		}
		return as[i] < bs[i]
	}
	return len(as) < len(bs)
}
