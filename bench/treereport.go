package main

import (
	"fmt"
	"strconv"
	"strings"
)

// treeReport is everything the --trees report shows.
type treeReport struct {
	Env       Environment
	Corpus    string
	Runs      int
	LoadEnd   string   // load averages when the measurements ended
	Tools     []string // per-file tools that ran
	Skipped   []Skipped
	Notes     []string
	Pairs     []treePairResult
	Publishes []publishResult
}

// formatTreeReport assembles the full markdown report of --trees.
func formatTreeReport(r treeReport) string {
	sections := []string{
		formatTreeHeader(r),
		formatBundles(r.Pairs),
		formatBundleComparison(r.Pairs),
		formatPerFile(r.Pairs, r.Tools),
		formatTreeTargets(r.Pairs),
		formatPublishes(r.Publishes),
	}
	return strings.Join(sections, "\n")
}

// formatTreeHeader renders the top of the report: the same facts as the
// single-file report's header, plus the load average at the end.
func formatTreeHeader(r treeReport) string {
	env := r.Env
	var b strings.Builder
	b.WriteString("# deltaup tree benchmark results\n\n")
	fmt.Fprintf(&b, "- Date (UTC): %s\n", env.Date.Format("2006-01-02 15:04:05"))
	machine := []string{orUnknown(env.CPU), fmt.Sprintf("%d CPUs", env.NumCPU)}
	if env.MemTotal > 0 {
		machine = append(machine, fmt.Sprintf("%.1f GiB RAM", float64(env.MemTotal)/(1<<30)))
	}
	machine = append(machine, orUnknown(env.Kernel))
	fmt.Fprintf(&b, "- Machine: %s\n", strings.Join(machine, ", "))
	if env.LoadAvg != "" || r.LoadEnd != "" {
		fmt.Fprintf(&b, "- Load average (1, 5, 15 min) at start: %s; at end: %s "+
			"(other work on the machine inflates times, not sizes)\n", orUnknown(env.LoadAvg), orUnknown(r.LoadEnd))
	}
	fmt.Fprintf(&b, "- Go: %s\n", env.GoVersion)
	if len(env.ToolVersions) > 0 {
		fmt.Fprintf(&b, "- Tool versions: %s\n", strings.Join(env.ToolVersions, "; "))
	}
	fmt.Fprintf(&b, "- Command: `%s`\n", env.Command)
	fmt.Fprintf(&b, "- Corpus: %s (prettier and esbuild package trees), %d tree pairs, %d publish scenarios\n",
		r.Corpus, len(r.Pairs), len(r.Publishes))
	fmt.Fprintf(&b, "- Runs: %d per bundle diff+apply, publish and verify (median wall time, max peak RSS); "+
		"every step is its own process, timed end to end. Per-file deltas and archives are made once (only their sizes are reported)\n", r.Runs)
	labels := make([]string, len(r.Tools))
	for i, t := range r.Tools {
		labels[i] = perFileLabel(t)
	}
	fmt.Fprintf(&b, "- Per-file tools: %s\n", orUnknown(strings.Join(labels, ", ")))
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "- Skipped %s: %s\n", s.Name, s.Reason)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- Note: %s\n", n)
	}
	return b.String()
}

// fmtBytes formats a byte count, or "n/a" when negative (unknown).
func fmtBytes(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return strconv.FormatInt(n, 10)
}

// fmtBytesRatio formats a/b as a ratio, "n/a" when either is unknown.
func fmtBytesRatio(a, b int64) string {
	if a < 0 || b <= 0 {
		return "n/a"
	}
	return fmtRatio(float64(a)/float64(b), true)
}

// bundleBytes returns the bundle size, or -1 when no bundle was made.
func (pr treePairResult) bundleBytes() int64 {
	if !pr.Bundle.OK() {
		return -1
	}
	return pr.Bundle.PatchBytes
}

