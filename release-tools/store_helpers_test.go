package releasetools

import (
	"os"
	"os/exec"
	"testing"
)

func hostname() string { h, _ := os.Hostname(); return h }

// deadPID returns the id of a process that has exited: this test binary,
// run again with no test to run (any OS has it).
func deadPID(t testing.TB) int {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run the test binary again:", err)
	}
	return cmd.Process.Pid
}
