package apply

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func swappedFixture(t *testing.T) (*fixture, *Journal) {
	t.Helper()
	f := newFixture(t, oldNodes, newNodes)
	j := f.load(t)
	if err := Swap(context.Background(), j, nil); err != nil {
		t.Fatal(err)
	}
	return f, j
}

func TestConfirmInTime(t *testing.T) {
	f, j := swappedFixture(t)
	exited := make(chan ProcessExit, 1)
	go func() { // the relaunched app: starts, confirms, keeps running
		time.Sleep(30 * time.Millisecond)
		if err := Confirm(f.backup); err != nil {
			t.Error(err)
		}
	}()
	if err := WaitConfirm(context.Background(), j, 5*time.Second, exited); err != nil {
		t.Fatalf("WaitConfirm: %v", err)
	}
	if err := Confirm(f.backup); err != nil { // twice: no-op
		t.Fatal(err)
	}
	j2, err := Resume(context.Background(), f.app, f.backup, nil)
	if err != nil || j2.State != JournalConfirmed {
		t.Fatalf("Resume after confirm: %v %v", j2, err)
	}
	f.appIs(t, f.newD, "new")
	if _, err := os.Stat(j.Rollback); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rollback area kept: %v", err)
	}
	if err := Confirm(f.backup); err != nil { // no journal: no-op
		t.Fatal(err)
	}
}

func TestConfirmChildExitsEarly(t *testing.T) {
	f, j := swappedFixture(t)
	exited := make(chan ProcessExit, 1)
	go func() {
		time.Sleep(30 * time.Millisecond)
		exited <- ProcessExit{Code: 1, After: 30 * time.Millisecond}
	}()
	// The timeout is a safety net: the exit, not the time, ends the wait.
	err := WaitConfirm(context.Background(), j, time.Minute, exited)
	nc, ok := errors.AsType[*NotConfirmedError](err)
	if !ok || !errors.Is(err, ErrNotConfirmed) || nc.Exit == nil || nc.Exit.Code != 1 {
		t.Fatalf("WaitConfirm: %v, want the exit with code 1 as the reason", err)
	}
	if want := "exited with code 1 after 30ms without confirming"; !strings.Contains(err.Error(), want) {
		t.Fatalf("WaitConfirm: %q, want it to say %q", err, want)
	}
	if err := Rollback(context.Background(), f.load(t), nil); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.oldD, "old")
	if err := Confirm(f.backup); err != nil || f.load(t).State != JournalRolledBack {
		t.Fatalf("Confirm after rollback must not change the state: %v", err)
	}
}

func TestConfirmConfirmThenExit(t *testing.T) {
	f, j := swappedFixture(t)
	exited := make(chan ProcessExit)
	go func() {
		if err := Confirm(f.backup); err != nil {
			t.Error(err)
		}
		close(exited)
	}()
	if err := WaitConfirm(context.Background(), j, 5*time.Second, exited); err != nil {
		t.Fatalf("WaitConfirm: %v", err)
	}
}

func TestConfirmTimeout(t *testing.T) {
	f, j := swappedFixture(t)
	err := WaitConfirm(context.Background(), j, 150*time.Millisecond, nil)
	if nc, ok := errors.AsType[*NotConfirmedError](err); !ok || nc.Exit != nil || !strings.Contains(err.Error(), "did not confirm within 150ms") {
		t.Fatalf("WaitConfirm: %v, want a timeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitConfirm(ctx, j, time.Second, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if f.load(t).State != JournalSwapped {
		t.Fatal("state changed")
	}
}

func TestConfirmStagedNoop(t *testing.T) {
	f := newFixture(t, oldNodes, newNodes)
	if err := Confirm(f.backup); err != nil || f.load(t).State != JournalStaged {
		t.Fatalf("Confirm on a staged journal: %v", err)
	}
	if err := Confirm(t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

func TestConfirmRelaunch(t *testing.T) {
	app := t.TempDir()
	for _, argv := range [][]string{{"../evil"}, {"/bin/sh"}, {"a/../../x"}, {}, {"bin//x"}} {
		if _, err := Relaunch(app, argv); err == nil {
			t.Errorf("Relaunch(%q) accepted", argv)
		}
	}
	if runtime.GOOS == "windows" {
		t.Skip("shell script child")
	}
	if err := os.MkdirAll(filepath.Join(app, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\npwd > started.txt\necho \"$1\" >> started.txt\nexit 3\n"
	if err := os.WriteFile(filepath.Join(app, "bin", "run.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := Relaunch(app, []string{"bin/run.sh", "a b; rm -rf /"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ProcessExited(p):
		if e.Code != 3 || e.Err != nil || !strings.HasPrefix(e.String(), "exited with code 3 after ") {
			t.Fatalf("exit status 3 reported as %+v (%s)", e, e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child did not exit")
	}
	b, err := os.ReadFile(filepath.Join(app, "started.txt"))
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(app)
	if got := string(b); got != real+"\na b; rm -rf /\n" && got != app+"\na b; rm -rf /\n" {
		t.Fatalf("child saw %q", got)
	}
}

func TestResumeCopyExecutable(t *testing.T) {
	dir := t.TempDir()
	dst, err := copyExecutable(dir, "deltaup")
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	a, _ := os.Stat(exe)
	b, err := os.Stat(dst)
	if err != nil || a.Size() != b.Size() || b.Mode().Perm()&0o100 == 0 && runtime.GOOS != "windows" {
		t.Fatalf("copy: %v %v", b, err)
	}
	if err := WaitParent(context.Background(), os.Getpid()); err != nil {
		t.Fatal(err)
	}
}
