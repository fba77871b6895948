package main

// Repair mode (go run ./bench --repair): the client's repair route on a
// 140-file tree (esbuild's package with its 9.9 MB binary, prettier's 53
// files, 84 small documents), published in-process with the release tools
// and served over loopback HTTP with byte counts per request. An app
// directory of the old version is updated to the new one intact (the patch
// route), with the binary modified, with one small file modified, with one
// missing, and with the binary modified on a repository without frame
// indexes (what every client did before: the full archive). Each update is
// Prepare then Install of package apply, and must end in exactly the new
// tree. With --write the report replaces the repair section of
// bench/RESULTS.md.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/deltaup/deltaup/apply"
	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// The repair tree: esbuild and prettier versions from the corpus.
var (
	repairEsbuild  = [2]string{"0.25.11", "0.25.12"}
	repairPrettier = [2]string{"3.3.2", "3.3.3"}
)

const (
	repairFiles      = 140      // files in the tree
	repairSmallLimit = 64 << 10 // a small file's repair: at most this beyond the patch route
	repairBigFactor  = 1.1      // a large file's: at most this times its compressed size
	repairBegin      = "<!-- repair: go run ./bench --repair --write -->"
	repairEnd        = "<!-- /repair -->"
)

// repairScenario damages an app directory of the old version.
type repairScenario struct {
	Name    string
	File    string // the damaged file ("" for none)
	Missing bool   // delete it instead of modifying it
	NoIndex bool   // serve the repository without frame indexes
	Big     bool   // the file is large (target: 1.1x its compressed size)
}

var repairScenarios = []repairScenario{
	{Name: "intact (patch route)"},
	{Name: "bin/esbuild modified", File: "bin/esbuild", Big: true},
	{Name: "one small file modified", File: "node_modules/prettier/package.json"},
	{Name: "one small file missing", File: "docs/page-042.md", Missing: true},
	{Name: "bin/esbuild modified, no frame index (before)", File: "bin/esbuild", NoIndex: true},
}

// repairResult is one scenario's outcome.
type repairResult struct {
	Scenario                   repairScenario
	Route, Reason, Repair      string
	Docs, Index, Frames, Patch int64 // bytes served, by kind
	Archive                    int64
	Requests                   int
	Prepare                    time.Duration
	Exact                      bool
	Err                        string
}

// artifacts is what the update fetched beyond the manifest.
func (r repairResult) artifacts() int64 { return r.Index + r.Frames + r.Patch + r.Archive }

// repairRun is the shared state of the repair measurements.
type repairRun struct {
	ctx      context.Context
	tmp      string
	oldDir   string
	newDir   string
	repo     string
	bare     string // the repository without frame indexes
	pub      manifest.PublicKey
	m        *manifest.Manifest
	progress io.Writer
}

// runRepair is the whole --repair program; it returns the exit code.
func runRepair(argv []string, o options, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "bench:", err)
		return exitError
	}
	for i := range 2 {
		for _, d := range []string{filepath.Join(o.corpus, "esbuild", repairEsbuild[i]), filepath.Join(o.corpus, "prettier", repairPrettier[i])} {
			if _, err := os.Stat(d); err != nil {
				fmt.Fprintf(stderr, "bench: %v\n\nThe corpus (its esbuild and prettier trees) is needed: %s.\n", err, fetchHint)
				return exitUsage
			}
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "deltaup-bench-repair-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	r := &repairRun{ctx: ctx, tmp: tmp, progress: stderr}
	env := collectEnvironment(ctx, root, nil, commandLine(argv))
	fmt.Fprintln(stderr, "bench: building and publishing the trees...")
	st, err := r.setup(o.corpus)
	if err != nil {
		return fail(err)
	}
	var results []repairResult
	for i, s := range repairScenarios {
		fmt.Fprintf(stderr, "bench: repair %d/%d: %s\n", i+1, len(repairScenarios), s.Name)
		res, err := r.update(s)
		if err != nil {
			return fail(err)
		}
		results = append(results, res)
	}
	report := formatRepairReport(env, st, results)
	fmt.Fprint(stdout, report)
	if o.write {
		path := filepath.Join(root, filepath.FromSlash(resultsFile))
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
		if err := os.WriteFile(path, []byte(replaceRepairSection(string(old), report)), 0o644); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "bench: wrote the repair section of %s\n", path)
	}
	return exitOK
}

