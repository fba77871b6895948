package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/apply"
	"github.com/deltaup/deltaup/internal/tree"
)

// The tests in this file follow the README's "Client side" literally: its
// deltaup.json examples, its wrapper script and its command lines are read
// from README.md, so the text and the tests cannot drift apart. The only
// changes made to what the README says are the paths (/opt/ lies in a
// temporary directory), the server URL (a local httptest server) and, when
// publishing several releases, the version.

// readmeClientSection returns README.md from "## Client side" up to
// "### How the swap works", and the "## Release side" section before it.
func readmeClientSection(t *testing.T) (client, release string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	cut := func(from, to string) string {
		i := strings.Index(text, from)
		j := strings.Index(text, to)
		if i < 0 || j < i {
			t.Fatalf("README.md has no section %q followed by %q", from, to)
		}
		return text[i:j]
	}
	return cut("## Client side", "### How the swap works"), cut("## Release side", "## Client side")
}

// fenceAfter returns the n-th (from 0) fenced code block of language lang
// that follows marker in text.
func fenceAfter(t *testing.T, text, marker, lang string, n int) string {
	t.Helper()
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("README.md: %q not found", marker)
	}
	var blocks, cur []string
	in, wanted := false, false
	for line := range strings.SplitSeq(text[i:], "\n") {
		switch {
		case !in && strings.HasPrefix(line, "```"):
			in, wanted, cur = true, line == "```"+lang, nil
		case in && line == "```":
			in = false
			if wanted {
				blocks = append(blocks, strings.Join(cur, "\n")+"\n")
			}
		case in:
			cur = append(cur, line)
		}
		if len(blocks) > n {
			return blocks[n]
		}
	}
	t.Fatalf("README.md: no %s block #%d after %q", lang, n+1, marker)
	return ""
}

// commandLines returns the lines of a sh block that run something (not
// empty, not only a comment).
func commandLines(block string) []string {
	var out []string
	for line := range strings.SplitSeq(block, "\n") {
		if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
			out = append(out, line)
		}
	}
	return out
}

// lineStarting returns the one line of lines that starts with prefix.
func lineStarting(t *testing.T, lines []string, prefix string) string {
	t.Helper()
	var found []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md: %d lines start with %q, want 1: %q", len(found), prefix, lines)
	}
	return found[0]
}

// TestREADMEConfigParses: every deltaup.json the README's client section
// shows is accepted by apply.LoadConfigFile, with the keys the text
// relies on.
func TestREADMEConfigParses(t *testing.T) {
	client, _ := readmeClientSection(t)
	for _, c := range []struct{ marker, pubkey, version string }{
		{"**A. Inside every release", "release.pub", "1.4.0"},
		{"**B. Beside the app directory", "/opt/myapp-updater/release.pub", ""},
	} {
		dir := t.TempDir()
		text := fenceAfter(t, client, c.marker, "json", 0)
		if err := os.WriteFile(filepath.Join(dir, apply.ConfigFileName), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		fc, err := apply.LoadConfigFile(dir)
		if err != nil {
			t.Fatalf("the README's deltaup.json after %q: %v\n%s", c.marker, err, text)
		}
		if !fc.Found || fc.App != "myapp" || len(fc.Servers) != 1 || fc.PubKey != c.pubkey ||
			!slices.Equal(fc.Relaunch, []string{"bin/myapp"}) || fc.Version != c.version {
			t.Errorf("the README's deltaup.json after %q reads as %+v", c.marker, fc)
		}
	}
}

// readmeShell runs README command lines with sh -c, as a user would type
// them one after the other.
type readmeShell struct {
	t    *testing.T
	dir  string // the working directory; a `cd DIR` line changes it
	env  []string
	repl *strings.Replacer // the README's paths and URL to the test's
	n    int
}

func newReadmeShell(t *testing.T, dir, binDir string, repl *strings.Replacer) *readmeShell {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PATH=") })
	env = append(env, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return &readmeShell{t: t, dir: dir, env: env, repl: repl}
}

// run runs line (after the replacements) and returns its exit status and
// its output: stdout and stderr, and what the app the update relaunched
// printed (it shares them) until it ended. Each run gives the app a file
// to wait for ($MYAPP_QUIT), created once the command has exited: the app
// runs on after confirming, as a real one does, and ends then.
func (sh *readmeShell) run(line string) (int, string) {
	t := sh.t
	t.Helper()
	line = sh.repl.Replace(line)
	if dir, ok := strings.CutPrefix(line, "cd "); ok {
		sh.dir = strings.TrimSpace(dir)
		return 0, ""
	}
	sh.n++
	quit := filepath.Join(t.TempDir(), fmt.Sprintf("quit-%d", sh.n))
	defer os.WriteFile(quit, nil, 0o644) // also when the test fails half-way
	// A safety net against a hang, far above the run's few seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	cmd.Dir, cmd.Env = sh.dir, append(slices.Clone(sh.env), "MYAPP_QUIT="+quit)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pw.Close()
		t.Fatal(err)
	}
	pw.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(&out, pr)
		close(done)
	}()
	err = cmd.Wait()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if err := os.WriteFile(quit, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done: // every holder of the output ended: the relaunched app too
	case <-time.After(5 * time.Minute):
		t.Fatalf("%s: the output stays open 5 minutes after the command exited", line)
	}
	t.Logf("$ %s\n%s(exit %d)", line, out.String(), code)
	return code, out.String()
}

