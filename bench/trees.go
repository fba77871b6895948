package main

// Tree mode (go run ./bench --trees): directory bundles made by
// `mkdelta OLD_DIR NEW_DIR -o BUNDLE` and applied by `deltaup patch`, compared
// with a full tar.zst of the new tree and with the sum of the best per-file
// deltas; then the time of `mkdelta publish` and `mkdelta verify` on small
// repositories. Every tool run is its own process, timed end to end.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// treeResultsFile is where --trees --write saves its report, relative to
// the module root. It is separate from resultsFile so that the two modes
// never overwrite each other's results.
const treeResultsFile = "bench/RESULTS-trees.md"

// treePairResult holds everything measured on one tree pair.
type treePairResult struct {
	Pair               treePair
	OldFiles, NewFiles int
	OldBytes, NewBytes int64 // Σ regular file sizes
	Diff               treeDiff

	Bundle         Result // PatchBytes is the bundle size; Tool is "bundle"
	RoundTripIssue string // first differences of a failed round trip

	TarZst    int64 // tar | zstd -19 --long=27 of the new tree, or -1
	TarZstErr string
	PubZst    int64 // mkdelta publish's archives of the new tree, or -1
	PubGz     int64
	PubErr    string

	Costs []fileCost
	Sums  perFileSum
}

// publishResult holds what was measured on one publish scenario.
type publishResult struct {
	Scenario  publishScenario
	Err       string // setup or publish failure; the timings are then partial
	Publish   timing
	Verify    timing
	VerifyErr string
	Artifacts repoArtifacts
}

// treeRun carries the state shared by all tree-mode measurements.
type treeRun struct {
	ctx      context.Context
	corpus   string
	tmp      string
	runs     int
	mkdelta  string // built ./cmd/mkdelta
	deltaup  string // built ./cmd/deltaup
	tar      string // GNU tar, or "" when not installed
	zstd     string // zstd CLI, or "" when not installed
	tools    []Tool // per-file tools that are available, in perFileTools order
	key      string // key pair base (BASE.key, BASE.pub)
	progress io.Writer

	// archiveRepos are scratch repositories (per app) that hold mkdelta
	// publish's full archives of the pairs' new trees.
	archiveRepos map[string]string
}

// logf prints a progress line.
func (r *treeRun) logf(format string, args ...any) {
	if r.progress != nil {
		fmt.Fprintf(r.progress, format+"\n", args...)
	}
}