// repairTreeStats describes the published trees.
type repairTreeStats struct {
	Files                  int
	Bytes                  int64
	TarZst, Framed         int64 // the release's tar.zst; the framed archive the index describes
	Separate               bool  // the framed archive is a file of its own
	Frames, IndexBytes     int
	BigFile                string
	BigSize, BigCompressed int64 // the large file, raw and compressed alone
}

// setup builds the two trees, publishes them and makes the repository copy
// without frame indexes.
func (r *repairRun) setup(corpus string) (repairTreeStats, error) {
	var st repairTreeStats
	r.oldDir, r.newDir = filepath.Join(r.tmp, "v1"), filepath.Join(r.tmp, "v2")
	for i, dir := range []string{r.oldDir, r.newDir} {
		if err := buildRepairTree(corpus, dir, i); err != nil {
			return st, err
		}
	}
	pubFile, keyFile, err := manifest.GenerateKey(nil)
	if err != nil {
		return st, err
	}
	priv, err := manifest.ParsePrivateKey(keyFile, nil)
	if err != nil {
		return st, err
	}
	if r.pub, err = manifest.ParsePublicKey(pubFile); err != nil {
		return st, err
	}
	r.repo = filepath.Join(r.tmp, "repo")
	for i, dir := range []string{r.oldDir, r.newDir} {
		if _, err := releasetools.Publish(r.ctx, dir, releasetools.PublishOptions{Repo: r.repo, App: "bench", Version: fmt.Sprintf("1.%d.0", i), Key: priv}); err != nil {
			return st, err
		}
	}
	raw, err := os.ReadFile(filepath.Join(r.repo, manifest.ManifestName))
	if err != nil {
		return st, err
	}
	if r.m, err = manifest.ParseUnverified(raw); err != nil {
		return st, err
	}
	r.bare = filepath.Join(r.tmp, "bare")
	if err := copyTree(r.repo, r.bare); err != nil {
		return st, err
	}
	ents, err := os.ReadDir(filepath.Join(r.bare, releasetools.ArchivesDir))
	if err != nil {
		return st, err
	}
	for _, e := range ents {
		if n := e.Name(); strings.Contains(n, ".index.json") || strings.HasSuffix(n, ".frames.tar.zst") {
			if err := os.Remove(filepath.Join(r.bare, releasetools.ArchivesDir, n)); err != nil {
				return st, err
			}
		}
	}
	// The old release's figures: the damaged files are its.
	rel, _ := r.m.Release("1.0.0")
	es, err := tree.Scan(r.ctx, r.oldDir, tree.ScanOptions{Hash: true})
	if err != nil {
		return st, err
	}
	for _, e := range es {
		if e.Type == tree.File {
			st.Files++
			st.Bytes += e.Size
		}
	}
	zstPath := ""
	for _, a := range rel.Archives {
		if a.Format == manifest.FormatTarZst {
			st.TarZst, zstPath = a.Size, a.Path
		}
	}
	ip, _ := manifest.FrameIndexPath(rel)
	idx, err := os.ReadFile(filepath.Join(r.repo, ip))
	if err != nil {
		return st, err
	}
	x, err := manifest.ParseFrameIndex(idx)
	if err != nil {
		return st, err
	}
	st.Framed, st.Separate, st.Frames, st.IndexBytes = x.Archive.Size, x.Archive.Path != zstPath, len(x.Frames), len(idx)
	st.BigFile = "bin/esbuild"
	big, err := os.ReadFile(filepath.Join(r.oldDir, "bin", "esbuild"))
	if err != nil {
		return st, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(fallback.ZstdWindow), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return st, err
	}
	st.BigSize, st.BigCompressed = int64(len(big)), int64(len(enc.EncodeAll(big, nil)))
	enc.Close()
	return st, nil
}

