package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// procStats is what one measured process run yields.
type procStats struct {
	wall time.Duration
	rss  int64 // peak RSS in bytes, or unknownRSS
}

// maxErrOutput bounds how much of a failing tool's output is kept.
const maxErrOutput = 64 << 10

// limitedBuffer keeps at most max bytes of what is written to it.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

// Write implements io.Writer, silently discarding bytes beyond the limit.
func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// runProcess runs argv as its own process and reports its wall time and
// peak RSS. A non-zero exit is an error quoting the first output line.
func runProcess(ctx context.Context, argv []string) (procStats, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out := &limitedBuffer{max: maxErrOutput}
	cmd.Stdout = out
	cmd.Stderr = out
	start := time.Now()
	err := cmd.Run()
	st := procStats{wall: time.Since(start), rss: unknownRSS}
	if rss, ok := peakRSS(cmd.ProcessState); ok {
		st.rss = rss
	}
	if err != nil {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		msg := firstLine(out.buf.String())
		if msg != "" {
			return st, fmt.Errorf("%s: %v: %s", filepath.Base(argv[0]), err, msg)
		}
		return st, fmt.Errorf("%s: %v", filepath.Base(argv[0]), err)
	}
	return st, nil
}

// fileSHA256 returns the SHA-256 digest of the file at path.
func fileSHA256(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// runOnce diffs oldPath→newPath with t into workDir, applies the patch, and
// checks the output against newSum. The patch and output are removed
// afterwards so that runs start from a clean directory.
func runOnce(ctx context.Context, t Tool, workDir, oldPath, newPath string, newSum [sha256.Size]byte) (sample, error) {
	patch := filepath.Join(workDir, "patch")
	out := filepath.Join(workDir, "out")
	for _, p := range []string{patch, out} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return sample{}, err
		}
	}
	defer os.Remove(patch)
	defer os.Remove(out)

	var s sample
	d, err := runProcess(ctx, t.Diff(oldPath, newPath, patch))
	if err != nil {
		return s, fmt.Errorf("diff: %w", err)
	}
	s.diffSecs, s.diffRSS = d.wall.Seconds(), d.rss
	st, err := os.Stat(patch)
	if err != nil {
		return s, fmt.Errorf("diff produced no patch: %w", err)
	}
	s.patchBytes = st.Size()

	a, err := runProcess(ctx, t.Apply(oldPath, patch, out))
	if err != nil {
		return s, fmt.Errorf("apply: %w", err)
	}
	s.applySecs, s.applyRSS = a.wall.Seconds(), a.rss
	got, err := fileSHA256(out)
	if err != nil {
		return s, fmt.Errorf("apply produced no output: %w", err)
	}
	s.roundTrip = got == newSum
	return s, nil
}

// PairResult holds the results of every tool on one pair.
type PairResult struct {
	Pair      Pair
	OldBytes  int64
	NewBytes  int64
	Results   []Result // in tool order
	OldPath   string
	NewPath   string
	newSHA256 [sha256.Size]byte
}

// baseline returns C bsdiff's result on this pair, if it ran successfully.
func (pr PairResult) baseline() (Result, bool) {
	for _, r := range pr.Results {
		if r.Tool == toolBsdiff && r.OK() {
			return r, true
		}
	}
	return Result{}, false
}

// benchPair runs every tool runs times on p (interleaving tools within each
// round to spread out cache and thermal effects) and aggregates the samples.
// A tool that fails once is not retried on this pair. progress, if non-nil,
// receives one line per completed run.
func benchPair(ctx context.Context, corpus, tmp string, p Pair, tools []Tool, runs int, progress io.Writer) (PairResult, error) {
	pr := PairResult{Pair: p, OldPath: esbuildPath(corpus, p.Old), NewPath: esbuildPath(corpus, p.New)}
	for _, f := range []struct {
		path string
		size *int64
	}{{pr.OldPath, &pr.OldBytes}, {pr.NewPath, &pr.NewBytes}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return pr, err
		}
		*f.size = st.Size()
	}
	var err error
	if pr.newSHA256, err = fileSHA256(pr.NewPath); err != nil {
		return pr, err
	}

	samples := make([][]sample, len(tools))
	failures := make([]string, len(tools))
	for run := 1; run <= runs; run++ {
		for i, t := range tools {
			if failures[i] != "" {
				continue
			}
			workDir := filepath.Join(tmp, "work", t.Name)
			if err := os.MkdirAll(workDir, 0o755); err != nil {
				return pr, err
			}
			s, err := runOnce(ctx, t, workDir, pr.OldPath, pr.NewPath, pr.newSHA256)
			if ctx.Err() != nil {
				return pr, ctx.Err()
			}
			if err != nil {
				failures[i] = err.Error()
				if progress != nil {
					fmt.Fprintf(progress, "  %s run %d/%d: FAILED: %v\n", t.Name, run, runs, err)
				}
				continue
			}
			samples[i] = append(samples[i], s)
			if progress != nil {
				fmt.Fprintf(progress, "  %s run %d/%d: patch %d B, diff %.2fs, apply %.2fs, round trip %s\n",
					t.Name, run, runs, s.patchBytes, s.diffSecs, s.applySecs, yesNo(s.roundTrip))
			}
		}
	}
	for i, t := range tools {
		r := aggregate(t.Name, samples[i])
		if failures[i] != "" {
			r.Err = failures[i]
		}
		pr.Results = append(pr.Results, r)
	}
	return pr, nil
}

// yesNo renders a boolean as "yes" or "no".
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