// runTrees is the whole --trees program; it returns the exit code.
func runTrees(argv []string, o options, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "bench:", err)
		return exitError
	}
	if err := checkTreeCorpus(o.corpus, treePairs, publishScenarios); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n\nThe corpus (its prettier and esbuild trees) is needed: %s.\n", err, fetchHint)
		return exitUsage
	}
	root, err := moduleRoot()
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "deltaup-bench-trees-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	binDir := filepath.Join(tmp, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		return fail(err)
	}

	fmt.Fprintln(stderr, "bench: preparing tools...")
	setup := &toolSetup{ctx: ctx, root: root, binDir: binDir, built: map[string]buildResult{}}
	r := &treeRun{ctx: ctx, corpus: o.corpus, tmp: tmp, runs: o.runs, progress: stderr,
		archiveRepos: map[string]string{}}
	if r.mkdelta, err = setup.build("./cmd/mkdelta"); err != nil {
		return fail(err)
	}
	if r.deltaup, err = setup.build("./cmd/deltaup"); err != nil {
		return fail(err)
	}
	var skipped []Skipped
	for _, n := range perFileTools {
		t, err := setup.resolve(n)
		if err != nil {
			skipped = append(skipped, Skipped{n, err.Error()})
			continue
		}
		r.tools = append(r.tools, t)
	}
	if p, err := exec.LookPath("zstd"); err == nil {
		r.zstd = p
	}
	if p, err := exec.LookPath("tar"); err == nil {
		r.tar = p
	}
	var notes []string
	if r.zstd == "" {
		notes = append(notes, "zstd is not installed: added files are counted at their raw size and there is no tar.zst baseline")
	} else if r.tar == "" {
		notes = append(notes, "tar is not installed: no tar | zstd baseline")
	}
	for _, s := range skipped {
		fmt.Fprintf(stderr, "bench: per-file comparison without %s: %s\n", s.Name, s.Reason)
	}

	env := collectEnvironment(ctx, root, r.tools, commandLine(argv))
	if r.key, err = r.keygen(); err != nil {
		return fail(err)
	}

	var pairs []treePairResult
	for i, p := range treePairs {
		fmt.Fprintf(stderr, "bench: tree pair %d/%d: %s\n", i+1, len(treePairs), p)
		pr, err := r.benchTreePair(p)
		if err != nil {
			return fail(err)
		}
		pairs = append(pairs, pr)
	}
	var pubs []publishResult
	for i, s := range publishScenarios {
		fmt.Fprintf(stderr, "bench: publish %d/%d: %s %s\n", i+1, len(publishScenarios), s.App, s.Timed)
		pr, err := r.benchPublish(s)
		if err != nil {
			return fail(err)
		}
		pubs = append(pubs, pr)
	}

	rep := treeReport{
		Env: env, Corpus: o.corpus, Runs: o.runs, LoadEnd: loadAverage(),
		Tools: toolNames(r.tools), Skipped: skipped, Notes: notes,
		Pairs: pairs, Publishes: pubs,
	}
	report := formatTreeReport(rep)
	fmt.Fprint(stdout, report)
	if o.write {
		path := filepath.Join(root, filepath.FromSlash(treeResultsFile))
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", path)
	}
	return exitOK
}

// toolNames returns the names of tools, in order.
func toolNames(tools []Tool) []string {
	names := make([]string, len(tools))
	for i, t := range tools {
		names[i] = t.Name
	}
	return names
}

// keygen makes an unencrypted key pair for the publish measurements and
// returns its base path.
func (r *treeRun) keygen() (string, error) {
	dir := filepath.Join(r.tmp, "key")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	base := filepath.Join(dir, "bench")
	if _, err := runProcess(r.ctx, []string{r.mkdelta, "keygen", "-o", base}); err != nil {
		return "", fmt.Errorf("mkdelta keygen: %w", err)
	}
	return base, nil
}

// publishArgv is the argv of `mkdelta publish` of version v of app.
func (r *treeRun) publishArgv(repo, app, v string, patchesFrom int) []string {
	return []string{r.mkdelta, "publish", "--repo", repo, "--app", app, "--version", v,
		"--key", r.key + ".key", "--patches-from", strconv.Itoa(patchesFrom), "-q",
		treeDir(r.corpus, app, v)}
}

// benchTreePair measures one tree pair. Tool failures are recorded in the
// result; the error is for cancellation and local I/O problems only.
func (r *treeRun) benchTreePair(p treePair) (treePairResult, error) {
	res := treePairResult{Pair: p, TarZst: -1, PubZst: -1, PubGz: -1}
	oldDir, newDir := treeDir(r.corpus, p.App, p.Old), treeDir(r.corpus, p.App, p.New)
	oldIdx, err := scanTree(oldDir)
	if err != nil {
		return res, err
	}
	newIdx, err := scanTree(newDir)
	if err != nil {
		return res, err
	}
	res.OldFiles, res.OldBytes = oldIdx.fileStats()
	res.NewFiles, res.NewBytes = newIdx.fileStats()
	res.Diff = classifyTrees(oldIdx, newIdx)
	r.logf("  %d files → %d files: %d unchanged, %d changed, %d added, %d removed",
		res.OldFiles, res.NewFiles, len(res.Diff.Unchanged), len(res.Diff.Changed), len(res.Diff.Added), len(res.Diff.Removed))

	if err := r.bundleRuns(&res, oldDir, newDir, newIdx); err != nil {
		return res, err
	}
	if err := r.perFileCosts(&res, oldDir, newDir, newIdx); err != nil {
		return res, err
	}
	res.Sums = sumPerFile(res.Costs, toolNames(r.tools))

	if r.tar != "" && r.zstd != "" {
		n, err := tarZstSize(r.ctx, r.tar, r.zstd, newDir)
		if r.ctx.Err() != nil {
			return res, r.ctx.Err()
		}
		if err != nil {
			res.TarZstErr = err.Error()
			r.logf("  tar | zstd: FAILED: %v", err)
		} else {
			res.TarZst = n
			r.logf("  tar | zstd -19 --long=27: %d B", n)
		}
	}
	if err := r.publishArchives(&res); err != nil {
		return res, err
	}
	return res, nil
}

