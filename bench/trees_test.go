package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsTrees(t *testing.T) {
	tests := []struct {
		args      []string
		wantTrees bool
		wantErr   string
	}{
		{args: nil},
		{args: []string{"--trees"}, wantTrees: true},
		{args: []string{"--trees", "--runs", "3", "--write", "--corpus", "/x"}, wantTrees: true},
		{args: []string{"--trees", "--pairs", "all"}, wantErr: "--pairs is for single-file mode"},
		{args: []string{"--tools", "zstd", "--trees"}, wantErr: "--tools is for single-file mode"},
		{args: []string{"--trees", "--runs", "0"}, wantErr: "--runs must be at least 1"},
		{args: []string{"--pairs", "all", "--tools", "zstd"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.trees != tc.wantTrees {
				t.Errorf("trees = %v, want %v", o.trees, tc.wantTrees)
			}
		})
	}
}

// file returns a regular-file entry whose content is identified by id.
func file(id byte, size int64, mode os.FileMode) treeEntry {
	e := treeEntry{Kind: kindFile, Size: size, Mode: mode}
	e.Sum[0] = id
	return e
}

func TestClassifyTrees(t *testing.T) {
	dir := treeEntry{Kind: kindDir, Mode: 0o755}
	link := treeEntry{Kind: kindSymlink, Target: "a"}
	tests := []struct {
		name     string
		old, new treeIndex
		want     treeDiff
	}{
		{name: "empty"},
		{
			name: "all classes",
			old: treeIndex{
				"a": file(1, 10, 0o644), "b": file(2, 10, 0o644), "gone": file(3, 1, 0o644),
				"d": dir, "d/x": file(4, 5, 0o755), "mode": file(5, 5, 0o644),
			},
			new: treeIndex{
				"a": file(1, 10, 0o644), "b": file(9, 10, 0o644), "new": file(6, 7, 0o644),
				"d": dir, "d/x": file(4, 6, 0o755), "mode": file(5, 5, 0o755),
			},
			want: treeDiff{
				Unchanged: []string{"a", "mode"},
				Changed:   []string{"b", "d/x"},
				Added:     []string{"new"},
				Removed:   []string{"gone"},
			},
		},
		{
			name: "kind changes are add and remove",
			old:  treeIndex{"p": file(1, 1, 0o644), "q": link, "r": dir},
			new:  treeIndex{"p": link, "q": file(1, 1, 0o644), "r": file(2, 2, 0o644)},
			want: treeDiff{Added: []string{"q", "r"}, Removed: []string{"p"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classifyTrees(tc.old, tc.new); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("classifyTrees = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCompareTrees(t *testing.T) {
	base := treeIndex{
		"bin":     {Kind: kindDir, Mode: 0o755},
		"bin/x":   file(1, 3, 0o755),
		"link":    {Kind: kindSymlink, Target: "bin/x"},
		"README":  file(2, 4, 0o644),
		"private": {Kind: kindDir, Mode: 0o700},
	}
	with := func(edit func(treeIndex)) treeIndex {
		c := treeIndex{}
		for k, v := range base {
			c[k] = v
		}
		edit(c)
		return c
	}
	tests := []struct {
		name string
		got  treeIndex
		want []string
	}{
		{name: "identical", got: base},
		{name: "content", got: with(func(c treeIndex) { c["bin/x"] = file(7, 3, 0o755) }),
			want: []string{"bin/x: content differs (3 bytes, want 3)"}},
		{name: "file mode", got: with(func(c treeIndex) { c["bin/x"] = file(1, 3, 0o644) }),
			want: []string{"bin/x: mode 0644, want 0755"}},
		{name: "dir mode", got: with(func(c treeIndex) { c["private"] = treeEntry{Kind: kindDir, Mode: 0o755} }),
			want: []string{"private: mode 0755, want 0700"}},
		{name: "symlink target", got: with(func(c treeIndex) { c["link"] = treeEntry{Kind: kindSymlink, Target: "README"} }),
			want: []string{`link: symlink to "README", want "bin/x"`}},
		{name: "kind", got: with(func(c treeIndex) { c["link"] = file(1, 3, 0o755) }),
			want: []string{"link: file, want symlink"}},
		{name: "missing and extra", got: with(func(c treeIndex) { delete(c, "README"); c["zzz"] = file(3, 1, 0o644) }),
			want: []string{"README: missing", "zzz: unexpected file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := compareTrees(base, tc.got); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("compareTrees = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSummarizeDiffs(t *testing.T) {
	tests := []struct {
		in   []string
		max  int
		want string
	}{
		{nil, 3, ""},
		{[]string{"a", "b"}, 3, "a; b"},
		{[]string{"a", "b", "c", "d", "e"}, 3, "a; b; c; and 2 more"},
	}
	for _, tc := range tests {
		if got := summarizeDiffs(tc.in, tc.max); got != tc.want {
			t.Errorf("summarizeDiffs(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// TestScanAndCopyTree builds a small tree on disk, copies it and checks
// that scanTree sees the copy as identical, then that edits are caught.
func TestScanAndCopyTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"", 0o755}, {"bin", 0o755}, {"private", 0o700}} {
		if err := os.MkdirAll(filepath.Join(src, d.path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(src, d.path), d.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		path, body string
		mode       os.FileMode
	}{{"bin/tool", "#!/bin/sh\n", 0o755}, {"README.md", "hello", 0o644}, {"private/key", "", 0o600}} {
		p := filepath.Join(src, f.path)
		if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("bin/tool", filepath.Join(src, "tool")); err != nil {
		t.Skipf("symlinks unsupported: %v", err)
	}

	want, err := scanTree(src)
	if err != nil {
		t.Fatal(err)
	}
	if files, bytes := want.fileStats(); files != 3 || bytes != 15 {
		t.Errorf("fileStats = %d files, %d bytes; want 3, 15", files, bytes)
	}
	if got := want.sortedPaths(); !reflect.DeepEqual(got, []string{"README.md", "bin", "bin/tool", "private", "private/key", "tool"}) {
		t.Errorf("paths = %q", got)
	}
	if e := want["tool"]; e.Kind != kindSymlink || e.Target != "bin/tool" {
		t.Errorf("symlink entry = %+v", e)
	}

	dst := filepath.Join(t.TempDir(), "dst")
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	got, err := scanTree(dst)
	if err != nil {
		t.Fatal(err)
	}
	if d := compareTrees(want, got); len(d) != 0 {
		t.Fatalf("copy differs: %q", d)
	}

	if err := os.WriteFile(filepath.Join(dst, "README.md"), []byte("HELLO"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dst, "bin/tool"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = scanTree(dst); err != nil {
		t.Fatal(err)
	}
	wantDiffs := []string{"README.md: content differs (5 bytes, want 5)", "bin/tool: mode 0644, want 0755"}
	if d := compareTrees(want, got); !reflect.DeepEqual(d, wantDiffs) {
		t.Errorf("after edits: %q, want %q", d, wantDiffs)
	}
}

func TestSumPerFile(t *testing.T) {
	tools := []string{toolDeltaup, toolBsdiff, toolZstd}
	changed := func(path string, sizes map[string]int64) fileCost {
		return fileCost{Path: path, Patches: sizes}
	}
	tests := []struct {
		name        string
		costs       []fileCost
		wantNative  int64
		nativeOK    bool
		wantBest    int64
		bestOK      bool
		wantWins    string
		wantMissing map[string]int
	}{
		{name: "nothing", nativeOK: true, bestOK: true, wantWins: "—", wantMissing: map[string]int{}},
		{
			name: "native wins ties, others win when smaller, added files count for all",
			costs: []fileCost{
				changed("a", map[string]int64{toolDeltaup: 100, toolBsdiff: 100, toolZstd: 150}),
				changed("b", map[string]int64{toolDeltaup: 50, toolBsdiff: 70, toolZstd: 40}),
				{Path: "n", Added: true, NewSize: 1000, Zstd: 300},
				{Path: "m", Added: true, NewSize: 20, Zstd: 20, Raw: true},
			},
			wantNative: 100 + 50 + 320, nativeOK: true,
			wantBest: 100 + 40 + 320, bestOK: true,
			wantWins: "mkdelta native 1, zstd 1", wantMissing: map[string]int{},
		},
		{
			name: "a failed tool makes its sum incomplete but not the best",
			costs: []fileCost{
				changed("a", map[string]int64{toolBsdiff: 90, toolZstd: 80}),
				changed("b", map[string]int64{toolDeltaup: 10, toolBsdiff: 20}),
			},
			wantNative: 10, nativeOK: false,
			wantBest: 80 + 10, bestOK: true,
			wantWins: "mkdelta native 1, zstd 1", wantMissing: map[string]int{toolDeltaup: 1, toolZstd: 1},
		},
		{
			name:       "no tool at all",
			costs:      []fileCost{changed("a", map[string]int64{})},
			nativeOK:   false,
			bestOK:     false,
			wantWins:   "—",
			wantNative: 0, wantBest: 0,
			wantMissing: map[string]int{toolDeltaup: 1, toolBsdiff: 1, toolZstd: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := sumPerFile(tc.costs, tools)
			if n, ok := s.total(toolDeltaup); n != tc.wantNative || ok != tc.nativeOK {
				t.Errorf("native total = %d, %v; want %d, %v", n, ok, tc.wantNative, tc.nativeOK)
			}
			if n, ok := s.bestTotal(); n != tc.wantBest || ok != tc.bestOK {
				t.Errorf("best total = %d, %v; want %d, %v", n, ok, tc.wantBest, tc.bestOK)
			}
			if got := s.winsText(tools); got != tc.wantWins {
				t.Errorf("wins = %q, want %q", got, tc.wantWins)
			}
			if !reflect.DeepEqual(s.Missing, tc.wantMissing) {
				t.Errorf("missing = %v, want %v", s.Missing, tc.wantMissing)
			}
		})
	}
}

func TestBundleTarget(t *testing.T) {
	tests := []struct {
		bundle, native int64
		want           Status
	}{
		{1010, 1000, StatusPass},
		{1011, 1000, StatusFail},
		{500, 1000, StatusPass},
		{-1, 1000, StatusNA},
		{100, -1, StatusNA},
		{100, 0, StatusNA},
	}
	for _, tc := range tests {
		if got := bundleTarget(tc.bundle, tc.native); got != tc.want {
			t.Errorf("bundleTarget(%d, %d) = %v, want %v", tc.bundle, tc.native, got, tc.want)
		}
	}
}

func TestParseArtifactNames(t *testing.T) {
	archives := []struct {
		app, name, version, format string
		ok                         bool
	}{
		{"prettier", "prettier-3.3.3.tar.zst", "3.3.3", fmtTarZst, true},
		{"prettier", "prettier-3.3.3.tar.gz", "3.3.3", fmtTarGz, true},
		{"esbuild", "esbuild-0.25.12-rc.1.tar.zst", "0.25.12-rc.1", fmtTarZst, true},
		{"prettier", "prettier-3.3.3.zip", "", "", false},
		{"prettier", "esbuild-3.3.3.tar.zst", "", "", false},
		{"prettier", "prettier-.tar.gz", "", "", false},
	}
	for _, tc := range archives {
		v, f, ok := parseArchiveName(tc.app, tc.name)
		if v != tc.version || f != tc.format || ok != tc.ok {
			t.Errorf("parseArchiveName(%q, %q) = %q, %q, %v; want %q, %q, %v", tc.app, tc.name, v, f, ok, tc.version, tc.format, tc.ok)
		}
	}
	patches := []struct {
		name, from, to string
		ok             bool
	}{
		{"prettier-3.3.0-to-3.3.3.dupb", "3.3.0", "3.3.3", true},
		{"prettier-3.3.0-beta-to-3.3.3.dupb", "3.3.0-beta", "3.3.3", true},
		{"prettier-3.3.0-to-3.3.3.tmp", "", "", false},
		{"prettier-3.3.0.dupb", "", "", false},
		{"prettier--to-3.3.3.dupb", "", "", false},
		{"other-3.3.0-to-3.3.3.dupb", "", "", false},
	}
	for _, tc := range patches {
		from, to, ok := parsePatchName("prettier", tc.name)
		if from != tc.from || to != tc.to || ok != tc.ok {
			t.Errorf("parsePatchName(%q) = %q, %q, %v; want %q, %q, %v", tc.name, from, to, ok, tc.from, tc.to, tc.ok)
		}
	}
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"0.25.9", "0.25.10", true},
		{"0.25.10", "0.25.9", false},
		{"3.3.0", "3.3.0", false},
		{"1.2", "1.2.0", true},
		{"1.10.0", "1.9.9", false},
		{"1.x", "1.y", true},
	}
	for _, tc := range tests {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestAggregateTiming(t *testing.T) {
	tests := []struct {
		name string
		in   []procStats
		want timing
	}{
		{"none", nil, timing{RSS: unknownRSS}},
		{"median and max", []procStats{
			{wall: 3 * time.Second, rss: 10},
			{wall: 1 * time.Second, rss: unknownRSS},
			{wall: 2 * time.Second, rss: 30},
		}, timing{Runs: 3, Secs: 2, RSS: 30}},
	}
	for _, tc := range tests {
		if got := aggregateTiming(tc.in); got != tc.want {
			t.Errorf("%s: aggregateTiming = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestListRepoArtifacts(t *testing.T) {
	repo := t.TempDir()
	files := map[string]int{
		"archives/app-1.0.9.tar.zst":       9,
		"archives/app-1.0.10.tar.zst":      10,
		"archives/app-1.0.10.tar.gz":       11,
		"archives/other-1.0.0.tar.zst":     1,
		"patches/app-1.0.9-to-1.0.10.dupb": 3,
		"patches/app-1.0.8-to-1.0.10.dupb": 4,
		"patches/app-1.0.8-to-1.0.9.dupb":  2,
		"patches/.tmp-xyz":                 1,
		"manifest.json":                    5,
	}
	for name, n := range files {
		p := filepath.Join(repo, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, err := listRepoArtifacts(repo, "app")
	if err != nil {
		t.Fatal(err)
	}
	wantArchives := map[string]map[string]int64{"1.0.9": {fmtTarZst: 9}, "1.0.10": {fmtTarZst: 10, fmtTarGz: 11}}
	if !reflect.DeepEqual(a.Archives, wantArchives) {
		t.Errorf("archives = %v, want %v", a.Archives, wantArchives)
	}
	wantPatches := []repoPatch{{"1.0.8", "1.0.9", 2}, {"1.0.8", "1.0.10", 4}, {"1.0.9", "1.0.10", 3}}
	if !reflect.DeepEqual(a.Patches, wantPatches) {
		t.Errorf("patches = %v, want %v", a.Patches, wantPatches)
	}
	if got := a.versions(); !reflect.DeepEqual(got, []string{"1.0.9", "1.0.10"}) {
		t.Errorf("versions = %q", got)
	}
	if got := a.patchesTo("1.0.10"); len(got) != 2 {
		t.Errorf("patchesTo(1.0.10) = %v", got)
	}

	empty, err := listRepoArtifacts(filepath.Join(repo, "nope"), "app")
	if err != nil || len(empty.Archives) != 0 || len(empty.Patches) != 0 {
		t.Errorf("missing repo: %+v, %v", empty, err)
	}
}

func TestCheckTreeCorpus(t *testing.T) {
	dir := t.TempDir()
	pairs := []treePair{{"app", "1.0", "1.1"}}
	scen := []publishScenario{{App: "app", Setup: []string{"1.0"}, Timed: "1.2"}}
	err := checkTreeCorpus(dir, pairs, scen)
	if !errors.Is(err, errCorpusMissing) || !strings.Contains(err.Error(), "3 tree(s) absent") {
		t.Fatalf("empty corpus: err = %v", err)
	}
	for _, v := range []string{"1.0", "1.1"} {
		if err := os.MkdirAll(treeDir(dir, "app", v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(treeDir(dir, "app", "1.2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err = checkTreeCorpus(dir, pairs, scen)
	if !errors.Is(err, errCorpusMissing) || !strings.Contains(err.Error(), "1.2 (not a directory)") {
		t.Fatalf("file instead of tree: err = %v", err)
	}
	if err := os.Remove(treeDir(dir, "app", "1.2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(treeDir(dir, "app", "1.2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkTreeCorpus(dir, pairs, scen); err != nil {
		t.Fatalf("complete corpus: %v", err)
	}
}

func TestTreePairsAndScenarios(t *testing.T) {
	if len(treePairs) != 6 {
		t.Errorf("%d tree pairs, want 6", len(treePairs))
	}
	for _, p := range treePairs {
		if !versionLess(p.Old, p.New) {
			t.Errorf("pair %s does not go up", p)
		}
	}
	for _, s := range publishScenarios {
		vs := append(append([]string(nil), s.Setup...), s.Timed)
		for i := 1; i < len(vs); i++ {
			if !versionLess(vs[i-1], vs[i]) {
				t.Errorf("%s scenario not in version order: %q", s.App, vs)
			}
		}
		if s.PatchesFrom != 3 {
			t.Errorf("%s scenario: --patches-from %d, want 3", s.App, s.PatchesFrom)
		}
	}
}

func TestFormatTreeReport(t *testing.T) {
	tools := []string{toolDeltaup, toolZstd}
	costs := []fileCost{
		{Path: "index.js", NewSize: 5000, Patches: map[string]int64{toolDeltaup: 400, toolZstd: 500}, Errs: map[string]string{}},
		{Path: "bin/x", NewSize: 9000, Patches: map[string]int64{toolDeltaup: 600}, Errs: map[string]string{toolZstd: "zstd: boom"}},
		{Path: "new.js", Added: true, NewSize: 300, Zstd: 100},
	}
	good := treePairResult{
		Pair: treePair{"prettier", "3.3.0", "3.3.1"}, OldFiles: 3, NewFiles: 4, OldBytes: 14000, NewBytes: 14300,
		Diff:   treeDiff{Unchanged: []string{"README"}, Changed: []string{"index.js", "bin/x"}, Added: []string{"new.js"}},
		Bundle: Result{Tool: "bundle", Runs: 1, PatchBytes: 1105, DiffSecs: 0.5, ApplySecs: 0.1, DiffRSS: 20 * mib, ApplyRSS: 10 * mib, RoundTripOK: true},
		TarZst: 4000, PubZst: 4100, PubGz: 4500, Costs: costs, Sums: sumPerFile(costs, tools),
	}
	big := good
	big.Pair = treePair{"esbuild", "0.25.0", "0.25.1"}
	big.Bundle.PatchBytes = 1200
	big.Bundle.RoundTripOK = false
	big.RoundTripIssue = "bin/x: mode 0644, want 0755"
	broken := treePairResult{Pair: treePair{"esbuild", "0.25.11", "0.25.12"}, TarZst: -1, PubZst: -1, PubGz: -1,
		Bundle:    Result{Tool: "bundle", Err: "mkdelta: exit status 1: boom", DiffRSS: unknownRSS, ApplyRSS: unknownRSS},
		TarZstErr: "tar: nope", Sums: sumPerFile(nil, tools)}
	pub := publishResult{
		Scenario: publishScenario{App: "prettier", Setup: []string{"3.3.0", "3.3.1"}, Timed: "3.3.2", PatchesFrom: 3},
		Publish:  timing{Runs: 1, Secs: 4.5, RSS: 60 * mib},
		Verify:   timing{Runs: 1, Secs: 2.25, RSS: 40 * mib},
		Artifacts: repoArtifacts{
			Archives: map[string]map[string]int64{"3.3.0": {fmtTarZst: 10, fmtTarGz: 12}, "3.3.2": {fmtTarZst: 11, fmtTarGz: 13}},
			Patches:  []repoPatch{{"3.3.0", "3.3.2", 5}, {"3.3.1", "3.3.2", 4}},
		},
	}
	failedPub := publishResult{Scenario: publishScenario{App: "esbuild", Timed: "0.25.12"},
		Publish: timing{RSS: unknownRSS}, Verify: timing{RSS: unknownRSS}, Err: "publishing 0.25.9 (setup): boom"}
	out := formatTreeReport(treeReport{
		Env:    Environment{Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), NumCPU: 2, LoadAvg: "1.00 2.00 3.00", Command: "go run ./bench --trees"},
		Corpus: "/corpus", Runs: 1, LoadEnd: "4.00 5.00 6.00", Tools: tools,
		Skipped: []Skipped{{toolBsdiff, "bsdiff not installed"}},
		Pairs:   []treePairResult{good, big, broken}, Publishes: []publishResult{pub, failedPub},
	})
	// Table cells are padded; compare with runs of spaces collapsed.
	flat := regexp.MustCompile(` +`).ReplaceAllString(out, " ")
	for _, want := range []string{
		"# deltaup tree benchmark results",
		"- Load average (1, 5, 15 min) at start: 1.00 2.00 3.00; at end: 4.00 5.00 6.00",
		"- Per-file tools: mkdelta native, zstd",
		"- Skipped bsdiff: bsdiff not installed",
		"| prettier 3.3.0 → 3.3.1 | 3 → 4 | 1 / 2 / 1 / 0 | 14300 | 1105 | 7.73% | 0.500 | 20.0 | 0.100 | 10.0 | yes |",
		"| esbuild 0.25.0 → 0.25.1 | 3 → 4 | 1 / 2 / 1 / 0 | 14300 | 1200 | 8.39% | 0.500 | 20.0 | 0.100 | 10.0 | no |",
		"| esbuild 0.25.11 → 0.25.12 | 0 → 0 | 0 / 0 / 0 / 0 | 0 | error | — | — | — | — | — | no |",
		"- esbuild 0.25.0 → 0.25.1 round trip differences: bin/x: mode 0644, want 0755",
		"- esbuild 0.25.11 → 0.25.12 failed: `mkdelta: exit status 1: boom`",
		// Σ native = 400 + 600 + 100 (added) = 1100; Σ best is the same
		// because zstd failed on bin/x and lost on index.js.
		"| prettier 3.3.0 → 3.3.1 | 1105 | 4000 | 4100 | 4500 | 0.28x | 1100 | 1.00x | PASS | 1100 | 1.00x |",
		"| esbuild 0.25.0 → 0.25.1 | 1200 | 4000 | 4100 | 4500 | 0.30x | 1100 | 1.09x | FAIL | 1100 | 1.09x |",
		"| esbuild 0.25.11 → 0.25.12 | n/a | n/a | n/a | n/a | n/a | 0 | n/a | n/a | 0 | n/a |",
		"- esbuild 0.25.11 → 0.25.12 tar | zstd failed: `tar: nope`",
		"| prettier 3.3.0 → 3.3.1 | 2 | 1 | 100 | 1000 | n/a (1 missing) | 1000 | mkdelta native 2 |",
		"<details><summary>prettier 3.3.0 → 3.3.1: every changed and added file</summary>",
		"| bin/x | 9000 | 600 | error | |",
		"| new.js | 300 | | | 100 |",
		"- zstd on bin/x failed: `zstd: boom`",
		"| prettier 3.3.0 → 3.3.1 | **PASS** | **PASS** (1.00x) |",
		"| esbuild 0.25.0 → 0.25.1 | **FAIL** | **FAIL** (1.09x) |",
		"| all pairs | 1/3 FAIL | 1/2 FAIL |",
		"| prettier | 3.3.0, 3.3.1 (--patches-from 3) | 3.3.2 | 2 | 4.500 | 60.0 | 2.250 | 40.0 | yes |",
		"| esbuild | (--patches-from 0) | 0.25.12 | 0 | — | — | — | — | no |",
		"- esbuild: `publishing 0.25.9 (setup): boom`",
		"| prettier | 3.3.0 | 10 | 12 | — |",
		"| prettier | 3.3.2 | 11 | 13 | from 3.3.0: 5; from 3.3.1: 4 |",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", out)
	}
}

// TestTarZstSize needs GNU tar and zstd but no corpus.
func TestTarZstSize(t *testing.T) {
	tarBin, err1 := exec.LookPath("tar")
	zstdBin, err2 := exec.LookPath("zstd")
	if err1 != nil || err2 != nil {
		t.Skip("tar or zstd not installed")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte(strings.Repeat("hello tree ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	n1, err := tarZstSize(context.Background(), tarBin, zstdBin, dir)
	if err != nil {
		if strings.Contains(err.Error(), "sort") {
			t.Skipf("tar lacks --sort (not GNU tar?): %v", err)
		}
		t.Fatal(err)
	}
	if n1 <= 0 || n1 >= 11000 {
		t.Errorf("tar.zst of 11000 repetitive bytes = %d bytes", n1)
	}
	n2, err := tarZstSize(context.Background(), tarBin, zstdBin, dir)
	if err != nil || n2 != n1 {
		t.Errorf("second run: %d, %v; want %d (deterministic)", n2, err, n1)
	}
	if _, err := tarZstSize(context.Background(), tarBin, zstdBin, filepath.Join(dir, "nope")); err == nil {
		t.Error("missing directory: no error")
	}
}

// TestCorpusTrees runs one tree pair and a small publish scenario through
// the built CLIs (deltaup's native format only), on a small synthetic
// corpus laid out as the real one (APP/VERSION/...): it checks the
// harness, not the figures, which come from the real corpus by
// `bench --trees`.
func TestCorpusTrees(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the tree harness (builds mkdelta and deltaup) in -short mode")
	}
	corpus := synthTreeCorpus(t, "prettier", "3.3.1", "3.3.2", "3.3.3")
	pair := treePair{"prettier", "3.3.2", "3.3.3"}
	scen := publishScenario{App: "prettier", Setup: []string{"3.3.1"}, Timed: "3.3.2", PatchesFrom: 1}
	if err := checkTreeCorpus(corpus, []treePair{pair}, []publishScenario{scen}); err != nil {
		t.Fatal(err)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tmp := t.TempDir()
	setup := &toolSetup{ctx: ctx, root: root, binDir: tmp, tags: "nocloud", built: map[string]buildResult{}}
	r := &treeRun{ctx: ctx, corpus: corpus, tmp: tmp, runs: 1, archiveRepos: map[string]string{}}
	if r.mkdelta, err = setup.build("./cmd/mkdelta"); err != nil {
		t.Fatal(err)
	}
	if r.deltaup, err = setup.build("./cmd/deltaup"); err != nil {
		t.Fatal(err)
	}
	tool, err := setup.resolve(toolDeltaup)
	if err != nil {
		t.Fatal(err)
	}
	r.tools = []Tool{tool}
	r.zstd, _ = exec.LookPath("zstd")
	if r.key, err = r.keygen(); err != nil {
		t.Fatal(err)
	}

	pr, err := r.benchTreePair(pair)
	if err != nil {
		t.Fatal(err)
	}
	if !pr.Bundle.OK() || !pr.Bundle.RoundTripOK || pr.Bundle.PatchBytes <= 0 || pr.Bundle.PatchBytes >= pr.NewBytes {
		t.Errorf("bundle %s: %+v (issue %q, new %d bytes)", pair, pr.Bundle, pr.RoundTripIssue, pr.NewBytes)
	}
	if n, ok := pr.Sums.total(toolDeltaup); !ok || n <= 0 || pr.Sums.Changed != len(pr.Diff.Changed) {
		t.Errorf("per-file sums: %+v", pr.Sums)
	}
	if pr.PubZst <= 0 || pr.PubGz <= 0 {
		t.Errorf("publish archives: tar.zst %d, tar.gz %d (%s)", pr.PubZst, pr.PubGz, pr.PubErr)
	}

	pub, err := r.benchPublish(scen)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Err != "" || pub.VerifyErr != "" || pub.Publish.Runs != 1 || pub.Verify.Runs != 1 {
		t.Errorf("publish: %+v", pub)
	}
	if ps := pub.Artifacts.patchesTo("3.3.2"); len(ps) != 1 || ps[0].From != "3.3.1" {
		t.Errorf("patches into 3.3.2: %v", ps)
	}
}

// synthTreeCorpus writes a corpus of app at versions: a few dozen
// JavaScript-like files, some unchanged between versions, some edited
// (the version string, and a function per version), one added and one
// removed per version, and a symlink.
func synthTreeCorpus(t *testing.T, app string, versions ...string) string {
	t.Helper()
	corpus := t.TempDir()
	for vi, v := range versions {
		dir := filepath.Join(corpus, app, v)
		if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
			t.Fatal(err)
		}
		write := func(name, data string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("package.json", fmt.Sprintf(`{"name":%q,"version":%q}`+"\n", app, v))
		for f := 0; f < 24; f++ {
			var b strings.Builder
			for fn := 0; fn < 60; fn++ {
				fmt.Fprintf(&b, "function f%d_%d(a, b) {\n  return a * %d + b - %d;\n}\n", f, fn, fn*7+f, fn)
			}
			if f%3 == 0 { // edited in every version
				fmt.Fprintf(&b, "export const version = %q;\nfunction added%d() { return %d; }\n", v, vi, vi*f)
			}
			write(fmt.Sprintf("plugins/p%02d.js", f), b.String())
		}
		write(fmt.Sprintf("only-in-%d.js", vi), strings.Repeat(fmt.Sprintf("// release %s\n", v), 200))
		if err := os.Symlink("plugins/p00.js", filepath.Join(dir, "index.js")); err != nil {
			t.Fatal(err)
		}
	}
	return corpus
}