// expect runs line and checks its exit status and that its output holds
// each of wants.
func (sh *readmeShell) expect(line string, code int, wants ...string) string {
	sh.t.Helper()
	got, out := sh.run(line)
	if got != code {
		sh.t.Errorf("%s: exit %d, want %d\n%s", line, got, code, out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			sh.t.Errorf("%s: the output lacks %q:\n%s", line, w, out)
		}
	}
	return out
}

// readmeStep is what one README line must do: start with prefix (the
// README's text, before the replacements), exit with code, print wants.
type readmeStep struct {
	prefix string
	code   int
	wants  []string
}

// follow runs lines, the command lines of layout's block, checking that
// they are steps one for one; after, when not nil, runs after each.
func (sh *readmeShell) follow(layout string, lines []string, steps []readmeStep, after func(i int)) {
	t := sh.t
	t.Helper()
	if len(lines) != len(steps) {
		t.Fatalf("README.md: layout %s has %d command lines, the test knows %d: %q", layout, len(lines), len(steps), lines)
	}
	for i, s := range steps {
		if !strings.HasPrefix(lines[i], s.prefix) {
			t.Fatalf("README.md: layout %s's line %d is %q, the test expects %q...", layout, i+1, lines[i], s.prefix)
		}
		sh.expect(lines[i], s.code, s.wants...)
		if after != nil {
			after(i)
		}
	}
}

// readmeTools has mkdelta (this test binary), and deltaup once per
// version (deltaup --version prints it), built with go build.
type readmeTools struct {
	bin     string            // holds mkdelta
	deltaup map[string]string // version -> the binary
}