// buildRepairTree writes version i (0 or 1) of the tree into dir:
// esbuild's package at the top, prettier's in node_modules/prettier, and
// documents up to repairFiles files (two of them change between versions).
func buildRepairTree(corpus, dir string, i int) error {
	if err := copyTree(filepath.Join(corpus, "esbuild", repairEsbuild[i]), dir); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "node_modules"), 0o755); err != nil {
		return err
	}
	if err := copyTree(filepath.Join(corpus, "prettier", repairPrettier[i]), filepath.Join(dir, "node_modules", "prettier")); err != nil {
		return err
	}
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err := os.MkdirAll(filepath.Join(dir, "docs"), 0o755); err != nil {
		return err
	}
	for k := 0; n < repairFiles; k, n = k+1, n+1 {
		var b strings.Builder
		for line := range 40 + k%7*60 {
			fmt.Fprintf(&b, "Page %d, paragraph %d: how the app does thing %d, and what to do when it does not.\n", k, line, (k*31+line)%97)
		}
		if i == 1 && k%40 == 3 {
			b.WriteString("Updated for the new version.\n")
		}
		if err := os.WriteFile(filepath.Join(dir, "docs", fmt.Sprintf("page-%03d.md", k)), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// countingServer serves a directory and counts body bytes per request.
type countingServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []servedRequest
}

type servedRequest struct {
	Path, Range string
	Bytes       int64
}

type countingResponse struct {
	http.ResponseWriter
	n int64
}

func (c *countingResponse) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func serveCounting(dir string) *countingServer {
	s := &countingServer{}
	files := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		cw := &countingResponse{ResponseWriter: w}
		files.ServeHTTP(cw, req)
		s.mu.Lock()
		s.reqs = append(s.reqs, servedRequest{Path: strings.TrimPrefix(req.URL.Path, "/"), Range: req.Header.Get("Range"), Bytes: cw.n})
		s.mu.Unlock()
	}))
	return s
}

// update installs the old version, damages it as s says and updates it.
func (r *repairRun) update(s repairScenario) (repairResult, error) {
	res := repairResult{Scenario: s}
	served := r.repo
	if s.NoIndex {
		served = r.bare
	}
	srv := serveCounting(served)
	defer srv.Close()
	app := filepath.Join(r.tmp, "app")
	os.RemoveAll(app)
	os.RemoveAll(app + apply.BackupSuffix)
	if err := copyTree(r.oldDir, app); err != nil {
		return res, err
	}
	if s.File != "" {
		p := filepath.Join(app, filepath.FromSlash(s.File))
		if s.Missing {
			if err := os.Remove(p); err != nil {
				return res, err
			}
		} else {
			b, err := os.ReadFile(p)
			if err != nil {
				return res, err
			}
			for i := len(b) / 3; i < len(b); i += len(b)/3 + 1 {
				b[i] ^= 0x5a
			}
			if err := os.WriteFile(p, b, 0o755); err != nil {
				return res, err
			}
		}
	}
	u := &apply.Updater{Config: apply.Config{AppDir: app, Servers: []string{srv.URL}, PublicKey: r.pub, App: "bench"}}
	start := time.Now()
	p, err := u.Prepare(r.ctx)
	res.Prepare = time.Since(start)
	if err != nil {
		res.Err = err.Error()
		return res, nil
	}
	res.Route, res.Reason, res.Repair = p.Stage.Route, p.Check.Reason, p.Stage.Repair
	if p.Stage.Fallback != "" {
		res.Repair = "fallback: " + p.Stage.Fallback
	}
	if _, err := u.Install(r.ctx); err != nil {
		res.Err = err.Error()
		return res, nil
	}
	got, err := tree.Scan(r.ctx, app, tree.ScanOptions{Hash: true})
	if err != nil {
		return res, err
	}
	want, _ := r.m.Release("1.1.0")
	res.Exact = tree.Digest(got) == want.TreeDigest
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, q := range srv.reqs {
		res.Requests++
		switch {
		case strings.HasPrefix(q.Path, "manifest"):
			res.Docs += q.Bytes
		case strings.Contains(q.Path, ".index.json"):
			res.Index += q.Bytes
		case q.Range != "" && strings.HasSuffix(q.Path, ".tar.zst"):
			res.Frames += q.Bytes
		case strings.HasPrefix(q.Path, releasetools.PatchesDir+"/"):
			res.Patch += q.Bytes
		default:
			res.Archive += q.Bytes
		}
	}
	return res, nil
}

