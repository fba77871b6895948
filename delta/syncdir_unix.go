//go:build !windows

package delta

import "os"

// syncDir fsyncs a directory so that a rename in it survives power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
