//go:build unix

package apply

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRelaunchDropsResumeEnv: the app Relaunch starts from the updater's
// copy (which runs with DELTAUP_RESUME=1 and DELTAUP_PARENT_PID) sees
// neither variable, so a `deltaup update` it runs later re-executes from
// the backup directory again, while the rest of the environment passes.
func TestRelaunchDropsResumeEnv(t *testing.T) {
	t.Setenv(EnvResume, "1")
	t.Setenv(EnvParentPID, "4242")
	t.Setenv("DELTAUP_TEST_KEPT", "kept")
	app := t.TempDir()
	if err := os.MkdirAll(filepath.Join(app, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho \"resume=${DELTAUP_RESUME-unset} parent=${DELTAUP_PARENT_PID-unset} kept=${DELTAUP_TEST_KEPT-unset}\" > env.txt\n"
	if err := os.WriteFile(filepath.Join(app, "bin", "env.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := Relaunch(app, []string{"bin/env.sh"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ProcessExited(p):
		if e.Code != 0 {
			t.Fatalf("the script: %s", e)
		}
	case <-time.After(2 * time.Minute): // a safety net only
		t.Fatal("the script did not exit")
	}
	b, err := os.ReadFile(filepath.Join(app, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "resume=unset parent=unset kept=kept\n"; got != want {
		t.Fatalf("the relaunched app saw %q, want %q", got, want)
	}
}
