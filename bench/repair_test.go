package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRepairSection: --repair --write replaces its own section of
// RESULTS.md (or appends it), and the single-file --write keeps it.
func TestRepairSection(t *testing.T) {
	sec := func(body string) string { return repairBegin + "\n" + body + "\n" + repairEnd + "\n" }
	for _, c := range []struct{ name, old, want string }{
		{"empty file", "", sec("new")},
		{"no section yet", "# results\n", "# results\n\n" + sec("new")},
		{"no section, no newline", "# results", "# results\n\n" + sec("new")},
		{"section replaced", "# results\n\n" + sec("old") + "tail\n", "# results\n\n" + sec("new") + "tail\n"},
		{"end before begin: appended", "# r\n" + repairEnd + "\n", "# r\n" + repairEnd + "\n\n" + sec("new")},
	} {
		if got := replaceRepairSection(c.old, sec("new")); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	if got := keepRepairSection(path, "# single-file\n"); got != "# single-file\n" {
		t.Errorf("no file: %q", got)
	}
	os.WriteFile(path, []byte("# old single-file\n\n"+sec("figures")), 0o644)
	if got := keepRepairSection(path, "# new single-file\n"); got != "# new single-file\n\n"+sec("figures") {
		t.Errorf("kept: %q", got)
	}
}

// TestFormatRepairReport: targets are judged against the patch route's
// bytes: a large file at 1.1 times its compressed size, a small one at
// 64 KiB; an error shows as such.
func TestFormatRepairReport(t *testing.T) {
	st := repairTreeStats{Files: 140, TarZst: 1000, Framed: 1200, Separate: true, Frames: 9, BigCompressed: 1000}
	rs := []repairResult{
		{Scenario: repairScenarios[0], Route: "patches", Patch: 300, Exact: true},
		{Scenario: repairScenarios[1], Route: "repair", Index: 50, Frames: 1050, Patch: 300, Exact: true},
		{Scenario: repairScenarios[2], Route: "repair", Index: 50, Frames: 70000, Patch: 300, Exact: true},
		{Scenario: repairScenarios[3], Err: "boom"},
	}
	out := formatRepairReport(Environment{Date: time.Unix(0, 0)}, st, rs)
	for _, want := range []string{
		"| bin/esbuild modified | repair | 50 | 1050 | 300 | 0 | 1400 | 1100 | ≤ 1100 (1.1x): **PASS** |",
		"| one small file modified | repair | 50 | 70000 | 300 | 0 | 70350 | 70050 | ≤ 65536 (64 KiB): **FAIL** |",
		"| one small file missing | error: boom |",
		"framed: 1200 bytes in 9 frames (+20.0%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(out, repairBegin) || !strings.HasSuffix(out, repairEnd+"\n") {
		t.Errorf("not a section:\n%s", out)
	}
}
