package main

// Peers mode (--peers): deltaup against the strongest settings of the
// strongest peers on the pairs of issue 10 — native executables of several
// kinds (Rust ELF/PE/Mach-O, Go PE/Mach-O/ELF) and two JavaScript trees.
//
// Peers and their settings:
//   - hdiffz/hpatchz (HDiffPatch 4.12, built from source with lzma2):
//     `hdiffz -m-6 -c-lzma2-9-16m`; trees in its directory mode.
//   - Zucchini (Chromium's executable-aware differ, the pure-Go port
//     github.com/404Setup/go-zucchini, `go build ./cmd/zucchini`): its raw
//     patch compressed with `xz -9e`.
//   - zstd --ultra -22 --long=31 --patch-from (Debian's zstd); trees as a
//     tar of each tree (sorted, zeroed metadata) with the old tar as the
//     reference.
//   - C bsdiff 4.3 (Debian).
//   - xdelta3 -9 -S djw (Debian's xdelta3 3.0.11, its strongest: level 9
//     and the secondary Huffman coder), source window as large as the old
//     file (-B).
//   - hdiffz -s-16 -c-lzma2-9-16m: HDiffPatch's stream matcher (less
//     memory); kept beside -m-6 because it wins on some pairs.
//
// Peers not on PATH are skipped with a note; bench/build-peers.sh builds
// HDiffPatch and Zucchini into a directory to put on PATH.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// peerPair is one pair of the peers table: two files or two trees.
type peerPair struct {
	Label    string
	Old, New string // relative to the corpus
	Tree     bool
	Today    int64 // deltaup's bytes when issue 10 was filed (0: not given)
}

// peerPairs are the pairs of issue 10, in its order.
var peerPairs = []peerPair{
	{"lightningcss linux-x64 1.28.1→1.28.2 (Rust ELF .so)", "lightningcss-linux-x64/1.28.1/lightningcss.linux-x64-gnu.node", "lightningcss-linux-x64/1.28.2/lightningcss.linux-x64-gnu.node", false, 360898},
	{"lightningcss linux-x64 1.28.2→1.29.0", "lightningcss-linux-x64/1.28.2/lightningcss.linux-x64-gnu.node", "lightningcss-linux-x64/1.29.0/lightningcss.linux-x64-gnu.node", false, 2546958},
	{"lightningcss win32-x64 1.28.2→1.29.0 (PE)", "lightningcss-win32-x64/1.28.2/lightningcss.win32-x64-msvc.node", "lightningcss-win32-x64/1.29.0/lightningcss.win32-x64-msvc.node", false, 2339034},
	{"lightningcss darwin-arm64 1.28.2→1.29.0 (Mach-O)", "lightningcss-darwin-arm64/1.28.2/lightningcss.darwin-arm64.node", "lightningcss-darwin-arm64/1.29.0/lightningcss.darwin-arm64.node", false, 2153669},
	{"esbuild win32-x64 0.25.0→0.25.1 (Go PE)", "esbuild-win32-x64/0.25.0/esbuild.exe", "esbuild-win32-x64/0.25.1/esbuild.exe", false, 231278},
	{"oxlint linux-x64 1.21.0→1.22.0 (.node)", "oxlint-linux-x64/1.21.0/oxlint.linux-x64-gnu.node", "oxlint-linux-x64/1.22.0/oxlint.linux-x64-gnu.node", false, 260083},
	{"prettier 3.3.0→3.3.1 (tree)", "prettier/3.3.0", "prettier/3.3.1", true, 5602},
	{"prettier 3.3.2→3.3.3 (tree)", "prettier/3.3.2", "prettier/3.3.3", true, 168925},
	{"esbuild darwin-arm64 0.25.0→0.25.1 (Go Mach-O)", "esbuild-darwin-arm64/0.25.0/bin/esbuild", "esbuild-darwin-arm64/0.25.1/bin/esbuild", false, 292636},
	{"esbuild linux-x64 0.25.0→0.25.12 (Go ELF, far)", "esbuild/0.25.0/bin/esbuild", "esbuild/0.25.12/bin/esbuild", false, 666940},
}

