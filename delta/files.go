package delta

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
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
// fsyncs the directory. On any error (including fill's, and a panic in
// fill) the temporary file is removed and path is left as it was.
func WriteFileAtomic(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	return writeFileAtomic(path, perm, func(f *os.File) error {
		bw := writerPool.Get().(*bufio.Writer)
		bw.Reset(f)
		defer func() {
			bw.Reset(nil) // drop f
			writerPool.Put(bw)
		}()
		if err := fill(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
}

// writerPool keeps WriteFileAtomic's 256 KiB buffers: small files (a
// journal saved at every step of a swap, state, signatures) would
// otherwise allocate and clear one each.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// writeFileAtomic is WriteFileAtomic with fill writing to the temporary
// file itself (empty, positioned at 0).
func writeFileAtomic(path string, perm os.FileMode, fill func(f *os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = fill(f); err != nil {
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
	renamed = true
	return syncDir(dir)
}

// checkSpace refuses to write a new file (or tree) of need bytes into dir
// when its file system has less free space (when it cannot tell, the check
// passes and a full disk is a write error).
func checkSpace(dir string, need int64, what string) error {
	if need <= 0 {
		return nil
	}
	free, ok := freeSpace(dir)
	if !ok || uint64(need) <= free {
		return nil
	}
	return fmt.Errorf("%w: the %s of %d bytes does not fit in the %d bytes free on the file system of %s (free space there or write the output elsewhere): %w",
		ErrNoSpace, what, need, free, dir, syscall.ENOSPC)
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
// failed apply leaves nothing at outPath, and no temporary file.
//
// Before it maps the old file or creates anything it reads the patch header
// and refuses a new size over opts.MaxNewSize (ErrTooLarge) or over the free
// space of outPath's file system (ErrNoSpace). The old file is memory-mapped
// on Linux (read into memory elsewhere); the new file is streamed to disk:
// see Apply for the memory it takes.
func ApplyFile(ctx context.Context, oldPath, patchPath, outPath string, opts *ApplyOptions) (PatchInfo, error) {
	var o ApplyOptions
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return PatchInfo{}, err
	}
	fi, err := os.Stat(oldPath)
	if err != nil {
		return PatchInfo{}, err
	}
	pf, err := os.Open(patchPath)
	if err != nil {
		return PatchInfo{}, err
	}
	defer pf.Close()
	br := bufio.NewReaderSize(pf, 256<<10)
	head, _ := br.Peek(headerSize)
	if n, known, err := declaredNewSize(head, &o); err != nil {
		return PatchInfo{NewSize: n}, err
	} else if known {
		if err := checkSpace(filepath.Dir(outPath), n, "new file"); err != nil {
			return PatchInfo{NewSize: n}, err
		}
	}
	old, _, unmap, err := mapFile(oldPath, MaxFileSize)
	if err != nil {
		return PatchInfo{}, err
	}
	defer unmap()
	var info PatchInfo
	err = writeFileAtomic(outPath, fi.Mode().Perm(), func(f *os.File) error {
		bw := bufio.NewWriterSize(f, 256<<10)
		var err error
		if info, err = applyPatch(ctx, old, br, output{w: bw, at: f}, &o); err != nil {
			return err
		}
		return bw.Flush()
	})
	return info, err
}

// declaredNewSize reads the new size from the first bytes of a patch and
// checks it against the cap, as Apply does; known is false when head is too
// short or malformed to tell (Apply then says why).
func declaredNewSize(head []byte, o *ApplyOptions) (n int64, known bool, err error) {
	switch {
	case len(head) >= headerSize && string(head[:4]) == nativeMagic:
		hd, err := parseHeader(head[:headerSize])
		if err != nil {
			return 0, false, err
		}
		n = hd.newSize
	case len(head) >= 32 && string(head[:8]) == bsdiffMagic:
		v, ok := offtin(head[24:])
		if !ok || v < 0 {
			return 0, false, nil
		}
		n = v
	default:
		return 0, false, nil
	}
	return n, true, o.checkNewSize(n)
}
