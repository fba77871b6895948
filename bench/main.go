// Command bench measures deltaup against other binary delta tools (C
// bsdiff/bspatch, xdelta3, zstd --patch-from and the pure-Go go-bsdiff) on
// pairs of esbuild release binaries, and prints a markdown report.
//
// Usage (from the module root):
//
//	go run ./bench [--corpus DIR] [--runs N] [--pairs default|consecutive|all] [--tools list] [--write]
//
// The corpus defaults to $DELTAUP_CORPUS or ~/.cache/deltaup-corpus and is
// created by ../shared/corpus/fetch.sh. Every diff and apply runs as its own
// process so that wall time and peak RSS are measured per step. Tools that
// are not installed (or, for deltaup, do not build) are skipped with a note.
// With --write the report is also saved to bench/RESULTS.md.
//
// Tree mode measures directory bundles instead (see trees.go):
//
//	go run ./bench --trees [--corpus DIR] [--runs N] [--write]
//
// It needs the prettier and esbuild package trees of the corpus, compares
// each bundle with a full tar.zst and with the sum of per-file deltas, and
// times mkdelta publish and verify. With --write its report is saved to
// bench/RESULTS-trees.md, leaving the single-file bench/RESULTS.md alone.
//
// Repair mode measures the client's repair route (see repair.go):
//
//	go run ./bench --repair [--corpus DIR] [--write]
//
// It updates a 140-file tree with a damaged 9.9 MB file, a damaged or
// missing small file, and compares the bytes with the patch route and the
// full archive. With --write its section of bench/RESULTS.md is replaced
// (the single-file --write keeps it).
//
// Peers mode measures the pairs of issue 10 against the strongest peers at
// their strongest settings (see peers.go):
//
//	go run ./bench --peers [--corpus DIR] [--write]
//
// hdiffz/hpatchz and zucchini must be on PATH (bench/build-peers.sh builds
// them), zstd, xz and bsdiff come from Debian; a missing peer is skipped
// with a note. With --write its section of bench/RESULTS.md is replaced
// (the single-file --write keeps it).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2 // bad flags or missing corpus
)

// resultsFile is where --write saves the report, relative to the module root.
const resultsFile = "bench/RESULTS.md"

// options are the parsed command-line flags.
type options struct {
	corpus string
	runs   int
	pairs  string
	tools  []string
	write  bool
	trees  bool // tree mode: directory bundles, publish and verify
	repair bool // repair mode: the client's repair route on a 140-file tree
	peers  bool // peers mode: the pairs of issue 10 against the strongest peers
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// parseFlags parses args (without the program name).
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.corpus, "corpus", defaultCorpusDir(), "corpus directory ($DELTAUP_CORPUS or ~/.cache/deltaup-corpus)")
	fs.IntVar(&o.runs, "runs", 1, "runs per tool per pair; times are medians, memory is the max")
	fs.StringVar(&o.pairs, "pairs", pairsDefault, "pair set: default, consecutive or all")
	fs.StringSliceVar(&o.tools, "tools", nil, "comma-separated tools to run (default all: "+strings.Join(allTools, ",")+")")
	fs.BoolVar(&o.write, "write", false, "also write the report to "+resultsFile+" ("+treeResultsFile+" with --trees)")
	fs.BoolVar(&o.trees, "trees", false, "tree mode: benchmark directory bundles, mkdelta publish and verify on the prettier and esbuild trees")
	fs.BoolVar(&o.peers, "peers", false, "peers mode: the native and tree pairs of issue 10 against hdiffz (lzma2), Zucchini+xz, zstd -22 --long=31 and bsdiff (its section of "+resultsFile+" with --write)")
	fs.BoolVar(&o.repair, "repair", false, "repair mode: bytes of an update of a 140-file tree with a few damaged files (its section of "+resultsFile+" with --write)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./bench [flags]\n       go run ./bench --trees [--corpus DIR] [--runs N] [--write]\n\n"+
			"Benchmarks deltaup against other delta tools on esbuild binaries,\n"+
			"or with --trees, directory bundles and publishing on package trees.\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.runs < 1 {
		return o, fmt.Errorf("--runs must be at least 1, got %d", o.runs)
	}
	if (o.trees && o.repair) || (o.peers && (o.trees || o.repair)) {
		return o, fmt.Errorf("--trees, --repair and --peers are separate modes")
	}
	if o.trees || o.repair || o.peers {
		for _, f := range []string{"pairs", "tools"} {
			if fs.Changed(f) {
				return o, fmt.Errorf("--%s is for single-file mode, not --trees, --repair or --peers", f)
			}
		}
	}
	return o, nil
}

// run is the whole program; it returns the process exit code.
func run(argv []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(argv[1:], stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitUsage
	}
	if o.trees {
		return runTrees(argv, o, stdout, stderr)
	}
	if o.repair {
		return runRepair(argv, o, stdout, stderr)
	}
	if o.peers {
		return runPeers(argv, o, stdout, stderr)
	}
	pairs, err := selectPairs(o.pairs)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitUsage
	}
	names, err := parseTools(o.tools)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitUsage
	}
	if err := checkCorpus(o.corpus, pairs); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n\nThe esbuild corpus is needed: %s.\n", err, fetchHint)
		return exitUsage
	}
	root, tmp, binDir, ctx, cleanup, err := benchSetup("deltaup-bench-")
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitError
	}
	defer cleanup()

	fmt.Fprintln(stderr, "bench: preparing tools...")
	tools, skipped := setupTools(ctx, root, binDir, names)
	for _, s := range skipped {
		fmt.Fprintf(stderr, "bench: skipping %s: %s\n", s.Name, s.Reason)
	}
	if len(tools) == 0 {
		fmt.Fprintln(stderr, "bench: no tool available; nothing to measure")
		return exitError
	}

	env := collectEnvironment(ctx, root, tools, commandLine(argv))
	var results []PairResult
	for i, p := range pairs {
		fmt.Fprintf(stderr, "bench: pair %d/%d: esbuild %s\n", i+1, len(pairs), p)
		pr, err := benchPair(ctx, o.corpus, tmp, p, tools, o.runs, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitError
		}
		results = append(results, pr)
	}

	report := formatReport(env, o, pairs, skipped, results)
	fmt.Fprint(stdout, report)
	if o.write {
		path := filepath.Join(root, filepath.FromSlash(resultsFile))
		if err := os.WriteFile(path, []byte(keepPeersSection(path, keepRepairSection(path, report))), 0o644); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitError
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", path)
	}
	return exitOK
}

// formatReport assembles the full markdown report.
func formatReport(env Environment, o options, pairs []Pair, skipped []Skipped, results []PairResult) string {
	sections := []string{formatHeader(env, o.corpus, o.pairs, len(pairs), o.runs, skipped)}
	for _, pr := range results {
		sections = append(sections, formatPair(pr))
	}
	sections = append(sections, formatSummary(results))
	return strings.Join(sections, "\n")
}
