package delta

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// readFileCapped reads a whole file, refusing one over limit bytes.
func readFileCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrTooLarge, path, fi.Size(), limit)
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

// WriteFileAtomic creates path with the bytes fill writes: it writes a
// temporary file in the same directory, fsyncs it, renames it over path and
// fsyncs the directory. On any error (including fill's) the temporary file is
// removed and path is left as it was.
func WriteFileAtomic(path string, perm os.FileMode, fill func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 256<<10)
	if err = fill(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// DiffFile diffs the files oldPath and newPath and writes the patch to
// patchPath atomically (see WriteFileAtomic).
func DiffFile(ctx context.Context, oldPath, newPath, patchPath string, opts *DiffOptions) (DiffStats, error) {
	old, err := readFileCapped(oldPath, MaxFileSize)
	if err != nil {
		return DiffStats{}, err
	}
	newb, drop, unmap, err := mapFile(newPath, MaxFileSize)
	if err != nil {
		return DiffStats{}, err
	}
	defer unmap()
	var st DiffStats
	err = WriteFileAtomic(patchPath, 0o644, func(w io.Writer) error {
		var err error
		st, err = diff(ctx, old, newb, w, opts, drop)
		return err
	})
	return st, err
}

// ApplyFile applies the patch at patchPath to the file at oldPath and writes
// the result to outPath atomically, with the old file's permission bits. The
// output is verified (hash, size) before it is renamed into place, so a
// failed apply leaves nothing at outPath.
func ApplyFile(ctx context.Context, oldPath, patchPath, outPath string, opts *ApplyOptions) (PatchInfo, error) {
	fi, err := os.Stat(oldPath)
	if err != nil {
		return PatchInfo{}, err
	}
	old, err := readFileCapped(oldPath, MaxFileSize)
	if err != nil {
		return PatchInfo{}, err
	}
	pf, err := os.Open(patchPath)
	if err != nil {
		return PatchInfo{}, err
	}
	defer pf.Close()
	var info PatchInfo
	err = WriteFileAtomic(outPath, fi.Mode().Perm(), func(w io.Writer) error {
		var err error
		info, err = Apply(ctx, old, bufio.NewReaderSize(pf, 256<<10), w, opts)
		return err
	})
	return info, err
}
