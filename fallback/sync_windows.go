//go:build windows

package fallback

import "os"

// syncDir is a no-op on Windows: NTFS journals directory changes itself,
// and FlushFileBuffers on a directory handle needs write access to it.
func syncDir(d *os.File) error { return nil }