// peerTool is one tool of the peers table. Diff and Apply are argv; a
// multi-step tool runs through sh -c (its time and peak memory then cover
// every step: the shell waits for each).
type peerTool struct {
	Name, Setting string
	Files, Trees  bool
	Diff          func(old, new, patch, work string) []string
	Apply         func(old, patch, out, work string) []string
}

// peerTools resolves the tools of the peers table; unavailable ones are
// returned as skipped with the reason.
func peerTools(s *toolSetup) ([]peerTool, []Skipped) {
	var tools []peerTool
	var skipped []Skipped
	mk, err1 := s.build("./cmd/mkdelta")
	du, err2 := s.build("./cmd/deltaup")
	if err := errors.Join(err1, err2); err != nil {
		skipped = append(skipped, Skipped{"deltaup", err.Error()})
	} else {
		tools = append(tools, peerTool{Name: "deltaup", Setting: "mkdelta diff (default)", Files: true, Trees: true,
			Diff:  func(o, n, p, _ string) []string { return []string{mk, "diff", "-q", o, n, "-o", p} },
			Apply: func(o, p, out, _ string) []string { return []string{du, "patch", "-q", o, p, "-o", out} },
		})
	}
	if b, err := lookPath("hdiffz", "hpatchz"); err != nil {
		skipped = append(skipped, Skipped{"hdiffz", err.Error() + "; build it with bench/build-peers.sh"})
	} else {
		tools = append(tools, peerTool{Name: "hdiffz lzma2", Setting: "hdiffz -m-6 -c-lzma2-9-16m; hpatchz -s-8m (trees: directory mode)", Files: true, Trees: true,
			Diff:  func(o, n, p, _ string) []string { return []string{b[0], "-m-6", "-c-lzma2-9-16m", "-f", o, n, p} },
			Apply: func(o, p, out, _ string) []string { return []string{b[1], "-s-8m", "-f", o, p, out} },
		})
	}
	if b, err := lookPath("hdiffz", "hpatchz"); err == nil {
		tools = append(tools, peerTool{Name: "hdiffz -s lzma2", Setting: "hdiffz -s-16 -c-lzma2-9-16m; hpatchz -s-8m (trees: directory mode)", Files: true, Trees: true,
			Diff:  func(o, n, p, _ string) []string { return []string{b[0], "-s-16", "-c-lzma2-9-16m", "-f", o, n, p} },
			Apply: func(o, p, out, _ string) []string { return []string{b[1], "-s-8m", "-f", o, p, out} },
		})
	}
	if b, err := lookPath("xdelta3"); err != nil {
		skipped = append(skipped, Skipped{"xdelta3", err.Error()})
	} else {
		tools = append(tools, peerTool{Name: "xdelta3 -9 -S djw", Setting: "xdelta3 -9 -S djw -B <old size rounded up to a power of two, >= 8 MiB> -e -s OLD", Files: true,
			Diff: func(o, n, p, _ string) []string {
				return []string{b[0], "-f", "-e", "-9", "-S", "djw", "-B", fmt.Sprint(srcWindow(o)), "-s", o, n, p}
			},
			Apply: func(o, p, out, _ string) []string {
				return []string{b[0], "-f", "-d", "-B", fmt.Sprint(srcWindow(o)), "-s", o, p, out}
			},
		})
	}
	if b, err := lookPath("zucchini", "xz"); err != nil {
		skipped = append(skipped, Skipped{"zucchini", err.Error() + "; build it with bench/build-peers.sh"})
	} else {
		tools = append(tools, peerTool{Name: "zucchini+xz", Setting: "go-zucchini gen (raw patch) | xz -9e", Files: true,
			Diff: func(o, n, p, w string) []string {
				raw := filepath.Join(w, "zraw")
				return []string{"sh", "-c", `"$0" gen "$1" "$2" "$3" && "$4" -9e -T1 -c "$3" > "$5" && rm -f "$3"`, b[0], o, n, raw, b[1], p}
			},
			Apply: func(o, p, out, w string) []string {
				raw := filepath.Join(w, "zraw")
				return []string{"sh", "-c", `"$4" -dc "$2" > "$3" && "$0" apply "$1" "$3" "$5" && rm -f "$3"`, b[0], o, p, raw, b[1], out}
			},
		})
	}
	if b, err := lookPath("zstd", "tar"); err != nil {
		skipped = append(skipped, Skipped{"zstd", err.Error()})
	} else {
		tools = append(tools, peerTool{Name: "zstd -22 --long=31", Setting: "zstd --ultra -22 --long=31 --patch-from=OLD (trees: tar of each tree)", Files: true, Trees: true,
			Diff: func(o, n, p, _ string) []string {
				return []string{b[0], "-q", "-f", "--ultra", "-22", "--long=31", "--patch-from=" + o, n, "-o", p}
			},
			Apply: func(o, p, out, _ string) []string {
				return []string{b[0], "-q", "-f", "-d", "--long=31", "--patch-from=" + o, p, "-o", out}
			},
		})
	}
	if b, err := lookPath("bsdiff", "bspatch"); err != nil {
		skipped = append(skipped, Skipped{"bsdiff", err.Error()})
	} else {
		tools = append(tools, peerTool{Name: "bsdiff", Setting: "C bsdiff 4.3 (bzip2)", Files: true,
			Diff:  func(o, n, p, _ string) []string { return []string{b[0], o, n, p} },
			Apply: func(o, p, out, _ string) []string { return []string{b[1], o, out, p} },
		})
	}
	return tools, skipped
}