func buildReadmeTools(t *testing.T, versions ...string) *readmeTools {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go is not on PATH (%v): this test builds the real mkdelta and deltaup with go build", err)
	}
	dir := t.TempDir()
	tools := &readmeTools{bin: filepath.Join(dir, "bin"), deltaup: map[string]string{}}
	build := func(out, pkg string, ldflags string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a safety net
		defer cancel()
		cmd := exec.CommandContext(ctx, goCmd, "build", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	// mkdelta is this test binary under that name: TestMain runs
	// cli.Mkdelta, the whole of cmd/mkdelta but its cloud drivers, which
	// the README's local repository does not need (and which are most of
	// a link's cost).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(tools.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(tools.bin, "mkdelta")); err != nil {
		t.Fatal(err)
	}
	// deltaup is linked once, with a marker as its version, and each
	// version is that binary with the marker overwritten (same length: the
	// string's header is unchanged), which saves a link per version.
	marker := ""
	for _, v := range versions {
		if len(v) != len(versions[0]) {
			t.Fatalf("buildReadmeTools: versions of one length only (%q, %q)", versions[0], v)
		}
	}
	for len(marker) < len(versions[0]) {
		marker += "#"
	}
	marker = "@" + marker[1:]
	generic := filepath.Join(dir, "deltaup-generic")
	build(generic, "github.com/deltaup/deltaup/cmd/deltaup", "-s -w -X github.com/deltaup/deltaup/cmd/internal/upcli.Version="+marker)
	bin := readFile(t, generic)
	// The marker is the version string and, in the build information,
	// part of the recorded -ldflags: all of them are overwritten.
	if !bytes.Contains(bin, []byte(marker)) {
		t.Fatalf("the version marker %q is not in deltaup", marker)
	}
	for _, v := range versions {
		tools.deltaup[v] = filepath.Join(dir, "deltaup-"+v)
		if err := os.WriteFile(tools.deltaup[v], bytes.ReplaceAll(bin, []byte(marker), []byte(v)), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(tools.deltaup[v], "--version").Output(); err != nil || !strings.Contains(string(out), v) {
			t.Fatalf("deltaup-%s --version: %q, %v", v, out, err)
		}
	}
	return tools
}

// appReal is bin/myapp-real, the program the README's wrapper starts: it
// prints its version, the version of the deltaup beside it (layout A),
// whether the updater's resume variable reached it, and runs until the
// test's command has exited ($MYAPP_QUIT; 5 minutes at most).
func appReal(version string) string {
	return `#!/bin/sh
echo "myapp-real ` + version + `"
if [ -x "$(dirname "$0")/../deltaup" ]; then "$(dirname "$0")/../deltaup" --version; fi
echo "DELTAUP_RESUME=${DELTAUP_RESUME-unset}"
i=0
while [ ! -e "$MYAPP_QUIT" ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done
`
}

// writeRelease makes dir exactly files (bin/* and deltaup executable) and
// returns its scan.
func writeRelease(t *testing.T, dir string, files map[string][]byte) []tree.Entry {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") || name == "deltaup" {
			mode = 0o755
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	return scanTree(t, dir)
}

func scanTree(t *testing.T, dir string) []tree.Entry {
	t.Helper()
	es, err := tree.Scan(context.Background(), dir, tree.ScanOptions{Hash: true})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// sameEntries checks that the tree at dir is want, naming the differences.
func sameEntries(t *testing.T, dir string, got, want []tree.Entry) {
	t.Helper()
	if tree.Digest(got) == tree.Digest(want) {
		return
	}
	gm := map[string]tree.Entry{}
	for _, e := range got {
		gm[e.Path] = e
	}
	for _, e := range want {
		if g, ok := gm[e.Path]; !ok {
			t.Errorf("%s: %s is missing", dir, e.Path)
		} else if g != e {
			t.Errorf("%s: %s is %+v, want %+v", dir, e.Path, g, e)
		}
		delete(gm, e.Path)
	}
	for p := range gm {
		t.Errorf("%s: %s is not in the release", dir, p)
	}
}

func sameBytes(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s (%d bytes) is not byte for byte %s (%d bytes)", got, len(a), want, len(b))
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestREADMEClientLayouts follows the README's client section step by step
// with the real mkdelta and deltaup (built by go build), against a
// repository published with the README's release-side commands and served
// on loopback.
//
// Layout A: every release carries deltaup, deltaup.json (the README's, with
// the release's version) and release.pub; the first release is unpacked
// from its archive; ./deltaup check and ./deltaup update --yes run from
// the app directory, with no flags. The app directory ends exactly the new
// release, deltaup included (the published binary, byte for byte, as its
// --version run by the relaunched app shows), the swap ran from the copy
// of the old deltaup in the backup directory, the relaunched app (the
// README's wrapper) confirmed, and status says the new version. A second
// update then runs with the deltaup the first one installed.
//
// Layout B: the releases are only the app; deltaup and the key stay in
// an updater directory beside it. First with a deltaup.json the installer
// put into the app directory (kept byte for byte by the update), then with
// the flags instead.
func TestREADMEClientLayouts(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the README's wrapper and the test's app are shell scripts")
	}
	client, release := readmeClientSection(t)
	relLines := commandLines(fenceAfter(t, release, "## Release side", "sh", 0))
	keygen := lineStarting(t, relLines, "mkdelta keygen -o release")
	publish := lineStarting(t, relLines, "mkdelta publish ")
	if !strings.Contains(publish, "--version 1.4.0") || !strings.Contains(publish, " build/") {
		t.Fatalf("README.md: the publish line no longer publishes 1.4.0 from build/: %s", publish)
	}
	publishVersion := func(v string) string { return strings.Replace(publish, "1.4.0", v, 1) }
	wrapper := fenceAfter(t, client, "**The relaunched app must confirm.**", "sh", 0)
	tools := buildReadmeTools(t, "1.3.0", "1.4.0", "1.5.0")

	// setup returns a work directory with the README's key pair and the
	// server of its site/, the publisher's shell (it stays in the work
	// directory) and the user's (it starts there).
	setup := func(t *testing.T) (work string, pub, sh *readmeShell, repl *strings.Replacer) {
		work = t.TempDir()
		srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(work, "site"))))
		t.Cleanup(srv.Close)
		repl = strings.NewReplacer("/opt/", filepath.Join(work, "opt")+"/", "https://updates.example.com/myapp", srv.URL)
		pub, sh = newReadmeShell(t, work, tools.bin, repl), newReadmeShell(t, work, tools.bin, repl)
		pub.expect(keygen, 0, "wrote release.key and release.pub")
		return work, pub, sh, repl
	}

	t.Run("A", func(t *testing.T) {
		work, pub, sh, repl := setup(t)
		config := fenceAfter(t, client, "**A. Inside every release", "json", 0)
		if !strings.Contains(config, `"version": "1.4.0"`) {
			t.Fatalf("README.md: layout A's deltaup.json no longer records 1.4.0:\n%s", config)
		}
		releases := map[string][]tree.Entry{}
		publishA := func(v string) {
			releases[v] = writeRelease(t, filepath.Join(work, "build"), map[string][]byte{
				"bin/myapp":      []byte(wrapper),
				"bin/myapp-real": []byte(appReal(v)),
				"deltaup":        readFile(t, tools.deltaup[v]),
				"deltaup.json":   []byte(repl.Replace(strings.ReplaceAll(config, "1.4.0", v))),
				"release.pub":    readFile(t, filepath.Join(work, "release.pub")),
			})
			pub.expect(publishVersion(v), 0)
		}
		publishA("1.3.0")
		publishA("1.4.0")

		lines := commandLines(fenceAfter(t, client, "**A. Inside every release", "sh", 0))
		app := filepath.Join(work, "opt", "myapp")
		sh.follow("A", lines, []readmeStep{
			{"mkdir -p /opt/myapp && tar -xzf site/archives/myapp-1.3.0.tar.gz -C /opt/myapp", 0, nil},
			{"cd /opt/myapp", 0, nil},
			{"./deltaup check ", 3, []string{"update ready: 1.3.0 → 1.4.0 via 1.3.0→1.4.0"}},
			{"./deltaup update --yes ", 0, []string{
				"myapp-real 1.4.0\ndeltaup 1.4.0\nDELTAUP_RESUME=unset\n", // the new app and the new deltaup
				"confirmed\n", "installed 1.4.0 in "}},
			{"./deltaup status ", 0, []string{"installed: 1.4.0 "}},
		}, func(i int) {
			if i == 0 { // unpacked: exactly the first release
				sameEntries(t, app, scanTree(t, app), releases["1.3.0"])
			}
		})
		if sh.dir != app {
			t.Fatalf("the lines ran in %s, not in the app directory %s", sh.dir, app)
		}
		sameEntries(t, app, scanTree(t, app), releases["1.4.0"])
		sameBytes(t, filepath.Join(app, "deltaup"), tools.deltaup["1.4.0"])
		// The swap ran from a copy of the deltaup it replaced.
		sameBytes(t, filepath.Join(work, "opt", "myapp.backup", "bin", "deltaup"), tools.deltaup["1.3.0"])
		if t.Failed() {
			return
		}

		// The deltaup that 1.4.0 brought updates to 1.5.0, itself included.
		publishA("1.5.0")
		sh.expect(lineStarting(t, lines, "./deltaup check "), 3, "update ready: 1.4.0 → 1.5.0")
		sh.expect(lineStarting(t, lines, "./deltaup update --yes "), 0,
			"myapp-real 1.5.0\ndeltaup 1.5.0\nDELTAUP_RESUME=unset\n", "confirmed\n", "installed 1.5.0 in ")
		sameEntries(t, app, scanTree(t, app), releases["1.5.0"])
		sameBytes(t, filepath.Join(app, "deltaup"), tools.deltaup["1.5.0"])
		sameBytes(t, filepath.Join(work, "opt", "myapp.backup", "bin", "deltaup"), tools.deltaup["1.4.0"])
		sh.expect(lineStarting(t, lines, "./deltaup status "), 0, "installed: 1.5.0 ")
		sh.expect(lineStarting(t, lines, "./deltaup check "), 0, "up to date (1.5.0)")
	})

	t.Run("B", func(t *testing.T) {
		work, pub, sh, repl := setup(t)
		const fromApp = `"$(dirname "$0")/../deltaup"`
		if !strings.Contains(wrapper, fromApp) || !strings.Contains(client, "instead of `"+fromApp+"`") {
			t.Fatalf("README.md: the wrapper no longer runs %s, or the text no longer says what layout B runs instead", fromApp)
		}
		wrapperB := repl.Replace(strings.ReplaceAll(wrapper, fromApp, "/opt/myapp-updater/deltaup"))
		updater := filepath.Join(work, "opt", "myapp-updater")
		if err := os.MkdirAll(updater, 0o755); err != nil {
			t.Fatal(err)
		}
		// The package manager's part: the updater and the key beside the app.
		for src, dst := range map[string]string{tools.deltaup["1.5.0"]: "deltaup", filepath.Join(work, "release.pub"): "release.pub"} {
			if err := os.WriteFile(filepath.Join(updater, dst), readFile(t, src), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		releases := map[string][]tree.Entry{}
		publishB := func(v string) {
			releases[v] = writeRelease(t, filepath.Join(work, "build"), map[string][]byte{
				"bin/myapp":      []byte(wrapperB),
				"bin/myapp-real": []byte(appReal(v)),
			})
			pub.expect(publishVersion(v), 0)
		}
		publishB("1.3.0")
		publishB("1.4.0")
		// The README's deltaup.json, where its `cp` line takes it from.
		config := repl.Replace(fenceAfter(t, client, "**B. Beside the app directory", "json", 0))
		if err := os.WriteFile(filepath.Join(work, "deltaup.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}

		lines := commandLines(fenceAfter(t, client, "**B. Beside the app directory", "sh", 0))
		sh.follow("B", lines, []readmeStep{
			{"mkdir -p /opt/myapp && tar -xzf site/archives/myapp-1.3.0.tar.gz -C /opt/myapp", 0, nil},
			{"cp deltaup.json /opt/myapp/", 0, nil},
			{"/opt/myapp-updater/deltaup check --app-dir /opt/myapp", 3, []string{
				"1 file(s) in the app directory belong to no release and are kept: deltaup.json",
				"update ready: 1.3.0 → 1.4.0 via 1.3.0→1.4.0"}},
			{"/opt/myapp-updater/deltaup update --yes --app-dir /opt/myapp", 0, []string{
				"myapp-real 1.4.0\nDELTAUP_RESUME=unset\n", "confirmed\n", "installed 1.4.0 in "}},
		}, nil)
		app := filepath.Join(work, "opt", "myapp")
		// The release, and the user's deltaup.json as it was.
		got := slices.DeleteFunc(scanTree(t, app), func(e tree.Entry) bool { return e.Path == "deltaup.json" })
		sameEntries(t, app, got, releases["1.4.0"])
		if b := readFile(t, filepath.Join(app, "deltaup.json")); string(b) != config {
			t.Errorf("the update changed deltaup.json to %q", b)
		}
		sameBytes(t, filepath.Join(updater, "deltaup"), tools.deltaup["1.5.0"])
		if t.Failed() {
			return
		}

		// Without the file: its keys as flags (the README's second block).
		if err := os.Remove(filepath.Join(app, "deltaup.json")); err != nil {
			t.Fatal(err)
		}
		publishB("1.5.0")
		flagLines := commandLines(fenceAfter(t, client, "**B. Beside the app directory", "sh", 1))
		sh.expect(lineStarting(t, flagLines, "/opt/myapp-updater/deltaup update --yes --app-dir /opt/myapp --app myapp "), 0,
			"myapp-real 1.5.0\nDELTAUP_RESUME=unset\n", "confirmed\n", "installed 1.5.0 in ")
		sameEntries(t, app, scanTree(t, app), releases["1.5.0"])
		sh.expect("/opt/myapp-updater/deltaup status --app-dir /opt/myapp", 0, "installed: 1.5.0 ")
	})

	// The release side's v2 block, line by line, on a repository of 1.3.0
	// and 1.4.0; then a client pinned to the root it wrote finds 1.5.0.
	t.Run("v2", func(t *testing.T) {
		work, pub, sh, _ := setup(t)
		v2 := commandLines(fenceAfter(t, release, "### Repository v2", "sh", 0))
		files := func(v string) map[string][]byte {
			return map[string][]byte{"bin/myapp": []byte(appReal(v)), "share/notes.txt": []byte(strings.Repeat("notes of "+v+"\n", 200))}
		}
		for _, v := range []string{"1.3.0", "1.4.0"} {
			writeRelease(t, filepath.Join(work, "build"), files(v))
			pub.expect(publishVersion(v), 0)
		}
		steps := []readmeStep{
			{"mkdelta keygen -o rootA", 0, []string{"wrote rootA.key", "wrote rootB.key", "wrote ts.key"}},
			{"mkdelta migrate --repo site", 0, []string{"root/1.json"}},
			{"mkdelta publish --repo site --app myapp --version 1.5.0 ", 0, nil},
			{"mkdelta refresh --repo site --key ts.key", 0, nil},
			{"mkdelta keygen -o new", 0, []string{"wrote new.key"}},
			{"mkdelta key rotate --repo site --role release --old release.pub --pubkey new.pub ", 0, nil},
		}
		// A line ending in a backslash goes on on the next line.
		var joined []string
		for i := 0; i < len(v2); i++ {
			l := v2[i]
			for strings.HasSuffix(strings.TrimSpace(strings.SplitN(l, "#", 2)[0]), "\\") && i+1 < len(v2) {
				l = strings.TrimSuffix(strings.TrimSpace(strings.SplitN(l, "#", 2)[0]), "\\") + " " + strings.TrimSpace(v2[i+1])
				i++
			}
			joined = append(joined, l)
		}
		pub.follow("v2", joined, steps, func(i int) {
			if strings.HasPrefix(joined[i], "mkdelta migrate") {
				writeRelease(t, filepath.Join(work, "build"), files("1.5.0"))
			}
		})
		for _, f := range []string{"site/root/1.json", "site/root/2.json", "site/timestamp.json"} {
			if _, err := os.Stat(filepath.Join(work, f)); err != nil {
				t.Errorf("after the README's v2 block: %v", err)
			}
		}
		if t.Failed() {
			return
		}
		app := filepath.Join(work, "opt", "myapp")
		writeRelease(t, app, files("1.4.0"))
		// v1 clients still trust release.pub: manifest.json stays signed
		// by it until the next publish; v2 clients follow the new root.
		sh.expect("mkdelta verify --repo site --pubkey release.pub", 0)
		sh.expect("deltaup check --app-dir /opt/myapp --server https://updates.example.com/myapp --app myapp --pubkey release.pub --root site/root/1.json", 3,
			"update ready: 1.4.0 → 1.5.0")
	})
}
