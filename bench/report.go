package main

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// mib is one mebibyte.
const mib = 1 << 20

// Targets deltaup must meet relative to C bsdiff/bspatch.
const (
	targetSizeRatio      = 0.95 // patch size ≤ 0.95× bsdiff's
	targetDiffTimeRatio  = 0.33 // diff wall time ≤ 0.33× bsdiff's
	targetDiffMemRatio   = 0.75 // diff peak RSS ≤ 0.75× bsdiff's
	targetApplyTimeRatio = 1.00 // apply wall time ≤ bspatch's
	targetApplySlack     = 32 * mib
)

// Status is the outcome of one target check.
type Status int

// Target check outcomes.
const (
	StatusNA   Status = iota // not measurable (no baseline or no memory data)
	StatusPass               // target met
	StatusFail               // target missed
)

// String renders the status as PASS, FAIL or n/a.
func (s Status) String() string {
	switch s {
	case StatusPass:
		return "PASS"
	case StatusFail:
		return "FAIL"
	default:
		return "n/a"
	}
}

// passIf returns StatusPass when ok, else StatusFail.
func passIf(ok bool) Status {
	if ok {
		return StatusPass
	}
	return StatusFail
}

// TargetCheck is one checked target with a human-readable measurement.
type TargetCheck struct {
	Name   string
	Status Status
	Detail string
}

// targetNames lists the checks made by checkTargets, in order.
var targetNames = []string{
	"round trip",
	"patch ≤ 0.95x bsdiff",
	"diff time ≤ 0.33x bsdiff",
	"diff peak ≤ 0.75x bsdiff",
	"apply time ≤ bspatch",
	"apply peak ≤ old+new+32 MiB",
}

// ratio returns a/b, or false when b is not positive or either operand is
// an unknown memory figure.
func ratio(a, b float64) (float64, bool) {
	if b <= 0 || a < 0 {
		return 0, false
	}
	return a / b, true
}

// ratioCheck builds a TargetCheck for "value/base ≤ limit".
func ratioCheck(name string, value, base, limit float64, haveBase bool) TargetCheck {
	if !haveBase {
		return TargetCheck{name, StatusNA, "no C bsdiff baseline"}
	}
	q, ok := ratio(value, base)
	if !ok {
		return TargetCheck{name, StatusNA, "not measured"}
	}
	return TargetCheck{name, passIf(q <= limit), fmtRatio(q, true)}
}

// checkTargets evaluates r against the deltaup targets. base is C bsdiff's
// result on the same pair (haveBase false when bsdiff did not run); the
// apply-memory target is absolute and needs no baseline.
func checkTargets(r, base Result, haveBase bool, oldBytes, newBytes int64) []TargetCheck {
	checks := []TargetCheck{{targetNames[0], passIf(r.RoundTripOK), yesNo(r.RoundTripOK)}}
	checks = append(checks,
		ratioCheck(targetNames[1], float64(r.PatchBytes), float64(base.PatchBytes), targetSizeRatio, haveBase),
		ratioCheck(targetNames[2], r.DiffSecs, base.DiffSecs, targetDiffTimeRatio, haveBase),
		ratioCheck(targetNames[3], float64(r.DiffRSS), float64(base.DiffRSS), targetDiffMemRatio, haveBase),
		ratioCheck(targetNames[4], r.ApplySecs, base.ApplySecs, targetApplyTimeRatio, haveBase),
	)
	limit := oldBytes + newBytes + targetApplySlack
	apply := TargetCheck{Name: targetNames[5], Status: StatusNA, Detail: "not measured"}
	if r.ApplyRSS != unknownRSS {
		apply.Status = passIf(r.ApplyRSS <= limit)
		apply.Detail = fmt.Sprintf("%s of %s MiB", fmtMiB(r.ApplyRSS), fmtMiB(limit))
	}
	return append(checks, apply)
}

// formatTargets renders checks as one line: "name: PASS (detail); ...".
func formatTargets(checks []TargetCheck) string {
	parts := make([]string, len(checks))
	for i, c := range checks {
		parts[i] = fmt.Sprintf("%s: **%s** (%s)", c.Name, c.Status, c.Detail)
	}
	return strings.Join(parts, "; ")
}

// fmtMiB formats a byte count in MiB with one decimal, or "n/a".
func fmtMiB(b int64) string {
	if b == unknownRSS {
		return "n/a"
	}
	return strconv.FormatFloat(float64(b)/mib, 'f', 1, 64)
}

// fmtSecs formats seconds with millisecond precision.
func fmtSecs(s float64) string { return strconv.FormatFloat(s, 'f', 3, 64) }

// fmtPercent formats part/whole as a percentage with two decimals.
func fmtPercent(part, whole int64) string {
	if whole <= 0 {
		return "n/a"
	}
	return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 2, 64) + "%"
}

// fmtRatio formats a ratio as "0.91x" (or "n/a" when !ok).
func fmtRatio(q float64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return strconv.FormatFloat(q, 'f', 2, 64) + "x"
}

// Align is a markdown column alignment.
type Align int