// srcWindow is xdelta3's -B for old: the file's size rounded up to a power
// of two, at least 8 MiB, so that the whole old file is one source window.
func srcWindow(old string) int64 {
	w := int64(8 << 20)
	if st, err := os.Stat(old); err == nil {
		for w < st.Size() {
			w <<= 1
		}
	}
	return w
}

// treeBytes is the size of the file at path, or of the regular files under
// it in all (0 when it cannot be read).
func treeBytes(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// peerResult is one tool on one pair.
type peerResult struct {
	Tool               string
	Bytes              int64
	DiffSecs, ApplySec float64
	DiffRSS, ApplyRSS  int64
	OK                 bool
	Err                string
}

type peerPairResult struct {
	Pair     peerPair
	NewBytes int64
	OldBytes int64 // the old file, or the old tree's files in all
	Results  []peerResult
	Methods  string // deltaup's per-file method choice
}

// treeTar writes a deterministic tar of dir (sorted names, zeroed owners
// and times) to path, so that the tar of an unchanged file is unchanged.
func treeTar(ctx context.Context, dir, path string) error {
	cmd := exec.CommandContext(ctx, "tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
		"--format=gnu", "-C", dir, "-cf", path, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("tar %s: %v: %s", dir, err, firstLine(string(out)))
	}
	return nil
}

// treeSum digests a tree: every regular file's relative path and content,
// in sorted order (modes and times are not compared).
func treeSum(dir string) ([32]byte, error) {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return [32]byte{}, err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		s, err := fileSHA256(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			return [32]byte{}, err
		}
		fmt.Fprintf(h, "%s\x00%x\n", n, s)
	}
	return [32]byte(h.Sum(nil)), nil
}

