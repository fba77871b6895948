package apply

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestUpdateRollbackCause: when the relaunched new version does not
// confirm, the rollback error says why: the program's exit (code or
// signal, and after how long) when it ended first, else the timeout; it
// says that the version is marked bad, how to clear the mark and that the
// app must confirm, each once. The exit, not the timeout, ends the wait
// of a program that exits (the timeout of those cases is a safety net of
// minutes: waiting it out would fail the test's message check).
func TestUpdateRollbackCause(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh to run the relaunched app")
	}
	tests := []struct {
		name    string
		script  string // the body of 2.0.0's bin/app
		timeout time.Duration
		code    int // the exit code reported; -2: no exit (timeout)
		want    string
	}{
		{"exits 3", "exit 3", 5 * time.Minute, 3, "bin/app (2.0.0) exited with code 3 after "},
		{"exits 0", "exit 0", 5 * time.Minute, 0, "bin/app (2.0.0) exited with code 0 after "},
		{"killed", "kill -9 $$", 5 * time.Minute, -1, "bin/app (2.0.0) was ended by signal killed after "},
		{"hangs", "exec sleep 60 >/dev/null 2>&1 </dev/null", 300 * time.Millisecond, -2, "bin/app (2.0.0) did not confirm within 300ms and was stopped; "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := ckEmptyRepo(t)
			// In order: a lower version published after a higher one is refused.
			for _, vb := range [][2]string{{"1.0.0", "exit 0"}, {"2.0.0", tc.script}} {
				v, body := vb[0], vb[1]
				dir := t.TempDir()
				ckWriteFiles(t, dir, map[string]string{"bin/app": "x:#!/bin/sh\n" + body + "\n", "data.txt": v})
				repo.trees[v] = dir
				repo.publish(t, v, dir)
			}
			s := ckSetupFor(t, repo, "1.0.0")
			s.cfg.Relaunch = []string{"bin/app"}
			u := &Updater{Config: *s.cfg, ConfirmTimeout: tc.timeout}
			ctx := context.Background()
			if _, err := u.Prepare(ctx); err != nil {
				t.Fatal(err)
			}
			in, err := u.Install(ctx)
			if !errors.Is(err, ErrRolledBack) || !errors.Is(err, ErrNotConfirmed) || in == nil || !in.RolledBack {
				t.Fatalf("Install: %+v %v, want a rollback for want of a confirmation", in, err)
			}
			msg := err.Error()
			t.Log(msg)
			nc, _ := errors.AsType[*NotConfirmedError](err)
			switch {
			case tc.code == -2 && nc.Exit != nil:
				t.Errorf("a hung version reported as exited: %+v", nc.Exit)
			case tc.code != -2 && (nc.Exit == nil || nc.Exit.Code != tc.code):
				t.Errorf("exit %+v, want code %d", nc.Exit, tc.code)
			}
			for _, w := range []string{tc.want, "2.0.0 is marked bad", "`deltaup unmark 2.0.0` or apply.UnmarkBad clears the mark", "`deltaup confirm`", "the app directory is version 1.0.0 as before"} {
				if n := strings.Count(msg, w); n != 1 {
					t.Errorf("%q said %d times, want once", w, n)
				}
			}
			if tc.code != -2 && strings.Contains(msg, "within") && !strings.Contains(msg, "within the confirm timeout") {
				t.Errorf("an exit reported as a timeout")
			}
			if ckDigest(t, s.cfg.AppDir) != ckDigest(t, repo.trees["1.0.0"]) {
				t.Fatal("app directory is not exactly the old version")
			}
		})
	}
}
