package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// versions lists the esbuild releases in the corpus, oldest first.
var versions = []string{
	"0.25.0", "0.25.1", "0.25.2", "0.25.3", "0.25.4", "0.25.5", "0.25.6",
	"0.25.7", "0.25.8", "0.25.9", "0.25.10", "0.25.11", "0.25.12",
}

// Pair is one old→new update to benchmark.
type Pair struct {
	Old, New string // esbuild versions
}

// String formats the pair as "OLD → NEW".
func (p Pair) String() string { return p.Old + " → " + p.New }

// Pair set names accepted by --pairs.
const (
	pairsDefault     = "default"
	pairsConsecutive = "consecutive"
	pairsAll         = "all"
)

// selectPairs returns the pairs of the named set: "default" (a small
// representative set), "consecutive" (every adjacent release), or "all"
// (consecutive plus a few far jumps).
func selectPairs(set string) ([]Pair, error) {
	switch set {
	case pairsDefault:
		return []Pair{
			{"0.25.0", "0.25.1"},
			{"0.25.5", "0.25.6"},
			{"0.25.11", "0.25.12"},
			{"0.25.0", "0.25.12"},
		}, nil
	case pairsConsecutive:
		return consecutivePairs(), nil
	case pairsAll:
		return append(consecutivePairs(),
			Pair{"0.25.0", "0.25.12"},
			Pair{"0.25.0", "0.25.6"},
			Pair{"0.25.6", "0.25.12"},
		), nil
	default:
		return nil, fmt.Errorf("unknown pair set %q (want %s, %s or %s)",
			set, pairsDefault, pairsConsecutive, pairsAll)
	}
}

// consecutivePairs returns every adjacent pair of versions.
func consecutivePairs() []Pair {
	pairs := make([]Pair, 0, len(versions)-1)
	for i := 1; i < len(versions); i++ {
		pairs = append(pairs, Pair{versions[i-1], versions[i]})
	}
	return pairs
}

// defaultCorpusDir returns $DELTAUP_CORPUS, or ~/.cache/deltaup-corpus.
func defaultCorpusDir() string {
	if dir := os.Getenv("DELTAUP_CORPUS"); dir != "" {
		return dir
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "deltaup-corpus")
	}
	return filepath.Join(".cache", "deltaup-corpus")
}

// esbuildPath returns the path of the esbuild binary of version v in corpus.
func esbuildPath(corpus, v string) string {
	return filepath.Join(corpus, "esbuild", v, "bin", "esbuild")
}

// errCorpusMissing reports that corpus files needed by the run are absent.
var errCorpusMissing = errors.New("corpus incomplete")

// fetchHint tells the user how to create the corpus.
const fetchHint = "fetch it with ../shared/corpus/fetch.sh (from the module root), " +
	"or point --corpus / $DELTAUP_CORPUS at an existing corpus"

// checkCorpus verifies that every binary needed by pairs exists in corpus.
// The returned error wraps errCorpusMissing and lists what is absent.
func checkCorpus(corpus string, pairs []Pair) error {
	var missing []string
	seen := map[string]bool{}
	for _, p := range pairs {
		for _, v := range []string{p.Old, p.New} {
			if seen[v] {
				continue
			}
			seen[v] = true
			path := esbuildPath(corpus, v)
			st, err := os.Stat(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				missing = append(missing, path)
			case err != nil:
				return fmt.Errorf("%w: %v", errCorpusMissing, err)
			case !st.Mode().IsRegular():
				missing = append(missing, path+" (not a regular file)")
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %d file(s) absent under %s:\n  %s",
			errCorpusMissing, len(missing), corpus, strings.Join(missing, "\n  "))
	}
	return nil
}
