//go:build windows

package delta

// syncDir is a no-op on Windows: NTFS journals the rename itself, and
// directories cannot be opened for FlushFileBuffers without extra privileges.
func syncDir(dir string) error { return nil }
