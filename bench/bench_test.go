package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1}, 2},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 1, 1, 1, 9}, 1},
	}
	for _, tc := range tests {
		in := append([]float64(nil), tc.in...)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !reflect.DeepEqual(in, tc.in) && tc.in != nil {
			t.Errorf("median modified its input: %v -> %v", tc.in, in)
		}
	}
}

func TestMaxRSS(t *testing.T) {
	tests := []struct {
		in   []int64
		want int64
	}{
		{nil, unknownRSS},
		{[]int64{unknownRSS, unknownRSS}, unknownRSS},
		{[]int64{unknownRSS, 7, 3}, 7},
		{[]int64{5, 9, 2}, 9},
	}
	for _, tc := range tests {
		if got := maxRSS(tc.in); got != tc.want {
			t.Errorf("maxRSS(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestAggregate(t *testing.T) {
	tests := []struct {
		name    string
		samples []sample
		want    Result
	}{
		{
			name: "none",
			want: Result{Tool: "x", Err: "no runs", DiffRSS: unknownRSS, ApplyRSS: unknownRSS},
		},
		{
			name: "median times, max memory",
			samples: []sample{
				{patchBytes: 100, diffSecs: 3, applySecs: 1, diffRSS: 10, applyRSS: 4, roundTrip: true},
				{patchBytes: 100, diffSecs: 1, applySecs: 2, diffRSS: 30, applyRSS: 2, roundTrip: true},
				{patchBytes: 100, diffSecs: 2, applySecs: 9, diffRSS: 20, applyRSS: unknownRSS, roundTrip: true},
			},
			want: Result{Tool: "x", Runs: 3, PatchBytes: 100, DiffSecs: 2, ApplySecs: 2, DiffRSS: 30, ApplyRSS: 4, RoundTripOK: true},
		},
		{
			name: "one bad round trip fails all",
			samples: []sample{
				{patchBytes: 5, diffSecs: 1, applySecs: 1, diffRSS: 1, applyRSS: 1, roundTrip: true},
				{patchBytes: 6, diffSecs: 3, applySecs: 3, diffRSS: 1, applyRSS: 1, roundTrip: false},
			},
			want: Result{Tool: "x", Runs: 2, PatchBytes: 6, DiffSecs: 2, ApplySecs: 2, DiffRSS: 1, ApplyRSS: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := aggregate("x", tc.samples); got != tc.want {
				t.Errorf("aggregate = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSelectPairs(t *testing.T) {
	tests := []struct {
		set       string
		wantLen   int
		wantFirst Pair
		wantLast  Pair
		wantErr   bool
	}{
		{set: "default", wantLen: 4, wantFirst: Pair{"0.25.0", "0.25.1"}, wantLast: Pair{"0.25.0", "0.25.12"}},
		{set: "consecutive", wantLen: 12, wantFirst: Pair{"0.25.0", "0.25.1"}, wantLast: Pair{"0.25.11", "0.25.12"}},
		{set: "all", wantLen: 15, wantFirst: Pair{"0.25.0", "0.25.1"}, wantLast: Pair{"0.25.6", "0.25.12"}},
		{set: "bogus", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.set, func(t *testing.T) {
			got, err := selectPairs(tc.set)
			if (err != nil) != tc.wantErr {
				t.Fatalf("selectPairs(%q) error = %v, wantErr %v", tc.set, err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if len(got) != tc.wantLen || got[0] != tc.wantFirst || got[len(got)-1] != tc.wantLast {
				t.Errorf("selectPairs(%q) = %v; want %d pairs from %v to %v",
					tc.set, got, tc.wantLen, tc.wantFirst, tc.wantLast)
			}
			for _, p := range got {
				if p.Old == p.New {
					t.Errorf("degenerate pair %v", p)
				}
			}
		})
	}
}

func TestParseTools(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string
		wantErr bool
	}{
		{in: nil, want: allTools},
		{in: []string{"zstd", "deltaup", "zstd"}, want: []string{"deltaup", "zstd"}},
		{in: []string{" bsdiff ", ""}, want: []string{"bsdiff"}},
		{in: []string{"nope"}, wantErr: true},
		{in: []string{""}, wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseTools(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseTools(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseTools(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	got := markdownTable(
		[]string{"tool", "size"},
		[]Align{AlignLeft, AlignRight},
		[][]string{{"a", "1"}, {"long→name", "12345"}, {"p|q"}},
	)
	want := "" +
		"| tool      |  size |\n" +
		"| --------- | ----: |\n" +
		"| a         |     1 |\n" +
		"| long→name | 12345 |\n" +
		"| p\\|q      |       |\n"
	if got != want {
		t.Errorf("markdownTable:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatters(t *testing.T) {
	tests := []struct{ got, want string }{
		{fmtMiB(3 * mib / 2), "1.5"},
		{fmtMiB(unknownRSS), "n/a"},
		{fmtSecs(1.23456), "1.235"},
		{fmtPercent(1, 8), "12.50%"},
		{fmtPercent(1, 0), "n/a"},
		{fmtRatio(0.333, true), "0.33x"},
		{fmtRatio(1, false), "n/a"},
		{shellQuote("--tools"), "--tools"},
		{shellQuote("a b"), "'a b'"},
		{shellQuote("it's"), `'it'\''s'`},
		{shellQuote(""), "''"},
		{commandLine([]string{"/tmp/go-build123/b001/exe/bench", "--runs", "3"}), "go run ./bench --runs 3"},
		{commandLine([]string{"./benchbin", "--pairs", "all"}), "./benchbin --pairs all"},
		{firstLine("# github.com/x/y\n\n  real error here \nmore"), "real error here"},
		{firstLine(""), ""},
	}
	for i, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("case %d: got %q, want %q", i, tc.got, tc.want)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"24684096 kB", 24684096 * 1024},
		{"  100 kB ", 100 * 1024},
		{"512", 512},
		{"", 0},
		{"lots", 0},
	}
	for _, tc := range tests {
		if got := parseMemTotal(tc.in); got != tc.want {
			t.Errorf("parseMemTotal(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestCheckTargets(t *testing.T) {
	base := Result{Tool: toolBsdiff, Runs: 1, PatchBytes: 1000, DiffSecs: 9, ApplySecs: 1,
		DiffRSS: 100 * mib, ApplyRSS: 20 * mib, RoundTripOK: true}
	old, new := int64(10*mib), int64(10*mib) // apply limit: 52 MiB
	statuses := func(cs []TargetCheck) []Status {
		var s []Status
		for _, c := range cs {
			s = append(s, c.Status)
		}
		return s
	}
	P, F, N := StatusPass, StatusFail, StatusNA
	tests := []struct {
		name     string
		r        Result
		haveBase bool
		want     []Status
	}{
		{
			name:     "all pass at the limits",
			r:        Result{PatchBytes: 950, DiffSecs: 2.97, ApplySecs: 1, DiffRSS: 75 * mib, ApplyRSS: 52 * mib, RoundTripOK: true},
			haveBase: true,
			want:     []Status{P, P, P, P, P, P},
		},
		{
			name:     "all fail just over",
			r:        Result{PatchBytes: 951, DiffSecs: 3, ApplySecs: 1.01, DiffRSS: 76 * mib, ApplyRSS: 52*mib + 1},
			haveBase: true,
			want:     []Status{F, F, F, F, F, F},
		},
		{
			name:     "no baseline: only absolute targets",
			r:        Result{PatchBytes: 1, DiffSecs: 1, ApplySecs: 1, DiffRSS: 1, ApplyRSS: 1, RoundTripOK: true},
			haveBase: false,
			want:     []Status{P, N, N, N, N, P},
		},
		{
			name:     "unknown memory",
			r:        Result{PatchBytes: 1, DiffSecs: 1, ApplySecs: 1, DiffRSS: unknownRSS, ApplyRSS: unknownRSS, RoundTripOK: true},
			haveBase: true,
			want:     []Status{P, P, P, N, P, N},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := checkTargets(tc.r, base, tc.haveBase, old, new)
			if len(cs) != len(targetNames) {
				t.Fatalf("got %d checks, want %d", len(cs), len(targetNames))
			}
			if got := statuses(cs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("statuses = %v, want %v (%s)", got, tc.want, formatTargets(cs))
			}
		})
	}
}

func TestTally(t *testing.T) {
	mk := func(ss ...Status) []TargetCheck {
		var cs []TargetCheck
		for _, s := range ss {
			cs = append(cs, TargetCheck{Status: s})
		}
		return cs
	}
	checks := [][]TargetCheck{
		mk(StatusPass, StatusPass, StatusNA),
		mk(StatusPass, StatusFail, StatusNA),
		mk(StatusPass, StatusNA, StatusNA),
	}
	tests := []struct {
		i    int
		want string
	}{
		{0, "3/3 PASS"},
		{1, "1/2 FAIL"},
		{2, "n/a"},
	}
	for _, tc := range tests {
		if got := tally(checks, tc.i); got != tc.want {
			t.Errorf("tally(%d) = %q, want %q", tc.i, got, tc.want)
		}
	}
}

func TestFormatPairAndSummary(t *testing.T) {
	bs := Result{Tool: toolBsdiff, Runs: 1, PatchBytes: 200, DiffSecs: 3, ApplySecs: 0.1,
		DiffRSS: 80 * mib, ApplyRSS: 20 * mib, RoundTripOK: true}
	du := Result{Tool: toolDeltaup, Runs: 1, PatchBytes: 100, DiffSecs: 0.5, ApplySecs: 0.05,
		DiffRSS: 40 * mib, ApplyRSS: 20 * mib, RoundTripOK: true}
	bad := Result{Tool: toolXdelta3, Err: "diff: boom", DiffRSS: unknownRSS, ApplyRSS: unknownRSS}
	pr := PairResult{Pair: Pair{"0.25.0", "0.25.1"}, OldBytes: 10 * mib, NewBytes: 1000,
		Results: []Result{du, bs, bad}}

	out := formatPair(pr)
	for _, want := range []string{
		"## esbuild 0.25.0 → 0.25.1",
		"size vs bsdiff",
		"| deltaup |         100 |   10.00% |  0.500 |          40.0 |   0.050 |           20.0 |           yes |          0.50x |            0.17x |              0.50x |              0.50x |",
		"xdelta3 failed: `diff: boom`",
		"Targets for deltaup: round trip: **PASS**",
		"apply peak ≤ old+new+32 MiB: **PASS**",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("formatPair output lacks %q:\n%s", want, out)
		}
	}

	// Without C bsdiff there are no ratio columns.
	noBase := pr
	noBase.Results = []Result{du}
	if out := formatPair(noBase); strings.Contains(out, "size vs bsdiff") {
		t.Errorf("ratio columns shown without a bsdiff baseline:\n%s", out)
	}

	sum := formatSummary([]PairResult{pr, pr})
	for _, want := range []string{
		"| deltaup |      2/2 |",
		"| xdelta3 |      0/2 |",
		"| deltaup |   2/2 PASS |",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("formatSummary output lacks %q:\n%s", want, sum)
		}
	}
}

func TestCheckCorpus(t *testing.T) {
	dir := t.TempDir()
	pairs := []Pair{{"0.25.0", "0.25.1"}}
	err := checkCorpus(dir, pairs)
	if !errors.Is(err, errCorpusMissing) || !strings.Contains(err.Error(), "2 file(s) absent") {
		t.Fatalf("empty corpus: err = %v", err)
	}
	for _, v := range []string{"0.25.0", "0.25.1"} {
		p := esbuildPath(dir, v)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkCorpus(dir, pairs); err != nil {
		t.Fatalf("complete corpus: %v", err)
	}
}

// TestCorpusRoundTrip runs one real pair through an installed external tool.
func TestCorpusRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping corpus benchmark in -short mode")
	}
	corpus := defaultCorpusDir()
	pair := Pair{"0.25.11", "0.25.12"}
	if err := checkCorpus(corpus, []Pair{pair}); err != nil {
		t.Skipf("corpus absent (%v); %s", err, fetchHint)
	}
	if _, err := exec.LookPath("xdelta3"); err != nil {
		t.Skip("xdelta3 not installed")
	}
	tools, skipped := setupTools(context.Background(), "", t.TempDir(), []string{toolXdelta3})
	if len(skipped) > 0 {
		t.Fatalf("xdelta3 skipped: %v", skipped)
	}
	pr, err := benchPair(context.Background(), corpus, t.TempDir(), pair, tools, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := pr.Results[0]
	if !r.OK() || !r.RoundTripOK || r.PatchBytes <= 0 || r.PatchBytes >= pr.NewBytes {
		t.Errorf("xdelta3 on %s: %+v (new %d bytes)", pair, r, pr.NewBytes)
	}
}