// bundleRuns diffs and applies the bundle r.runs times, checking the
// rebuilt tree against newIdx each time.
func (r *treeRun) bundleRuns(res *treePairResult, oldDir, newDir string, newIdx treeIndex) error {
	work := filepath.Join(r.tmp, "bundle")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	bundle, out := filepath.Join(work, "bundle.dupb"), filepath.Join(work, "out")
	defer os.RemoveAll(work)
	var samples []sample
	var failure string
	for run := 1; run <= r.runs; run++ {
		if err := os.Remove(bundle); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.RemoveAll(out); err != nil {
			return err
		}
		s, issue, err := r.bundleOnce(oldDir, newDir, bundle, out, newIdx)
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if err != nil {
			failure = err.Error()
			r.logf("  bundle run %d/%d: FAILED: %v", run, r.runs, err)
			break
		}
		if issue != "" && res.RoundTripIssue == "" {
			res.RoundTripIssue = issue
		}
		samples = append(samples, s)
		r.logf("  bundle run %d/%d: %d B, diff %.2fs %s MiB, apply %.2fs %s MiB, round trip %s",
			run, r.runs, s.patchBytes, s.diffSecs, fmtMiB(s.diffRSS), s.applySecs, fmtMiB(s.applyRSS), yesNo(s.roundTrip))
	}
	res.Bundle = aggregate("bundle", samples)
	if failure != "" {
		res.Bundle.Err = failure
	}
	return nil
}

// bundleOnce makes and applies one bundle. issue describes how the rebuilt
// tree differs from newIdx ("" when identical).
func (r *treeRun) bundleOnce(oldDir, newDir, bundle, out string, newIdx treeIndex) (s sample, issue string, err error) {
	d, err := runProcess(r.ctx, []string{r.mkdelta, oldDir, newDir, "-o", bundle, "-q"})
	if err != nil {
		return s, "", fmt.Errorf("mkdelta: %w", err)
	}
	s.diffSecs, s.diffRSS = d.wall.Seconds(), d.rss
	st, err := os.Stat(bundle)
	if err != nil {
		return s, "", fmt.Errorf("mkdelta wrote no bundle: %w", err)
	}
	s.patchBytes = st.Size()
	a, err := runProcess(r.ctx, []string{r.deltaup, "patch", oldDir, bundle, "-o", out, "-q"})
	if err != nil {
		return s, "", fmt.Errorf("deltaup patch: %w", err)
	}
	s.applySecs, s.applyRSS = a.wall.Seconds(), a.rss
	got, err := scanTree(out)
	if err != nil {
		return s, "", fmt.Errorf("deltaup patch output: %w", err)
	}
	diffs := compareTrees(newIdx, got)
	s.roundTrip = len(diffs) == 0
	return s, summarizeDiffs(diffs, 3), nil
}

