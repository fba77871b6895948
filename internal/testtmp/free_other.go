//go:build !linux

package testtmp

// freeBytes: Setup uses /dev/shm on Linux only.
func freeBytes(string) (uint64, bool) { return 0, false }
