//go:build linux

package delta

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the regular file at path read-only (at most limit bytes) and
// returns its bytes, a function that drops the pages of a range from this
// process's memory (they stay in the page cache; touching them again reads
// them back), and a function that unmaps it. DiffFile maps the new file
// this way so that, while the suffix array of the old file is alive, only
// the part of the new file being scanned is resident.
func mapFile(path string, limit int64) (b []byte, drop func(start, end int), unmap func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, nil, nil, fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrTooLarge, path, fi.Size(), limit)
	}
	if fi.Size() == 0 {
		return []byte{}, func(int, int) {}, func() {}, nil
	}
	b, err = syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		// Some file systems cannot map: read it instead.
		b, err = readFileCapped(path, limit)
		return b, func(int, int) {}, func() {}, err
	}
	page := os.Getpagesize()
	drop = func(start, end int) {
		s := (start + page - 1) / page * page
		e := end / page * page
		if e > s {
			syscall.Madvise(b[s:e], syscall.MADV_DONTNEED)
		}
	}
	return b, drop, func() { syscall.Munmap(b) }, nil
}
