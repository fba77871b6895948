package cli_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/cmd/internal/cli"
	"github.com/deltaup/deltaup/cmd/internal/upcli"
	"github.com/deltaup/deltaup/internal/testtmp"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary act as mkdelta and deltaup: testscript puts
// copies of it under those names on the scripts' PATH. Temporary files
// live on a memory file system where there is one (internal/testtmp).
func TestMain(m *testing.M) {
	testscript.Main(testtmp.Wrap(m), map[string]func(){
		"mkdelta": func() { os.Exit(cli.Mkdelta(os.Args[1:], os.Stdout, os.Stderr)) },
		"deltaup": func() { os.Exit(upcli.Deltaup(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScript runs testdata/script/*.txtar. Besides the testscript builtins
// they can use the commands below (see each function) and the condition
// [root] (running as uid 0, where permission bits do not stop reads).
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"gen":        cmdGen,
			"flipbyte":   cmdFlipbyte,
			"truncate":   cmdTruncate,
			"linecount":  cmdLinecount,
			"nofiles":    cmdNofiles,
			"exitcode":   cmdExitcode,
			"sametree":   cmdSametree,
			"serve":      cmdServe,
			"deadserver": cmdDeadserver,
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// gen [-seed N] SIZE OLD NEW writes SIZE pseudo-random bytes to OLD and to
// NEW a copy of them with an edit every few KiB (bytes changed by a small
// amount, bytes inserted, deleted or overwritten), the kind of pair a delta
// compresses well and a plain compressor cannot. The same seed gives the
// same files on every run.
func cmdGen(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! gen")
	}
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	seed := fs.Uint64("seed", 1, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 3 {
		ts.Fatalf("usage: gen [-seed N] SIZE OLD NEW")
	}
	size, err := strconv.Atoi(fs.Arg(0))
	ts.Check(err)
	rng := rand.New(rand.NewPCG(*seed, 0x9e3779b97f4a7c15))
	old := make([]byte, size)
	for i := range old {
		old[i] = byte(rng.Uint32())
	}
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	newb := make([]byte, 0, size+size/64)
	for pos := 0; pos < len(old); {
		run := min(1024+rng.IntN(7*1024), len(old)-pos)
		newb = append(newb, old[pos:pos+run]...)
		pos += run
		n := 1 + rng.IntN(64)
		switch rng.IntN(4) {
		case 0: // nudge a few bytes, as a changed constant or address does
			for i := len(newb) - min(n, 16, len(newb)); i < len(newb); i++ {
				newb[i] += byte(1 + rng.IntN(8))
			}
		case 1: // insert
			newb = append(newb, randBytes(n)...)
		case 2: // delete
			pos += min(n, len(old)-pos)
		case 3: // overwrite
			k := min(n, len(old)-pos)
			newb = append(newb, randBytes(k)...)
			pos += k
		}
	}
	ts.Check(os.WriteFile(ts.MkAbs(fs.Arg(1)), old, 0o644))
	ts.Check(os.WriteFile(ts.MkAbs(fs.Arg(2)), newb, 0o644))
}

// flipbyte FILE OFFSET inverts every bit of the byte at OFFSET (counted from
// the end when negative: -1 is the last byte).
func cmdFlipbyte(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: flipbyte FILE OFFSET")
	}
	name := ts.MkAbs(args[0])
	b, err := os.ReadFile(name)
	ts.Check(err)
	off, err := strconv.Atoi(args[1])
	ts.Check(err)
	if off < 0 {
		off += len(b)
	}
	if off < 0 || off >= len(b) {
		ts.Fatalf("flipbyte: offset %s outside the %d-byte %s", args[1], len(b), args[0])
	}
	b[off] ^= 0xff
	ts.Check(os.WriteFile(name, b, 0o644))
}

// truncate FILE N cuts FILE to N bytes (when negative, drops the last -N).
func cmdTruncate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: truncate FILE N")
	}
	name := ts.MkAbs(args[0])
	fi, err := os.Stat(name)
	ts.Check(err)
	n, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	if n < 0 {
		n += fi.Size()
	}
	if n < 0 || n > fi.Size() {
		ts.Fatalf("truncate: %s is %d bytes, cannot cut it to %s", args[0], fi.Size(), args[1])
	}
	ts.Check(os.Truncate(name, n))
}

// linecount FILE N checks that FILE (or the last command's stdout or
// stderr) holds exactly N lines, each ended by a newline.
func cmdLinecount(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: linecount FILE N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	text := ts.ReadFile(args[0])
	if text != "" && !strings.HasSuffix(text, "\n") {
		ts.Fatalf("%s does not end with a newline:\n%s", args[0], text)
	}
	if got := strings.Count(text, "\n"); got != want {
		ts.Fatalf("%s has %d lines, want %d:\n%s", args[0], got, want, text)
	}
}

// nofiles DIR GLOB checks that nothing in DIR matches GLOB (with !, that
// something does), for example leftover temporary files: nofiles . '.out.tmp-*'.
func cmdNofiles(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: nofiles DIR GLOB")
	}
	matches, err := filepath.Glob(filepath.Join(ts.MkAbs(args[0]), args[1]))
	ts.Check(err)
	if neg && len(matches) == 0 {
		ts.Fatalf("nothing in %s matches %s", args[0], args[1])
	}
	if !neg && len(matches) > 0 {
		ts.Fatalf("%s holds files matching %s: %q", args[0], args[1], matches)
	}
}

// exitcode N PROG ARGS... runs PROG like exec does and checks that it exits
// with status N; stdout and stderr are kept for the next stdout/stderr
// command.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// sametree A B checks that the directory trees A and B have the same
// tree.Digest (paths, types, modes, sizes, contents, link targets), naming
// the first difference when not; with !, that they differ.
func cmdSametree(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sametree A B")
	}
	scan := func(dir string) []tree.Entry {
		es, err := tree.Scan(context.Background(), ts.MkAbs(dir), tree.ScanOptions{Hash: true})
		ts.Check(err)
		return es
	}
	a, b := scan(args[0]), scan(args[1])
	same := tree.Digest(a) == tree.Digest(b)
	if neg {
		if same {
			ts.Fatalf("%s and %s are the same tree", args[0], args[1])
		}
		return
	}
	if same {
		return
	}
	bm := map[string]tree.Entry{}
	for _, e := range b {
		bm[e.Path] = e
	}
	for _, e := range a {
		if be, ok := bm[e.Path]; !ok || be != e {
			ts.Fatalf("trees differ at %s: %s has %+v, %s has %+v", e.Path, args[0], e, args[1], be)
		}
		delete(bm, e.Path)
	}
	for p := range bm {
		ts.Fatalf("trees differ: %s/%s is not in %s", args[1], p, args[0])
	}
}

// serve DIR starts an HTTP server on loopback for the directory and sets
// $SERVER to its URL; the server records nothing and stops with the script.
func cmdServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: serve DIR")
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(ts.MkAbs(args[0]))))
	ts.Defer(srv.Close)
	ts.Setenv("SERVER", srv.URL)
}

// deadserver sets $DEAD to the URL of a loopback port that was just
// listened on and closed: connections to it are refused.
func cmdDeadserver(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: deadserver")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	addr := l.Addr().String()
	ts.Check(l.Close())
	ts.Setenv("DEAD", "http://"+addr)
}