// formatRepairReport renders the repair section.
func formatRepairReport(env Environment, st repairTreeStats, rs []repairResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n## Repair route: a few damaged files of a %d-file tree\n\n", repairBegin, st.Files)
	fmt.Fprintf(&b, "- Date (UTC): %s; %s, %d CPUs; Go: %s\n", env.Date.Format("2006-01-02 15:04:05"), env.CPU, env.NumCPU, env.GoVersion)
	fmt.Fprintf(&b, "- Command: `%s`\n", env.Command)
	fmt.Fprintf(&b, "- Tree 1.0.0 → 1.1.0: esbuild %s → %s (bin/esbuild, %d bytes), prettier %s → %s in node_modules/prettier, generated docs; %d files, %d bytes\n",
		repairEsbuild[0], repairEsbuild[1], st.BigSize, repairPrettier[0], repairPrettier[1], st.Files, st.Bytes)
	where := "it is the release's tar.zst"
	if st.Separate {
		where = fmt.Sprintf("%+.1f%%: published beside the one-frame tar.zst, which full downloads keep", 100*(float64(st.Framed)/float64(st.TarZst)-1))
	}
	fmt.Fprintf(&b, "- 1.0.0's tar.zst: %d bytes; framed: %d bytes in %d frames (%s); frame index %d bytes (+ signature)\n", st.TarZst, st.Framed, st.Frames, where, st.IndexBytes)
	fmt.Fprintf(&b, "- bin/esbuild compressed alone (zstd, the archive's level and window): %d bytes\n", st.BigCompressed)
	b.WriteString("- Each update: apply.Updater Prepare + Install over loopback HTTP, byte counts from the server (bodies only); the result is checked against 1.1.0's tree digest\n\n")
	b.WriteString("| damage | route | frame index | frames | patches | full archive | artifacts total | beyond the patch route | target | exact | Prepare s |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |\n")
	var base int64 = -1
	for _, r := range rs {
		if r.Scenario.File == "" && r.Err == "" {
			base = r.artifacts()
		}
	}
	for _, r := range rs {
		if r.Err != "" {
			fmt.Fprintf(&b, "| %s | error: %s | | | | | | | | | |\n", r.Scenario.Name, r.Err)
			continue
		}
		beyond, target := "", ""
		if base >= 0 && r.Scenario.File != "" {
			extra := r.artifacts() - base
			beyond = fmt.Sprint(extra)
			switch {
			case r.Scenario.NoIndex:
				target = "(the old behaviour)"
			case r.Scenario.Big:
				limit := int64(float64(st.BigCompressed) * repairBigFactor)
				target = fmt.Sprintf("≤ %d (1.1x): **%s**", limit, passIf(extra <= limit))
			default:
				target = fmt.Sprintf("≤ %d (64 KiB): **%s**", repairSmallLimit, passIf(extra <= repairSmallLimit))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %s | %s | %v | %.2f |\n", r.Scenario.Name, r.Route, r.Index, r.Frames, r.Patch, r.Archive, r.artifacts(), beyond, target, r.Exact, r.Prepare.Seconds())
	}
	b.WriteString("\nWhat the client said (CheckResult.Reason; StageResult.Repair):\n\n")
	for _, r := range rs {
		if r.Reason != "" || r.Repair != "" {
			fmt.Fprintf(&b, "- %s: %s", r.Scenario.Name, r.Reason)
			if r.Repair != "" {
				fmt.Fprintf(&b, "; %s", r.Repair)
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "\n%s\n", repairEnd)
	return b.String()
}

// replaceRepairSection puts section into the report old in place of its
// repair section, or at its end.
func replaceRepairSection(old, section string) string {
	i, j := strings.Index(old, repairBegin), strings.Index(old, repairEnd)
	if i < 0 || j < i {
		if old != "" && !strings.HasSuffix(old, "\n\n") {
			old = strings.TrimRight(old, "\n") + "\n\n"
		}
		return old + section
	}
	return old[:i] + section + strings.TrimPrefix(old[j+len(repairEnd):], "\n")
}

// keepRepairSection carries the repair section of the file at path (if
// any) over to a new single-file report.
func keepRepairSection(path, report string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return report
	}
	i, j := strings.Index(string(old), repairBegin), strings.Index(string(old), repairEnd)
	if i < 0 || j < i {
		return report
	}
	return replaceRepairSection(report, string(old[i:j+len(repairEnd)])+"\n")
}