// formatBundles renders the bundle table.
func formatBundles(pairs []treePairResult) string {
	var b strings.Builder
	b.WriteString("## Bundles\n\n")
	b.WriteString("`mkdelta OLD_DIR NEW_DIR -o BUNDLE`, then `deltaup patch OLD_DIR BUNDLE -o OUT`; round trip ok means OUT " +
		"has exactly the new tree's paths, file bytes, file and directory permissions and symlinks. " +
		"Tree bytes are the sum of regular file sizes.\n\n")
	header := []string{"tree pair", "files old → new", "unchanged / changed / added / removed", "new tree bytes",
		"bundle bytes", "% of new", "diff s", "diff peak MiB", "apply s", "apply peak MiB", "round trip ok"}
	var rows [][]string
	var notes []string
	for _, pr := range pairs {
		d := pr.Diff
		row := []string{
			pr.Pair.String(),
			fmt.Sprintf("%d → %d", pr.OldFiles, pr.NewFiles),
			fmt.Sprintf("%d / %d / %d / %d", len(d.Unchanged), len(d.Changed), len(d.Added), len(d.Removed)),
			strconv.FormatInt(pr.NewBytes, 10),
		}
		r := pr.Bundle
		if !r.OK() {
			row = append(row, "error", "—", "—", "—", "—", "—", "no")
			notes = append(notes, fmt.Sprintf("- %s failed: `%s`", pr.Pair, r.Err))
		} else {
			row = append(row,
				strconv.FormatInt(r.PatchBytes, 10),
				fmtPercent(r.PatchBytes, pr.NewBytes),
				fmtSecs(r.DiffSecs), fmtMiB(r.DiffRSS),
				fmtSecs(r.ApplySecs), fmtMiB(r.ApplyRSS),
				yesNo(r.RoundTripOK),
			)
		}
		if pr.RoundTripIssue != "" {
			notes = append(notes, fmt.Sprintf("- %s round trip differences: %s", pr.Pair, pr.RoundTripIssue))
		}
		rows = append(rows, row)
	}
	b.WriteString(markdownTable(header, rightAligned(len(header)), rows))
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

// formatBundleComparison renders the bundle against full archives and
// per-file delta sums.
func formatBundleComparison(pairs []treePairResult) string {
	var b strings.Builder
	b.WriteString("## Bundle vs full archive and per-file deltas\n\n")
	b.WriteString("- tar.zst: `tar -C NEW --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - . | zstd -19 --long=27`; " +
		"publish tar.zst / tar.gz: the full archives `mkdelta publish` writes for NEW.\n")
	b.WriteString("- Σ native: for every changed file (same path, other bytes) mkdelta's single-file native patch " +
		"(`mkdelta OLD/f NEW/f -o p`), plus `zstd -19` of every added file; unchanged and removed files cost 0, " +
		"and no paths or modes are counted. Target: bundle ≤ " + fmtRatio(targetBundleVsNative, true) + " Σ native.\n")
	b.WriteString("- Σ best: the same with, per changed file, the smallest patch of any per-file tool.\n\n")
	header := []string{"tree pair", "bundle bytes", "tar.zst", "publish tar.zst", "publish tar.gz", "bundle / tar.zst",
		"Σ native", "bundle / Σ native", "≤ " + fmtRatio(targetBundleVsNative, true), "Σ best", "bundle / Σ best"}
	var rows [][]string
	var notes []string
	for _, pr := range pairs {
		bundle := pr.bundleBytes()
		native, nativeOK := pr.Sums.total(toolDeltaup)
		best, bestOK := pr.Sums.bestTotal()
		if !nativeOK {
			native = -1
		}
		if !bestOK {
			best = -1
		}
		rows = append(rows, []string{
			pr.Pair.String(),
			fmtBytes(bundle),
			fmtBytes(pr.TarZst),
			fmtBytes(pr.PubZst),
			fmtBytes(pr.PubGz),
			fmtBytesRatio(bundle, pr.TarZst),
			fmtBytes(native),
			fmtBytesRatio(bundle, native),
			bundleTarget(bundle, native).String(),
			fmtBytes(best),
			fmtBytesRatio(bundle, best),
		})
		if pr.TarZstErr != "" {
			notes = append(notes, fmt.Sprintf("- %s tar | zstd failed: `%s`", pr.Pair, pr.TarZstErr))
		}
		if pr.PubErr != "" {
			notes = append(notes, fmt.Sprintf("- %s mkdelta publish (archives) failed: `%s`", pr.Pair, pr.PubErr))
		}
	}
	b.WriteString(markdownTable(header, rightAligned(len(header)), rows))
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

// bundleTarget checks bundle ≤ targetBundleVsNative × native; n/a when
// either is unknown.
func bundleTarget(bundle, native int64) Status {
	if bundle < 0 || native <= 0 {
		return StatusNA
	}
	return passIf(float64(bundle) <= targetBundleVsNative*float64(native))
}

// formatPerFile renders the per-tool sums and, folded, every file's costs.
func formatPerFile(pairs []treePairResult, tools []string) string {
	var b strings.Builder
	b.WriteString("## Per-file delta sums by tool\n\n")
	b.WriteString("Tool columns sum the single-file patches of the changed files only (added files are in their own column, " +
		"the same for every tool). \"smallest per file\" counts the changed files each tool won (ties go to the earlier column).\n\n")
	header := []string{"tree pair", "changed files", "added files", "added zstd -19 bytes"}
	for _, t := range tools {
		header = append(header, perFileLabel(t))
	}
	header = append(header, "best of all", "smallest per file")
	var rows [][]string
	for _, pr := range pairs {
		s := pr.Sums
		added := fmtBytes(s.AddedBytes)
		if s.AddedRaw > 0 {
			added += fmt.Sprintf(" (%d raw)", s.AddedRaw)
		}
		row := []string{pr.Pair.String(), strconv.Itoa(s.Changed), strconv.Itoa(s.Added), added}
		for _, t := range tools {
			row = append(row, sumCell(s.Tool[t], s.Missing[t]))
		}
		row = append(row, sumCell(s.Best, s.BestMissing), s.winsText(tools))
		rows = append(rows, row)
	}
	b.WriteString(markdownTable(header, rightAligned(len(header)), rows))

	for _, pr := range pairs {
		if len(pr.Costs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n<details><summary>%s: every changed and added file</summary>\n\n", pr.Pair)
		fh := []string{"file", "new bytes"}
		for _, t := range tools {
			fh = append(fh, perFileLabel(t))
		}
		fh = append(fh, "added: zstd -19")
		var frows [][]string
		for _, c := range pr.Costs {
			row := []string{c.Path, strconv.FormatInt(c.NewSize, 10)}
			for _, t := range tools {
				switch {
				case c.Added:
					row = append(row, "")
				case c.Errs[t] != "":
					row = append(row, "error")
				default:
					if n, ok := c.Patches[t]; ok {
						row = append(row, strconv.FormatInt(n, 10))
					} else {
						row = append(row, "—")
					}
				}
			}
			switch {
			case !c.Added:
				row = append(row, "")
			case c.Raw:
				row = append(row, strconv.FormatInt(c.Zstd, 10)+" (raw)")
			default:
				row = append(row, strconv.FormatInt(c.Zstd, 10))
			}
			frows = append(frows, row)
		}
		b.WriteString(markdownTable(fh, rightAligned(len(fh)), frows))
		for _, c := range pr.Costs {
			for _, t := range tools {
				if e := c.Errs[t]; e != "" {
					fmt.Fprintf(&b, "\n- %s on %s failed: `%s`\n", perFileLabel(t), c.Path, e)
				}
			}
		}
		b.WriteString("\n</details>\n")
	}
	return b.String()
}

// sumCell renders a per-tool sum, or n/a when some files have no patch.
func sumCell(sum int64, missing int) string {
	if missing > 0 {
		return fmt.Sprintf("n/a (%d missing)", missing)
	}
	return strconv.FormatInt(sum, 10)
}

// formatTreeTargets renders the pass/fail lines of the tree targets.
func formatTreeTargets(pairs []treePairResult) string {
	var b strings.Builder
	b.WriteString("## Targets\n\n")
	header := []string{"tree pair", "round trip", "bundle ≤ " + fmtRatio(targetBundleVsNative, true) + " Σ native"}
	var rows [][]string
	rt, size := [2]int{}, [2]int{} // pass, evaluated
	for _, pr := range pairs {
		rtStatus := passIf(pr.Bundle.OK() && pr.Bundle.RoundTripOK)
		native, ok := pr.Sums.total(toolDeltaup)
		if !ok {
			native = -1
		}
		bundle := pr.bundleBytes()
		st := bundleTarget(bundle, native)
		rt[1]++
		if rtStatus == StatusPass {
			rt[0]++
		}
		if st != StatusNA {
			size[1]++
			if st == StatusPass {
				size[0]++
			}
		}
		rows = append(rows, []string{
			pr.Pair.String(),
			"**" + rtStatus.String() + "**",
			fmt.Sprintf("**%s** (%s)", st, fmtBytesRatio(bundle, native)),
		})
	}
	tallyCell := func(t [2]int) string {
		if t[1] == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%d/%d %s", t[0], t[1], passIf(t[0] == t[1]))
	}
	rows = append(rows, []string{"all pairs", tallyCell(rt), tallyCell(size)})
	b.WriteString(markdownTable(header, []Align{AlignLeft, AlignRight, AlignRight}, rows))
	return b.String()
}

// formatPublishes renders the publish/verify timings and the repository
// artifacts.
func formatPublishes(pubs []publishResult) string {
	var b strings.Builder
	b.WriteString("## Publish and verify\n\n")
	b.WriteString("A temporary repository gets the setup versions (untimed, each with `--patches-from N`); then " +
		"`mkdelta publish` of the timed version (full tar.zst and tar.gz archives plus N bundles, each base rebuilt " +
		"from its archive) is timed in a fresh copy of that repository per run, and `mkdelta verify` (signature, " +
		"hashes, every archive and patch rebuilt) of the final repository.\n\n")
	header := []string{"app", "setup (untimed)", "timed publish", "patches made", "publish s", "publish peak MiB",
		"verify s", "verify peak MiB", "verify ok"}
	var rows [][]string
	var notes []string
	for _, p := range pubs {
		s := p.Scenario
		row := []string{
			s.App,
			strings.Join(s.Setup, ", ") + fmt.Sprintf(" (--patches-from %d)", s.PatchesFrom),
			s.Timed,
			strconv.Itoa(len(p.Artifacts.patchesTo(s.Timed))),
		}
		row = append(row, timingCells(p.Publish)...)
		row = append(row, timingCells(p.Verify)...)
		row = append(row, yesNo(p.Verify.Runs > 0 && p.VerifyErr == ""))
		rows = append(rows, row)
		if p.Err != "" {
			notes = append(notes, fmt.Sprintf("- %s: `%s`", s.App, p.Err))
		}
		if p.VerifyErr != "" {
			notes = append(notes, fmt.Sprintf("- %s verify failed: `%s`", s.App, p.VerifyErr))
		}
	}
	b.WriteString(markdownTable(header, rightAligned(len(header)), rows))
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}

	b.WriteString("\n### Repository artifacts\n\n")
	b.WriteString("Sizes in bytes of the final repositories' archives and of the bundles into each version (by base version).\n\n")
	ah := []string{"app", "version", "tar.zst", "tar.gz", "patches into this version"}
	var arows [][]string
	for _, p := range pubs {
		for _, v := range p.Artifacts.versions() {
			a := p.Artifacts.Archives[v]
			var ps []string
			for _, pt := range p.Artifacts.patchesTo(v) {
				ps = append(ps, fmt.Sprintf("from %s: %d", pt.From, pt.Bytes))
			}
			patches := strings.Join(ps, "; ")
			if patches == "" {
				patches = "—"
			}
			arows = append(arows, []string{p.Scenario.App, v, archiveCell(a, fmtTarZst), archiveCell(a, fmtTarGz), patches})
		}
	}
	if len(arows) == 0 {
		b.WriteString("(no repository was built)\n")
	} else {
		b.WriteString(markdownTable(ah, []Align{AlignLeft, AlignLeft, AlignRight, AlignRight, AlignLeft}, arows))
	}
	return b.String()
}

// timingCells renders a timing as its seconds and peak MiB cells.
func timingCells(t timing) []string {
	if t.Runs == 0 {
		return []string{"—", "—"}
	}
	return []string{fmtSecs(t.Secs), fmtMiB(t.RSS)}
}

// archiveCell renders the size of one archive format, or "—".
func archiveCell(a map[string]int64, format string) string {
	if n, ok := a[format]; ok {
		return strconv.FormatInt(n, 10)
	}
	return "—"
}