// runPeer diffs and applies one pair with one tool in work, and checks the
// output.
func runPeer(ctx context.Context, t peerTool, p peerPair, oldPath, newPath, work string) peerResult {
	r := peerResult{Tool: t.Name}
	if err := os.RemoveAll(work); err != nil {
		r.Err = err.Error()
		return r
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		r.Err = err.Error()
		return r
	}
	defer os.RemoveAll(work)
	o, n := oldPath, newPath
	tarMode := p.Tree && strings.HasPrefix(t.Name, "zstd")
	if tarMode {
		o, n = filepath.Join(work, "old.tar"), filepath.Join(work, "new.tar")
		if err := treeTar(ctx, oldPath, o); err != nil {
			r.Err = err.Error()
			return r
		}
		if err := treeTar(ctx, newPath, n); err != nil {
			r.Err = err.Error()
			return r
		}
	}
	patch := filepath.Join(work, "patch")
	out := filepath.Join(work, "out")
	d, err := runProcess(ctx, t.Diff(o, n, patch, work))
	if err != nil {
		r.Err = "diff: " + err.Error()
		return r
	}
	r.DiffSecs, r.DiffRSS = d.wall.Seconds(), d.rss
	st, err := os.Stat(patch)
	if err != nil {
		r.Err = "no patch: " + err.Error()
		return r
	}
	r.Bytes = st.Size()
	if tarMode {
		os.Remove(n)
	}
	a, err := runProcess(ctx, t.Apply(o, patch, out, work))
	if err != nil {
		r.Err = "apply: " + err.Error()
		return r
	}
	r.ApplySec, r.ApplyRSS = a.wall.Seconds(), a.rss
	var got, want [32]byte
	switch {
	case tarMode:
		x := filepath.Join(work, "x")
		if err := os.Mkdir(x, 0o755); err == nil {
			if msg, err := exec.CommandContext(ctx, "tar", "-C", x, "-xf", out).CombinedOutput(); err != nil {
				r.Err = "untar: " + firstLine(string(msg))
				return r
			}
		}
		got, err = treeSum(x)
		if err == nil {
			want, err = treeSum(newPath)
		}
	case p.Tree:
		got, err = treeSum(out)
		if err == nil {
			want, err = treeSum(newPath)
		}
	default:
		got, err = fileSHA256(out)
		if err == nil {
			want, err = fileSHA256(newPath)
		}
	}
	if err != nil {
		r.Err = "check: " + err.Error()
		return r
	}
	r.OK = got == want
	if !r.OK {
		r.Err = "output differs from the new version"
	}
	return r
}

// deltaupMethods runs mkdelta once more without -q: its report names the
// method kept for the file.
func deltaupMethods(ctx context.Context, mk, oldPath, newPath, work string) string {
	p := filepath.Join(work, "m.patch")
	defer os.Remove(p)
	out, err := exec.CommandContext(ctx, mk, "diff", oldPath, newPath, "-o", p).CombinedOutput()
	if err != nil {
		return ""
	}
	return methodOf(string(out))
}

// methodOf picks the method ("native/exe-bsdiff-cm") out of mkdelta's
// one-line report, or returns the line when it names none.
func methodOf(line string) string {
	for _, f := range strings.Fields(line) {
		if strings.HasPrefix(f, "native/") {
			return f
		}
	}
	if _, rest, ok := strings.Cut(line, "bundle: "); ok {
		// A tree: the bundle's entry counts ("22 solid" are files coded
		// against the whole old tree).
		rest, _, _ = strings.Cut(rest, " in ")
		return "bundle: " + strings.TrimSuffix(strings.TrimSpace(rest), ",")
	}
	return strings.TrimSpace(line)
}

// runPeers is the --peers mode.
func runPeers(argv []string, o options, stdout, stderr io.Writer) int {
	for _, p := range peerPairs {
		for _, f := range []string{p.Old, p.New} {
			if _, err := os.Stat(filepath.Join(o.corpus, f)); err != nil {
				fmt.Fprintf(stderr, "bench: %s missing under %s: %s.\n", f, o.corpus, fetchHint)
				return exitUsage
			}
		}
	}
	root, tmp, binDir, ctx, cleanup, err := benchSetup("deltaup-peers-")
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitError
	}
	defer cleanup()
	s := &toolSetup{ctx: ctx, root: root, binDir: binDir, built: map[string]buildResult{}}
	tools, skipped := peerTools(s)
	for _, sk := range skipped {
		fmt.Fprintf(stderr, "bench: skipping %s: %s\n", sk.Name, sk.Reason)
	}
	mk, _ := s.build("./cmd/mkdelta")
	start := time.Now()
	var results []peerPairResult
	for i, p := range peerPairs {
		fmt.Fprintf(stderr, "bench: pair %d/%d: %s\n", i+1, len(peerPairs), p.Label)
		oldPath, newPath := filepath.Join(o.corpus, p.Old), filepath.Join(o.corpus, p.New)
		pr := peerPairResult{Pair: p}
		if !p.Tree {
			if st, err := os.Stat(newPath); err == nil {
				pr.NewBytes = st.Size()
			}
		}
		pr.OldBytes = treeBytes(oldPath)
		for _, t := range tools {
			if (p.Tree && !t.Trees) || (!p.Tree && !t.Files) {
				continue
			}
			r := runPeer(ctx, t, p, oldPath, newPath, filepath.Join(tmp, "work"))
			if ctx.Err() != nil {
				fmt.Fprintln(stderr, "bench:", ctx.Err())
				return exitError
			}
			fmt.Fprintf(stderr, "  %-20s %10d B  diff %6.2fs  apply %6.2fs  ok %v %s\n", t.Name, r.Bytes, r.DiffSecs, r.ApplySec, r.OK, r.Err)
			pr.Results = append(pr.Results, r)
		}
		if mk != "" {
			pr.Methods = deltaupMethods(ctx, mk, oldPath, newPath, tmp)
		}
		results = append(results, pr)
	}
	env := collectEnvironment(ctx, root, nil, commandLine(argv))
	report := formatPeers(env, deltaupRevision(ctx, root), o.corpus, tools, skipped, results, time.Since(start))
	fmt.Fprint(stdout, report)
	if o.write {
		path := filepath.Join(root, filepath.FromSlash(resultsFile))
		old, _ := os.ReadFile(path)
		if err := os.WriteFile(path, []byte(replacePeersSection(string(old), report)), 0o644); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitError
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", path)
	}
	return exitOK
}

