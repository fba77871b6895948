//go:build linux || darwin || freebsd

package delta

import "syscall"

// freeSpace returns the bytes an unprivileged user may still write on the
// file system holding dir; ok is false when it cannot tell.
func freeSpace(dir string) (n uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
