//go:build !linux

package delta

// mapFile reads the file (memory mapping with page dropping is only used on
// Linux); drop does nothing.
func mapFile(path string, limit int64) (b []byte, drop func(start, end int), unmap func(), err error) {
	b, err = readFileCapped(path, limit)
	return b, func(int, int) {}, func() {}, err
}
