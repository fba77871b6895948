//go:build linux || darwin || freebsd

package cli_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/deltaup/deltaup/cmd/internal/cli"
)

// TestUpdatePromptsOnlyOnATerminal runs `deltaup update` with its standard
// input on /dev/null, on a pipe and on a pseudo-terminal: only the terminal
// is asked (and its answer obeyed); without one the update proceeds
// unasked, as a service expects.
func TestUpdatePromptsOnlyOnATerminal(t *testing.T) {
	deltaup, err := exec.LookPath("deltaup") // put on PATH by testscript.Main
	if err != nil {
		t.Fatalf("the test binary as deltaup: %v", err)
	}
	work := t.TempDir()
	v1 := map[string]string{"bin/app": "#!/bin/sh\necho 1.0.0\n", "README.md": "version one\n"}
	v2 := map[string]string{"bin/app": "#!/bin/sh\necho 1.1.0\n", "README.md": "version one point one\n"}
	writeTree(t, filepath.Join(work, "v1"), v1)
	writeTree(t, filepath.Join(work, "v2"), v2)
	mkdelta(t, "keygen", "-o", filepath.Join(work, "k"))
	for _, vd := range [][2]string{{"1.0.0", "v1"}, {"1.1.0", "v2"}} { // in order: an older one after a newer one is refused
		v, dir := vd[0], vd[1]
		mkdelta(t, "publish", "-q", "--repo", filepath.Join(work, "site"), "--app", "demo", "--version", v,
			"--key", filepath.Join(work, "k.key"), filepath.Join(work, dir))
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(work, "site"))))
	defer srv.Close()

	const prompt = "Update 1.0.0 to 1.1.0 ("
	tests := []struct {
		name       string
		stdin      string // devnull, pipe or pty
		answer     string // typed at the prompt (pty), or written to the pipe
		extra      []string
		wantCode   int
		wantPrompt bool
		wantTree   map[string]string
	}{
		// As under systemd or cron: </dev/null, and stderr to /dev/null
		// too (a character device, but not a terminal).
		{name: "devnull", stdin: "devnull", wantCode: 0, wantTree: v2},
		{name: "pipe", stdin: "pipe", answer: "n\n", wantCode: 0, wantTree: v2},
		{name: "pty-no", stdin: "pty", answer: "n\r", wantCode: 9, wantPrompt: true, wantTree: v1},
		{name: "pty-yes", stdin: "pty", answer: "y\r", wantCode: 0, wantPrompt: true, wantTree: v2},
		{name: "pty-flag-yes", stdin: "pty", extra: []string{"--yes"}, wantCode: 0, wantTree: v2},
		{name: "pty-json", stdin: "pty", extra: []string{"--json"}, wantCode: 0, wantTree: v2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := filepath.Join(t.TempDir(), "app")
			writeTree(t, app, v1)
			// A safety net against a hang, far above the run's few seconds.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			args := append([]string{"update", "--app-dir", app, "--server", srv.URL, "--pubkey", filepath.Join(work, "k.pub"),
				"--app", "demo", "--no-reexec"}, tc.extra...)
			cmd := exec.CommandContext(ctx, deltaup, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout = &stdout
			var term *ptyTranscript
			switch tc.stdin {
			case "devnull":
				f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				cmd.Stdin, cmd.Stderr = f, f
			case "pipe":
				cmd.Stderr = &stderr
				cmd.Stdin = strings.NewReader(tc.answer)
			case "pty":
				ptmx, tty, err := pty.Open()
				if err != nil {
					t.Skipf("no pseudo-terminal here: %v", err)
				}
				defer ptmx.Close()
				cmd.Stdin, cmd.Stderr = tty, tty
				term = &ptyTranscript{ptmx: ptmx, prompt: prompt, answer: tc.answer, done: make(chan struct{})}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				tty.Close() // the child holds it; the master reads EOF/EIO once it exits
				go term.run()
			}
			if term == nil {
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
			}
			err := cmd.Wait()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			errText := stderr.String()
			if term != nil {
				<-term.done
				errText = term.out.String()
			}
			t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), errText)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d", code, tc.wantCode)
			}
			if got := strings.Contains(errText, prompt); got != tc.wantPrompt {
				t.Errorf("prompted: %v, want %v", got, tc.wantPrompt)
			}
			if strings.Contains(stdout.String(), prompt) {
				t.Errorf("the prompt went to stdout")
			}
			for name, want := range tc.wantTree {
				got, err := os.ReadFile(filepath.Join(app, name))
				if err != nil || string(got) != want {
					t.Errorf("%s after the run: %q, %v; want %q", name, got, err, want)
				}
			}
		})
	}
}

// ptyTranscript reads what the child writes to the terminal, and types
// answer once prompt has appeared.
type ptyTranscript struct {
	ptmx           *os.File
	prompt, answer string
	out            bytes.Buffer
	done           chan struct{}
}

func (p *ptyTranscript) run() {
	defer close(p.done)
	buf := make([]byte, 4096)
	answered := false
	for {
		n, err := p.ptmx.Read(buf)
		p.out.Write(buf[:n])
		if !answered && p.answer != "" && strings.Contains(p.out.String(), p.prompt) {
			answered = true
			io.WriteString(p.ptmx, p.answer)
		}
		if err != nil { // EIO on Linux once the child closed the terminal
			return
		}
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
}

func mkdelta(t *testing.T, args ...string) {
	t.Helper()
	var out bytes.Buffer
	if code := cli.Mkdelta(args, &out, &out); code != 0 {
		t.Fatalf("mkdelta %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
	}
}