// perFileCosts runs every per-file tool on each changed file and zstd -19
// on each added file.
func (r *treeRun) perFileCosts(res *treePairResult, oldDir, newDir string, newIdx treeIndex) error {
	work := filepath.Join(r.tmp, "perfile")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(work)
	patch := filepath.Join(work, "patch")
	size := func(argv []string) (int64, error) {
		if err := os.Remove(patch); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		if _, err := runProcess(r.ctx, argv); err != nil {
			return 0, err
		}
		st, err := os.Stat(patch)
		if err != nil {
			return 0, fmt.Errorf("no output: %w", err)
		}
		return st.Size(), nil
	}
	for _, rel := range res.Diff.Changed {
		c := fileCost{Path: rel, NewSize: newIdx[rel].Size, Patches: map[string]int64{}, Errs: map[string]string{}}
		oldF, newF := filepath.Join(oldDir, filepath.FromSlash(rel)), filepath.Join(newDir, filepath.FromSlash(rel))
		for _, t := range r.tools {
			n, err := size(t.Diff(oldF, newF, patch))
			if r.ctx.Err() != nil {
				return r.ctx.Err()
			}
			if err != nil {
				c.Errs[t.Name] = err.Error()
				r.logf("  %s %s: FAILED: %v", perFileLabel(t.Name), rel, err)
				continue
			}
			c.Patches[t.Name] = n
		}
		res.Costs = append(res.Costs, c)
	}
	for _, rel := range res.Diff.Added {
		c := fileCost{Path: rel, Added: true, NewSize: newIdx[rel].Size, Zstd: newIdx[rel].Size, Raw: true}
		if r.zstd != "" {
			newF := filepath.Join(newDir, filepath.FromSlash(rel))
			n, err := size([]string{r.zstd, "-19", "-q", "-f", newF, "-o", patch})
			if r.ctx.Err() != nil {
				return r.ctx.Err()
			}
			if err != nil {
				r.logf("  zstd -19 %s: FAILED: %v", rel, err)
			} else {
				c.Zstd, c.Raw = n, false
			}
		}
		res.Costs = append(res.Costs, c)
	}
	r.logf("  per-file: %d changed, %d added files measured", len(res.Diff.Changed), len(res.Diff.Added))
	return nil
}

// publishArchives records the sizes of the full archives mkdelta publish
// writes for the pair's new tree, publishing it (untimed, no patches) into a
// scratch repository per app once.
func (r *treeRun) publishArchives(res *treePairResult) error {
	p := res.Pair
	repo, ok := r.archiveRepos[p.App]
	if !ok {
		repo = filepath.Join(r.tmp, "archives", p.App)
		r.archiveRepos[p.App] = repo
	}
	arts, err := listRepoArtifacts(repo, p.App)
	if err != nil {
		return err
	}
	if _, done := arts.Archives[p.New]; !done {
		_, err := runProcess(r.ctx, r.publishArgv(repo, p.App, p.New, 0))
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if err != nil {
			res.PubErr = err.Error()
			r.logf("  mkdelta publish (archives only): FAILED: %v", err)
			return nil
		}
		if arts, err = listRepoArtifacts(repo, p.App); err != nil {
			return err
		}
	}
	a := arts.Archives[p.New]
	if n, ok := a[fmtTarZst]; ok {
		res.PubZst = n
	}
	if n, ok := a[fmtTarGz]; ok {
		res.PubGz = n
	}
	r.logf("  mkdelta publish archives: tar.zst %d B, tar.gz %d B", res.PubZst, res.PubGz)
	return nil
}