// Column alignments.
const (
	AlignLeft Align = iota
	AlignRight
)

// markdownTable renders a GitHub-flavoured markdown table, padding cells so
// that the raw text lines up. Rows shorter than the header are padded with
// empty cells; aligns may be shorter than header (missing = AlignLeft).
func markdownTable(header []string, aligns []Align, rows [][]string) string {
	n := len(header)
	width := make([]int, n)
	cell := func(row []string, i int) string {
		if i < len(row) {
			return strings.ReplaceAll(row[i], "|", `\|`)
		}
		return ""
	}
	align := func(i int) Align {
		if i < len(aligns) {
			return aligns[i]
		}
		return AlignLeft
	}
	for i := range n {
		width[i] = max(3, utf8.RuneCountInString(cell(header, i)))
		for _, r := range rows {
			width[i] = max(width[i], utf8.RuneCountInString(cell(r, i)))
		}
	}
	var b strings.Builder
	line := func(row []string) {
		b.WriteString("|")
		for i := range n {
			c := cell(row, i)
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if align(i) == AlignRight {
				b.WriteString(" " + pad + c + " |")
			} else {
				b.WriteString(" " + c + pad + " |")
			}
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString("|")
	for i := range n {
		if align(i) == AlignRight {
			b.WriteString(" " + strings.Repeat("-", width[i]-1) + ": |")
		} else {
			b.WriteString(" " + strings.Repeat("-", width[i]) + " |")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

// rightAligned returns aligns for n columns: the first left, the rest right.
func rightAligned(n int) []Align {
	a := make([]Align, n)
	for i := 1; i < n; i++ {
		a[i] = AlignRight
	}
	return a
}

// pairHeader is the column header of the per-pair table without ratios.
var pairHeader = []string{
	"tool", "patch bytes", "% of new", "diff s", "diff peak MiB",
	"apply s", "apply peak MiB", "round trip ok",
}

// ratioHeader is appended to pairHeader when C bsdiff ran.
var ratioHeader = []string{
	"size vs bsdiff", "diff s vs bsdiff", "diff MiB vs bsdiff", "apply s vs bspatch",
}

// pairRows returns the table rows for one pair; ratio columns are added
// when withRatios is set (base is then C bsdiff's result).
func pairRows(results []Result, newBytes int64, base Result, withRatios bool) [][]string {
	var rows [][]string
	for _, r := range results {
		if !r.OK() {
			row := []string{r.Tool, "error", "—", "—", "—", "—", "—", "no"}
			if withRatios {
				row = append(row, "—", "—", "—", "—")
			}
			rows = append(rows, row)
			continue
		}
		row := []string{
			r.Tool,
			strconv.FormatInt(r.PatchBytes, 10),
			fmtPercent(r.PatchBytes, newBytes),
			fmtSecs(r.DiffSecs),
			fmtMiB(r.DiffRSS),
			fmtSecs(r.ApplySecs),
			fmtMiB(r.ApplyRSS),
			yesNo(r.RoundTripOK),
		}
		if withRatios {
			row = append(row,
				fmtRatio(ratio(float64(r.PatchBytes), float64(base.PatchBytes))),
				fmtRatio(ratio(r.DiffSecs, base.DiffSecs)),
				fmtRatio(ratio(float64(r.DiffRSS), float64(base.DiffRSS))),
				fmtRatio(ratio(r.ApplySecs, base.ApplySecs)),
			)
		}
		rows = append(rows, row)
	}
	return rows
}

// formatPair renders the section of the report for one pair.
func formatPair(pr PairResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## esbuild %s\n\n", pr.Pair)
	fmt.Fprintf(&b, "old %d bytes (%s MiB), new %d bytes (%s MiB)\n\n",
		pr.OldBytes, fmtMiB(pr.OldBytes), pr.NewBytes, fmtMiB(pr.NewBytes))
	base, haveBase := pr.baseline()
	header := pairHeader
	if haveBase {
		header = append(append([]string(nil), pairHeader...), ratioHeader...)
	}
	b.WriteString(markdownTable(header, rightAligned(len(header)),
		pairRows(pr.Results, pr.NewBytes, base, haveBase)))
	for _, r := range pr.Results {
		if !r.OK() {
			fmt.Fprintf(&b, "\n- %s failed: `%s`\n", r.Tool, r.Err)
		}
	}
	for _, r := range pr.Results {
		if !isDeltaup(r.Tool) || !r.OK() {
			continue
		}
		fmt.Fprintf(&b, "\nTargets for %s: %s\n", r.Tool,
			formatTargets(checkTargets(r, base, haveBase, pr.OldBytes, pr.NewBytes)))
	}
	return b.String()
}

// toolSummary aggregates one tool's results across pairs.
type toolSummary struct {
	tool                string
	ok, total           int
	patch, newBytes     int64
	diffSecs, applySecs float64
	diffRSS, applyRSS   int64
	roundTrip           bool
	basePairs           int // pairs where both this tool and bsdiff succeeded
	bPatch, tPatch      int64
	bDiff, tDiff        float64
	bApply, tApply      float64
	worstMem            float64
	haveMem             bool
	checks              [][]TargetCheck // per pair, deltaup variants only
}

// summarize aggregates results per tool (in the order tools first appear).
func summarize(pairs []PairResult) []*toolSummary {
	var order []*toolSummary
	byTool := map[string]*toolSummary{}
	for _, pr := range pairs {
		base, haveBase := pr.baseline()
		for _, r := range pr.Results {
			s := byTool[r.Tool]
			if s == nil {
				s = &toolSummary{tool: r.Tool, roundTrip: true, diffRSS: unknownRSS, applyRSS: unknownRSS}
				byTool[r.Tool] = s
				order = append(order, s)
			}
			s.total++
			if !r.OK() {
				s.roundTrip = false
				continue
			}
			s.ok++
			s.patch += r.PatchBytes
			s.newBytes += pr.NewBytes
			s.diffSecs += r.DiffSecs
			s.applySecs += r.ApplySecs
			s.diffRSS = maxRSS([]int64{s.diffRSS, r.DiffRSS})
			s.applyRSS = maxRSS([]int64{s.applyRSS, r.ApplyRSS})
			s.roundTrip = s.roundTrip && r.RoundTripOK
			if haveBase {
				s.basePairs++
				s.bPatch += base.PatchBytes
				s.tPatch += r.PatchBytes
				s.bDiff += base.DiffSecs
				s.tDiff += r.DiffSecs
				s.bApply += base.ApplySecs
				s.tApply += r.ApplySecs
				if q, ok := ratio(float64(r.DiffRSS), float64(base.DiffRSS)); ok && r.DiffRSS != unknownRSS {
					s.worstMem = max(s.worstMem, q)
					s.haveMem = true
				}
			}
			if isDeltaup(r.Tool) {
				s.checks = append(s.checks, checkTargets(r, base, haveBase, pr.OldBytes, pr.NewBytes))
			}
		}
	}
	return order
}

// tally summarises the i-th target over several pairs' checks as e.g.
// "4/4 PASS", "3/4 FAIL" or "n/a" (when no pair could be evaluated).
func tally(checks [][]TargetCheck, i int) string {
	pass, evaluated := 0, 0
	for _, cs := range checks {
		switch cs[i].Status {
		case StatusPass:
			pass++
			evaluated++
		case StatusFail:
			evaluated++
		}
	}
	if evaluated == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d/%d %s", pass, evaluated, passIf(pass == evaluated))
}

// formatSummary renders the cross-pair summary tables.
func formatSummary(pairs []PairResult) string {
	sums := summarize(pairs)
	var b strings.Builder
	b.WriteString("## Summary across pairs\n\n")
	b.WriteString("Totals are over the pairs where the tool succeeded; ratios vs C bsdiff are ratios of totals " +
		"over the pairs where both succeeded, except memory, which is the worst per-pair ratio.\n\n")
	header := []string{
		"tool", "pairs ok", "total patch bytes", "% of total new", "total diff s", "max diff peak MiB",
		"total apply s", "max apply peak MiB", "round trip ok",
		"size vs bsdiff", "diff s vs bsdiff", "worst diff MiB vs bsdiff", "apply s vs bspatch",
	}
	var rows [][]string
	for _, s := range sums {
		row := []string{s.tool, fmt.Sprintf("%d/%d", s.ok, s.total)}
		if s.ok == 0 {
			row = append(row, "—", "—", "—", "—", "—", "—", "no", "—", "—", "—", "—")
			rows = append(rows, row)
			continue
		}
		row = append(row,
			strconv.FormatInt(s.patch, 10),
			fmtPercent(s.patch, s.newBytes),
			fmtSecs(s.diffSecs),
			fmtMiB(s.diffRSS),
			fmtSecs(s.applySecs),
			fmtMiB(s.applyRSS),
			yesNo(s.roundTrip),
		)
		if s.basePairs == 0 {
			row = append(row, "n/a", "n/a", "n/a", "n/a")
		} else {
			row = append(row,
				fmtRatio(ratio(float64(s.tPatch), float64(s.bPatch))),
				fmtRatio(ratio(s.tDiff, s.bDiff)),
				fmtRatio(s.worstMem, s.haveMem),
				fmtRatio(ratio(s.tApply, s.bApply)),
			)
		}
		rows = append(rows, row)
	}
	b.WriteString(markdownTable(header, rightAligned(len(header)), rows))

	var trows [][]string
	for _, s := range sums {
		if !isDeltaup(s.tool) || len(s.checks) == 0 {
			continue
		}
		row := []string{s.tool}
		for i := range targetNames {
			row = append(row, tally(s.checks, i))
		}
		trows = append(trows, row)
	}
	if len(trows) > 0 {
		b.WriteString("\nTargets (pairs passing / pairs evaluated):\n\n")
		b.WriteString(markdownTable(append([]string{"tool"}, targetNames...), rightAligned(len(targetNames)+1), trows))
	}
	return b.String()
}
