//go:build unix

package releasetools

import (
	"errors"
	"syscall"
)

// processAlive reports whether a process with this id exists on this host
// (a lease held by a dead process of this host is taken over at once).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
