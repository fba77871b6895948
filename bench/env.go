package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Environment describes where and how the benchmark ran.
type Environment struct {
	Date         time.Time
	CPU          string // model name
	NumCPU       int
	MemTotal     int64 // bytes, 0 if unknown
	Kernel       string
	LoadAvg      string // 1, 5 and 15 minute load averages at start, if known
	GoVersion    string
	ToolVersions []string // e.g. "zstd 1.5.4"
	Command      string
}

// cmdOutput runs a short informational command and returns its trimmed
// stdout, or "" on any failure.
func cmdOutput(ctx context.Context, dir, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// procField returns the value of the first "key: value" (or "key\t: value")
// line of a /proc-style file whose key is key, or "".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// parseMemTotal converts a /proc/meminfo MemTotal value such as
// "24684096 kB" to bytes, returning 0 if it cannot be parsed.
func parseMemTotal(v string) int64 {
	num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0
	}
	if strings.EqualFold(strings.TrimSpace(unit), "kB") {
		n *= 1024
	}
	return n
}

// collectEnvironment gathers the report header facts. Everything is
// best-effort: unknown values are left empty.
func collectEnvironment(ctx context.Context, root string, tools []Tool, command string) Environment {
	env := Environment{
		Date:     time.Now().UTC(),
		CPU:      procField("/proc/cpuinfo", "model name"),
		NumCPU:   runtime.NumCPU(),
		MemTotal: parseMemTotal(procField("/proc/meminfo", "MemTotal")),
		Kernel:   cmdOutput(ctx, root, "uname", "-sr"),
		LoadAvg:  loadAverage(),
		Command:  command,
	}
	if env.Kernel == "" {
		env.Kernel = runtime.GOOS
	}
	env.GoVersion = strings.TrimPrefix(cmdOutput(ctx, root, "go", "version"), "go version ")
	if env.GoVersion == "" {
		env.GoVersion = runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	}

	have := map[string]Tool{}
	for _, t := range tools {
		have[t.Name] = t
	}
	var debs []string
	for _, n := range []string{toolBsdiff, toolXdelta3, toolZstd} {
		if _, ok := have[n]; ok {
			debs = append(debs, n)
		}
	}
	if len(debs) > 0 {
		args := append([]string{"-W", "-f", "${Package} ${Version}\n"}, debs...)
		if out := cmdOutput(ctx, root, "dpkg-query", args...); out != "" {
			env.ToolVersions = append(env.ToolVersions, strings.Split(out, "\n")...)
		} else {
			env.ToolVersions = append(env.ToolVersions, strings.Join(debs, ", ")+" (version unknown: no dpkg-query)")
		}
	}
	for _, t := range tools {
		if len(t.Version) > 0 {
			if v := cmdOutput(ctx, root, t.Version[0], t.Version[1:]...); v != "" {
				env.ToolVersions = append(env.ToolVersions, v)
			}
		}
	}
	_, du := have[toolDeltaup]
	_, du40 := have[toolDeltaup40]
	if du || du40 {
		env.ToolVersions = append(env.ToolVersions, "deltaup "+deltaupRevision(ctx, root))
	}
	return env
}

// loadAverage returns the 1, 5 and 15 minute load averages from
// /proc/loadavg, or "" where that file does not exist.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// deltaupRevision describes the working tree the deltaup CLIs were built
// from: the short commit hash, with "+dirty" for uncommitted changes.
func deltaupRevision(ctx context.Context, root string) string {
	rev := cmdOutput(ctx, root, "git", "rev-parse", "--short", "HEAD")
	if rev == "" {
		return "(working tree, no git commit)"
	}
	if cmdOutput(ctx, root, "git", "status", "--porcelain") != "" {
		rev += "+dirty"
	}
	return rev
}

// formatHeader renders the top of the report.
func formatHeader(env Environment, corpus, pairSet string, nPairs, runs int, skipped []Skipped) string {
	var b strings.Builder
	b.WriteString("# deltaup benchmark results\n\n")
	fmt.Fprintf(&b, "- Date (UTC): %s\n", env.Date.Format("2006-01-02 15:04:05"))
	machine := []string{orUnknown(env.CPU), fmt.Sprintf("%d CPUs", env.NumCPU)}
	if env.MemTotal > 0 {
		machine = append(machine, fmt.Sprintf("%.1f GiB RAM", float64(env.MemTotal)/(1<<30)))
	}
	machine = append(machine, orUnknown(env.Kernel))
	fmt.Fprintf(&b, "- Machine: %s\n", strings.Join(machine, ", "))
	if env.LoadAvg != "" {
		fmt.Fprintf(&b, "- Load average at start: %s\n", env.LoadAvg)
	}
	fmt.Fprintf(&b, "- Go: %s\n", env.GoVersion)
	if len(env.ToolVersions) > 0 {
		fmt.Fprintf(&b, "- Tool versions: %s\n", strings.Join(env.ToolVersions, "; "))
	}
	fmt.Fprintf(&b, "- Command: `%s`\n", env.Command)
	fmt.Fprintf(&b, "- Corpus: %s (esbuild binaries), pair set %q (%d pairs)\n", corpus, pairSet, nPairs)
	fmt.Fprintf(&b, "- Runs: %d per tool per pair (median wall time, max peak RSS); "+
		"every diff and apply is its own process, timed end to end\n", runs)
	for _, s := range skipped {
		fmt.Fprintf(&b, "- Skipped %s: %s\n", s.Name, s.Reason)
	}
	return b.String()
}

// orUnknown returns s, or "unknown" when s is empty.
func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// shellQuote quotes an argument for display in a POSIX shell command line.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("-_./=,:+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine reconstructs how the harness was invoked. Under "go run" the
// binary lives in a go-build temporary directory, so it is shown as
// "go run ./bench".
func commandLine(argv []string) string {
	prog := "go run ./bench"
	if len(argv) > 0 && !strings.Contains(argv[0], "go-build") {
		prog = shellQuote(argv[0])
	}
	parts := []string{prog}
	for _, a := range argv[min(1, len(argv)):] {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}