// benchPublish builds the scenario's repository (untimed), then times the
// publish of s.Timed r.runs times (each into a fresh copy of the setup
// repository) and mkdelta verify of the final repository r.runs times.
func (r *treeRun) benchPublish(s publishScenario) (publishResult, error) {
	res := publishResult{Scenario: s, Publish: timing{RSS: unknownRSS}, Verify: timing{RSS: unknownRSS}}
	base := filepath.Join(r.tmp, "publish", s.App)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(base)
	setupRepo := filepath.Join(base, "setup")
	for _, v := range s.Setup {
		_, err := runProcess(r.ctx, r.publishArgv(setupRepo, s.App, v, s.PatchesFrom))
		if r.ctx.Err() != nil {
			return res, r.ctx.Err()
		}
		if err != nil {
			res.Err = fmt.Sprintf("publishing %s (setup): %v", v, err)
			r.logf("  %s", res.Err)
			return res, nil
		}
		r.logf("  published %s %s (untimed)", s.App, v)
	}

	var final string
	var pubRuns []procStats
	for run := 1; run <= r.runs; run++ {
		repo := filepath.Join(base, "run"+strconv.Itoa(run))
		if err := copyTree(setupRepo, repo); err != nil {
			return res, err
		}
		st, err := runProcess(r.ctx, r.publishArgv(repo, s.App, s.Timed, s.PatchesFrom))
		if r.ctx.Err() != nil {
			return res, r.ctx.Err()
		}
		if err != nil {
			res.Err = fmt.Sprintf("publishing %s: %v", s.Timed, err)
			r.logf("  %s", res.Err)
			break
		}
		pubRuns = append(pubRuns, st)
		r.logf("  publish %s run %d/%d: %.2fs, %s MiB", s.Timed, run, r.runs, st.wall.Seconds(), fmtMiB(st.rss))
		if final != "" {
			if err := os.RemoveAll(final); err != nil {
				return res, err
			}
		}
		final = repo
	}
	res.Publish = aggregateTiming(pubRuns)
	if final == "" {
		return res, nil
	}

	var verRuns []procStats
	for run := 1; run <= r.runs; run++ {
		st, err := runProcess(r.ctx, []string{r.mkdelta, "verify", "--repo", final, "--pubkey", r.key + ".pub"})
		if r.ctx.Err() != nil {
			return res, r.ctx.Err()
		}
		if err != nil {
			res.VerifyErr = err.Error()
			r.logf("  verify: FAILED: %v", err)
			break
		}
		verRuns = append(verRuns, st)
		r.logf("  verify run %d/%d: %.2fs, %s MiB", run, r.runs, st.wall.Seconds(), fmtMiB(st.rss))
	}
	res.Verify = aggregateTiming(verRuns)
	arts, err := listRepoArtifacts(final, s.App)
	if err != nil {
		return res, err
	}
	res.Artifacts = arts
	return res, nil
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n int64 }

// Write implements io.Writer.
func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// tarZstSize returns the size of
// `tar -C dir --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - . | zstd -19 --long=27`.
func tarZstSize(ctx context.Context, tarBin, zstdBin, dir string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	tarCmd := exec.CommandContext(ctx, tarBin, "-C", dir, "--sort=name", "--owner=0", "--group=0",
		"--numeric-owner", "--mtime=@0", "-cf", "-", ".")
	zstdCmd := exec.CommandContext(ctx, zstdBin, "-19", "--long=27", "-q", "-c")
	tarErr := &limitedBuffer{max: maxErrOutput}
	zstdErr := &limitedBuffer{max: maxErrOutput}
	out := &countingWriter{}
	tarCmd.Stdout, tarCmd.Stderr = pw, tarErr
	zstdCmd.Stdin, zstdCmd.Stdout, zstdCmd.Stderr = pr, out, zstdErr
	if err := tarCmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return 0, err
	}
	zerr := zstdCmd.Start()
	// The children hold their own copies of the pipe's ends.
	pr.Close()
	pw.Close()
	terr := tarCmd.Wait()
	if zerr == nil {
		zerr = zstdCmd.Wait()
	}
	if terr != nil {
		return 0, fmt.Errorf("tar: %v: %s", terr, firstLine(tarErr.buf.String()))
	}
	if zerr != nil {
		return 0, fmt.Errorf("zstd: %v: %s", zerr, firstLine(zstdErr.buf.String()))
	}
	return out.n, nil
}
