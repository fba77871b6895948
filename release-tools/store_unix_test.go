//go:build unix

package releasetools

import (
	"os"
	"os/exec"
	"testing"
)

func hostname() string { h, _ := os.Hostname(); return h }

// deadPID returns the id of a process that has exited.
func deadPID(t testing.TB) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	return cmd.Process.Pid
}
