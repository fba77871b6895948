package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Tool is one delta tool under test. Diff and Apply return the argv (with
// argv[0] an absolute or PATH-resolved program) of the process to run.
type Tool struct {
	Name    string
	Diff    func(oldPath, newPath, patchPath string) []string
	Apply   func(oldPath, patchPath, outPath string) []string
	Version []string // optional argv printing the tool's version
}

// Skipped records a requested tool that cannot be run, and why.
type Skipped struct {
	Name, Reason string
}

// Tool names accepted by --tools, in report order.
const (
	toolDeltaup   = "deltaup"
	toolDeltaup40 = "deltaup-bsdiff40"
	toolBsdiff    = "bsdiff"
	toolXdelta3   = "xdelta3"
	toolZstd      = "zstd"
	toolGoBsdiff  = "go-bsdiff"
)

// allTools lists every known tool name in report order.
var allTools = []string{toolDeltaup, toolDeltaup40, toolBsdiff, toolXdelta3, toolZstd, toolGoBsdiff}

// isDeltaup reports whether the named tool is one of deltaup's own variants.
func isDeltaup(name string) bool {
	return name == toolDeltaup || name == toolDeltaup40
}

// parseTools validates a --tools list, drops duplicates and returns the
// names in report order. An empty list selects every tool.
func parseTools(list []string) ([]string, error) {
	if len(list) == 0 {
		return append([]string(nil), allTools...), nil
	}
	want := map[string]bool{}
	for _, n := range list {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		known := false
		for _, t := range allTools {
			known = known || t == n
		}
		if !known {
			return nil, fmt.Errorf("unknown tool %q (known: %s)", n, strings.Join(allTools, ", "))
		}
		want[n] = true
	}
	var out []string
	for _, t := range allTools {
		if want[t] {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--tools selects no tool")
	}
	return out, nil
}

// toolSetup resolves tools: it looks up external programs on PATH and
// builds the Go programs (deltaup's CLIs and the go-bsdiff wrapper) once.
type toolSetup struct {
	ctx    context.Context
	root   string // module root (directory containing go.mod)
	binDir string // where built binaries go
	tags   string // go build -tags (tests: "nocloud", a quicker link)

	built map[string]buildResult // by package path, e.g. "./cmd/mkdelta"
}

// buildResult is the outcome of building one Go main package.
type buildResult struct {
	path string
	err  error
}

// exe appends the platform's executable suffix to name.
func exe(name string) string {
	if runtime.GOOS == "windows" {
		return name + ".exe"
	}
	return name
}

// build compiles the main package pkg (relative to the module root) into
// binDir, caching the result so that each package is built at most once.
func (s *toolSetup) build(pkg string) (string, error) {
	if r, ok := s.built[pkg]; ok {
		return r.path, r.err
	}
	out := filepath.Join(s.binDir, exe(filepath.Base(pkg)))
	args := []string{"build", "-o", out}
	if s.tags != "" {
		args = append(args, "-tags", s.tags)
	}
	cmd := exec.CommandContext(s.ctx, "go", append(args, pkg)...)
	cmd.Dir = s.root
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		msg := firstLine(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		err = fmt.Errorf("go build %s failed: %s", pkg, msg)
	}
	s.built[pkg] = buildResult{out, err}
	return out, err
}

// lookPath resolves every program in names on PATH.
func lookPath(names ...string) ([]string, error) {
	paths := make([]string, len(names))
	for i, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			return nil, fmt.Errorf("%s not installed (not found in PATH)", n)
		}
		paths[i] = p
	}
	return paths, nil
}

// resolve returns the runnable Tool for name, or an error explaining why the
// tool is unavailable.
func (s *toolSetup) resolve(name string) (Tool, error) {
	t := Tool{Name: name}
	switch name {
	case toolDeltaup, toolDeltaup40:
		mk, err := s.build("./cmd/mkdelta")
		if err != nil {
			return t, err
		}
		du, err := s.build("./cmd/deltaup")
		if err != nil {
			return t, err
		}
		var extra []string
		if name == toolDeltaup40 {
			extra = []string{"--format", "bsdiff40"}
		}
		t.Diff = func(o, n, p string) []string {
			return append([]string{mk, o, n, "-o", p}, extra...)
		}
		t.Apply = func(o, p, out string) []string {
			return []string{du, "patch", o, p, "-o", out}
		}
	case toolBsdiff:
		bins, err := lookPath("bsdiff", "bspatch")
		if err != nil {
			return t, err
		}
		t.Diff = func(o, n, p string) []string { return []string{bins[0], o, n, p} }
		t.Apply = func(o, p, out string) []string { return []string{bins[1], o, out, p} }
	case toolXdelta3:
		bins, err := lookPath("xdelta3")
		if err != nil {
			return t, err
		}
		t.Diff = func(o, n, p string) []string {
			return []string{bins[0], "-9", "-e", "-f", "-s", o, n, p}
		}
		t.Apply = func(o, p, out string) []string {
			return []string{bins[0], "-d", "-f", "-s", o, p, out}
		}
	case toolZstd:
		bins, err := lookPath("zstd")
		if err != nil {
			return t, err
		}
		t.Diff = func(o, n, p string) []string {
			return []string{bins[0], "--patch-from=" + o, "-19", "--long=27", "-f", "-q", n, "-o", p}
		}
		t.Apply = func(o, p, out string) []string {
			return []string{bins[0], "-d", "--patch-from=" + o, "--long=27", "-f", "-q", p, "-o", out}
		}
	case toolGoBsdiff:
		gb, err := s.build("./bench/gobsdiff")
		if err != nil {
			return t, err
		}
		t.Diff = func(o, n, p string) []string { return []string{gb, "diff", o, n, p} }
		t.Apply = func(o, p, out string) []string { return []string{gb, "patch", o, out, p} }
		t.Version = []string{gb, "version"}
	default:
		return t, fmt.Errorf("unknown tool %q", name)
	}
	return t, nil
}

// setupTools resolves each named tool, returning the runnable ones and the
// skipped ones with reasons, both in the order of names.
func setupTools(ctx context.Context, root, binDir string, names []string) ([]Tool, []Skipped) {
	s := &toolSetup{ctx: ctx, root: root, binDir: binDir, built: map[string]buildResult{}}
	var tools []Tool
	var skipped []Skipped
	for _, n := range names {
		t, err := s.resolve(n)
		if err != nil {
			skipped = append(skipped, Skipped{n, err.Error()})
			continue
		}
		tools = append(tools, t)
	}
	return tools, skipped
}

// firstLine returns the first meaningful line of a tool's error output,
// skipping blank lines and the "# package" headers printed by go build.
func firstLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "# ") {
			continue
		}
		return line
	}
	return ""
}

// moduleRoot returns the directory of the enclosing module's go.mod, walking
// up from the working directory and falling back to "go env GOMOD".
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if st, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && st.Mode().IsRegular() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module (run from the deltaup module)")
	}
	return filepath.Dir(gomod), nil
}
