//go:build !windows

package fallback

import "os"

// syncDir fsyncs an open directory, making the names created in it durable.
func syncDir(d *os.File) error { return d.Sync() }