// Markers of the peers section of bench/RESULTS.md.
const (
	peersBegin = "<!-- peers:begin -->"
	peersEnd   = "<!-- peers:end -->"
)

// replacePeersSection puts section (which carries its markers) in place of
// the one in doc, or appends it.
func replacePeersSection(doc, section string) string {
	i, j := strings.Index(doc, peersBegin), strings.Index(doc, peersEnd)
	if i < 0 || j < i {
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		return doc + "\n" + section
	}
	return doc[:i] + strings.TrimSuffix(section, "\n") + doc[j+len(peersEnd):]
}

// keepPeersSection returns report with the peers section of the file at
// path, if it has one, appended: a single-file --write keeps it.
func keepPeersSection(path, report string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return report
	}
	i, j := strings.Index(string(old), peersBegin), strings.Index(string(old), peersEnd)
	if i < 0 || j < i {
		return report
	}
	return replacePeersSection(report, string(old[i:j+len(peersEnd)])+"\n")
}

// formatPeers renders the peers table.
func formatPeers(env Environment, rev, corpus string, tools []peerTool, skipped []Skipped, res []peerPairResult, took time.Duration) string {
	var b bytes.Buffer
	fmt.Fprintln(&b, peersBegin)
	fmt.Fprintln(&b, "## Round 2: the strongest peers (issue 10)")
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "- Date (UTC): %s; %s, %d CPUs; load at start %s; %s; deltaup %s\n", env.Date.Format("2006-01-02 15:04"), env.CPU, env.NumCPU, env.LoadAvg, env.GoVersion, rev)
	fmt.Fprintf(&b, "- Command: `%s` (one run per tool per pair, %s in all); corpus %s\n", env.Command, took.Round(time.Second), corpus)
	fmt.Fprintln(&b, "- Settings:")
	for _, t := range tools {
		fmt.Fprintf(&b, "  - %s: %s\n", t.Name, t.Setting)
	}
	for _, s := range skipped {
		fmt.Fprintf(&b, "  - %s: skipped (%s)\n", s.Name, s.Reason)
	}
	fmt.Fprintln(&b, "- Every round trip is checked (file SHA-256, or every file of the tree); times are wall seconds of the process (a sh -c pipeline for zucchini+xz), apply included.")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| pair | deltaup at issue | deltaup now | best peer | best peer's bytes | now / best | now / issue | apply s deltaup / hpatchz | diff s deltaup / hdiffz | diff peak MiB deltaup / bsdiff | apply peak MiB (old + 64 MiB) |")
	fmt.Fprintln(&b, "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	var logSum float64
	var nRatio int
	for _, pr := range res {
		var du *peerResult
		var best *peerResult
		var hp, bs *peerResult
		for i := range pr.Results {
			r := &pr.Results[i]
			if !r.OK {
				continue
			}
			switch {
			case r.Tool == "deltaup":
				du = r
			default:
				if best == nil || r.Bytes < best.Bytes {
					best = r
				}
				if r.Tool == "hdiffz lzma2" {
					hp = r
				}
				if r.Tool == "bsdiff" {
					bs = r
				}
			}
		}
		cell := func(r *peerResult, f func(*peerResult) string) string {
			if r == nil {
				return "—"
			}
			return f(r)
		}
		bytesOf := func(r *peerResult) string { return fmt.Sprintf("%d", r.Bytes) }
		ratio, vsIssue := "—", "—"
		if du != nil && best != nil {
			q := float64(du.Bytes) / float64(best.Bytes)
			ratio = fmt.Sprintf("%.2f", q)
			logSum += math.Log(q)
			nRatio++
		}
		if du != nil && pr.Pair.Today > 0 {
			vsIssue = fmt.Sprintf("%.3f", float64(du.Bytes)/float64(pr.Pair.Today))
		}
		pairOf := func(a, b *peerResult, f func(*peerResult) float64, format string) string {
			if a == nil || b == nil || f(b) <= 0 {
				return "—"
			}
			return fmt.Sprintf(format+" / "+format+" = %.2fx", f(a), f(b), f(a)/f(b))
		}
		applyS := pairOf(du, hp, func(r *peerResult) float64 { return r.ApplySec }, "%.3f")
		diffS := pairOf(du, hp, func(r *peerResult) float64 { return r.DiffSecs }, "%.2f")
		diffPeak := pairOf(du, bs, func(r *peerResult) float64 { return float64(r.DiffRSS) / (1 << 20) }, "%.0f")
		if du != nil && bs != nil && (du.DiffRSS <= 0 || bs.DiffRSS <= 0) {
			diffPeak = "—"
		}
		applyPeak := "—"
		if du != nil && du.ApplyRSS > 0 && pr.OldBytes > 0 {
			applyPeak = fmt.Sprintf("%.0f (%.0f)", float64(du.ApplyRSS)/(1<<20), float64(pr.OldBytes)/(1<<20)+64)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", pr.Pair.Label, pr.Pair.Today,
			cell(du, bytesOf), cell(best, func(r *peerResult) string { return r.Tool }), cell(best, bytesOf),
			ratio, vsIssue, applyS, diffS, diffPeak, applyPeak)
	}
	if nRatio > 0 {
		fmt.Fprintf(&b, "\nGeometric mean of deltaup / best peer: **%.3f** over %d pairs.\n", math.Exp(logSum/float64(nRatio)), nRatio)
	}
	fmt.Fprintln(&b, "\nEvery tool on every pair (bytes; diff s / apply s; peak MiB of diff / apply):")
	fmt.Fprintln(&b)
	for _, pr := range res {
		fmt.Fprintf(&b, "- %s:", pr.Pair.Label)
		for _, r := range pr.Results {
			if r.Err != "" {
				fmt.Fprintf(&b, " %s FAILED (%s);", r.Tool, r.Err)
				continue
			}
			fmt.Fprintf(&b, " %s %d (%.2f / %.3f s; %s / %s MiB);", r.Tool, r.Bytes, r.DiffSecs, r.ApplySec, mibOrDash(r.DiffRSS), mibOrDash(r.ApplyRSS))
		}
		fmt.Fprintln(&b)
		if pr.Methods != "" {
			fmt.Fprintf(&b, "  - deltaup's method: %s\n", strings.ReplaceAll(pr.Methods, "\n", "; "))
		}
	}
	fmt.Fprintln(&b, peersEnd)
	return b.String()
}

func mibOrDash(rss int64) string {
	if rss == unknownRSS || rss <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", float64(rss)/(1<<20))
}

// benchSetup finds the module root, makes a scratch directory (prefix) with
// an empty bin/ for built tools, and a context cancelled by SIGINT or
// SIGTERM; cleanup removes the directory and stops the signal handling.
func benchSetup(prefix string) (root, tmp, binDir string, ctx context.Context, cleanup func(), err error) {
	if root, err = moduleRoot(); err != nil {
		return
	}
	if tmp, err = os.MkdirTemp("", prefix); err != nil {
		return
	}
	binDir = filepath.Join(tmp, "bin")
	if err = os.Mkdir(binDir, 0o755); err != nil {
		os.RemoveAll(tmp)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cleanup = func() {
		stop()
		os.RemoveAll(tmp)
	}
	return root, tmp, binDir, ctx, cleanup, nil
}
