package delta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/deltaup/deltaup/internal/tree"
)

// BundleInfo describes an applied bundle.
type BundleInfo struct {
	BundleCounts
	NewSize    int64    // total size of the NEW files written
	NewDigest  [32]byte // tree.Digest of the tree written (verified)
	BundleSize int64    // bytes of bundle read
}

// treeRoot returns dir ready for tree.Scan (which does not follow a
// symlinked root), after checking it is a directory.
func treeRoot(dir string) (string, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if dir, err = filepath.EvalSymlinks(dir); err != nil {
			return "", err
		}
		if fi, err = os.Stat(dir); err != nil {
			return "", err
		}
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", dir)
	}
	return dir, nil
}

// scanTree scans and hashes the tree at root; problems with its contents
// (unsafe or colliding names, escaping links, special files) wrap class.
func scanTree(ctx context.Context, root, which string, class error, modes tree.Modes, skip func(string) bool) ([]tree.Entry, error) {
	es, err := tree.Scan(ctx, root, tree.ScanOptions{Hash: true, Modes: modes, Skip: skip})
	if err != nil {
		if class != nil && (errors.Is(err, tree.ErrUnsafePath) || errors.Is(err, tree.ErrLinkEscape) ||
			errors.Is(err, tree.ErrCollision) || errors.Is(err, tree.ErrUnsupported)) {
			return nil, fmt.Errorf("%w: %s tree: %w", class, which, err)
		}
		return nil, fmt.Errorf("%s tree: %w", which, err)
	}
	return es, nil
}

// ApplyBundle applies the bundle read from r to the tree at oldDir and
// builds the NEW tree in outDir, which must not exist: the OLD tree is never
// changed. Before it creates outDir it checks the bundle header against the
// caps and the OLD tree (scanned and hashed) against the bundle's OLD digest
// (ErrOldMismatch). It then streams the entries: directories and files are
// created (never through a symlink: files with O_EXCL inside directories it
// created), each file verified by size and SHA-256; symlinks and directory
// modes come last, after the trailer checksum. Finally it scans and hashes
// outDir and compares its digest with the bundle's NEW digest
// (ErrHashMismatch). On any error outDir is removed entirely.
//
// Errors wrap one of ErrFormat, ErrCorrupt, ErrTooLarge, ErrOldMismatch,
// ErrHashMismatch when the bundle or the OLD tree is at fault; an entry with
// an unsafe path or a symlink leaving the tree also wraps tree.ErrUnsafePath
// or tree.ErrLinkEscape (with ErrCorrupt). I/O errors are returned as they
// are.
//
// Before it creates outDir it also refuses a NEW tree larger than the free
// space of outDir's file system (ErrNoSpace).
//
// Memory: the listing (about path length + 100 bytes per entry) plus, per
// entry, the payload and what Apply needs besides; the OLD source of a
// patched file is memory-mapped on Linux (read into memory elsewhere), new
// files are streamed to disk.
func ApplyBundle(ctx context.Context, oldDir string, r io.Reader, outDir string, opts *BundleApplyOptions) (info BundleInfo, err error) {
	var o BundleApplyOptions
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return info, err
	}
	if outDir == "" {
		return info, errors.New("delta: empty output directory name")
	}
	if _, err := os.Lstat(outDir); err == nil {
		return info, fmt.Errorf("%s: %w (the new tree is built in a new directory)", outDir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return info, err
	}
	d, err := newBundleDecoder(r, &o)
	if err != nil {
		return info, err
	}
	oldRoot, err := treeRoot(oldDir)
	if err != nil {
		return info, err
	}
	oldEs, err := scanTree(ctx, oldRoot, "old", ErrOldMismatch, tree.ModesDefault, o.SkipOld)
	if err != nil {
		return info, err
	}
	if got := tree.Digest(oldEs); got != d.hdr.oldDigest {
		return info, fmt.Errorf("%w: old tree's digest %x… differs from the bundle's %x…", ErrOldMismatch, got[:8], d.hdr.oldDigest[:8])
	}
	if err := checkSpace(filepath.Dir(outDir), d.hdr.newSize, "new tree"); err != nil {
		return info, err
	}
	if err := os.Mkdir(outDir, 0o755); err != nil {
		return info, err
	}
	defer func() {
		if err != nil {
			removeTree(outDir)
		}
	}()
	a := &applier{ctx: ctx, o: &o, d: d, oldRoot: oldRoot, out: outDir, oldEs: oldEs,
		old: make(map[string]int, len(oldEs)), keep: make([]bool, len(oldEs)), buf: make([]byte, 256<<10)}
	d.old = make(map[string]tree.Entry, len(oldEs))
	for i, e := range oldEs {
		a.old[e.Path] = i
		d.old[e.Path] = e
	}
	for range d.hdr.entries {
		if err := ctx.Err(); err != nil {
			return info, err
		}
		e, err := d.next()
		if err != nil {
			return info, err
		}
		if err := a.apply(&e); err != nil {
			return info, err
		}
		info.add(e.Kind)
	}
	d.solid.apply = a.applySolid
	if err := d.finish(); err != nil {
		return info, err
	}
	if err := a.checkRemovals(); err != nil {
		return info, err
	}
	info.Removed = len(d.removed)
	if err := a.finishTree(); err != nil {
		return info, err
	}
	got, err := tree.Scan(ctx, outDir, tree.ScanOptions{Hash: true}) // DefaultModes, like the OLD scan
	if err != nil {
		return info, fmt.Errorf("verifying the new tree: %w", err)
	}
	info.NewDigest = tree.Digest(got)
	if info.NewDigest != d.hdr.newDigest {
		return info, fmt.Errorf("%w: rebuilt tree's digest %x… differs from the bundle's %x…", ErrHashMismatch, info.NewDigest[:8], d.hdr.newDigest[:8])
	}
	info.NewSize = d.total
	info.BundleSize = d.r.n
	return info, nil
}

// ApplyBundleFile is ApplyBundle reading the bundle at bundlePath.
func ApplyBundleFile(ctx context.Context, oldDir, bundlePath, outDir string, opts *BundleApplyOptions) (BundleInfo, error) {
	f, err := os.Open(bundlePath)
	if err != nil {
		return BundleInfo{}, err
	}
	defer f.Close()
	return ApplyBundle(ctx, oldDir, f, outDir, opts)
}

// removeTree removes a tree ApplyBundle made, first making its directories
// writable again (their final modes are set last and may forbid it).
func removeTree(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}

type applier struct {
	ctx     context.Context
	o       *BundleApplyOptions
	d       *bundleDecoder
	oldRoot string
	out     string
	oldEs   []tree.Entry
	old     map[string]int // OLD path -> index in oldEs
	keep    []bool         // OLD entries the NEW tree has at the same path with the same type
	dirs    []BundleEntry
	links   []BundleEntry
	solid   [2][]BundleEntry // files of the solid streams, written after the removal list
	// win keeps, when a second solid stream follows (version 3), the tree
	// window followed by the first stream's bytes: the second's window.
	win []byte
	// solidPaths: the paths of both streams' entries, in entry order (the
	// tree window's order).
	solidPaths []string
	buf        []byte
}

func (a *applier) dst(p string) string { return filepath.Join(a.out, filepath.FromSlash(p)) }

func (a *applier) apply(e *BundleEntry) error {
	if i, ok := a.old[e.Path]; ok && a.oldEs[i].Type == e.treeEntry().Type {
		a.keep[i] = true
	}
	switch e.Kind {
	case EntryDir:
		a.dirs = append(a.dirs, *e)
		return os.Mkdir(a.dst(e.Path), 0o700)
	case EntrySymlink:
		a.links = append(a.links, *e)
		return nil
	case EntrySolid:
		a.solid[0] = append(a.solid[0], *e)
		a.solidPaths = append(a.solidPaths, e.Path)
		return nil
	case EntrySolid2:
		a.solid[1] = append(a.solid[1], *e)
		a.solidPaths = append(a.solidPaths, e.Path)
		return nil
	case EntryUnchanged, EntryCopy:
		// The decoder took size and hash from the OLD entry.
		return a.writeFile(e, func(out output) error { return a.copyOld(e, out.w) })
	case EntryPatch:
		old, _, unmap, err := mapFile(filepath.Join(a.oldRoot, filepath.FromSlash(e.Source)), a.o.MaxFileSize)
		if err != nil {
			return err
		}
		defer unmap()
		return a.writeFile(e, func(out output) error { return a.applyPayload(e, old, out) })
	case EntryNew:
		if e.Size == 0 {
			return a.writeFile(e, func(output) error { return nil })
		}
		return a.writeFile(e, func(out output) error { return a.applyPayload(e, nil, out) })
	}
	return fmt.Errorf("%w: unknown entry kind %d", ErrCorrupt, e.Kind)
}

// writeFile creates the file of e (it must not exist: O_EXCL never follows a
// symlink), fills it (in order through a buffer, or at offsets: see
// output), sets its mode and syncs it.
func (a *applier) writeFile(e *BundleEntry, fill func(out output) error) error {
	f, err := os.OpenFile(a.dst(e.Path), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = fill(output{w: bw, at: f})
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Chmod(e.Mode)
	}
	if err == nil && !a.o.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyOld copies the OLD source of e to w, checking size and SHA-256 (the
// OLD tree may have changed since it was scanned).
func (a *applier) copyOld(e *BundleEntry, w io.Writer) error {
	f, err := os.Open(filepath.Join(a.oldRoot, filepath.FromSlash(e.Source)))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	var n int64
	lr := io.LimitReader(f, e.Size+1)
	for {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		k, rerr := lr.Read(a.buf)
		if k > 0 {
			h.Write(a.buf[:k])
			n += int64(k)
			if n <= e.Size {
				if _, err := w.Write(a.buf[:k]); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if n != e.Size || !bytes.Equal(h.Sum(nil), e.SHA256[:]) {
		return fmt.Errorf("%w: old file %q changed since it was checked", ErrOldMismatch, e.Source)
	}
	return nil
}

// applyPayload applies the entry's payload, a native patch, to old.
func (a *applier) applyPayload(e *BundleEntry, old []byte, out output) error {
	hdr, lr := a.d.payload()
	if hdr == nil {
		return fmt.Errorf("%w: entry %q: payload without a known source", ErrCorrupt, e.Path)
	}
	pi, err := applyPatch(a.ctx, old, io.MultiReader(bytes.NewReader(hdr), lr), out,
		&ApplyOptions{MaxNewSize: e.Size, MaxPatchSize: lr.N})
	if err != nil {
		return fmt.Errorf("entry %q: %w", e.Path, err)
	}
	if lr.N != 0 {
		return fmt.Errorf("%w: entry %q: payload longer than its patch", ErrCorrupt, e.Path)
	}
	if pi.NewSize != e.Size || pi.NewSum != e.SHA256 {
		return fmt.Errorf("%w: entry %q: patched file's size or SHA-256 differs from the entry's", ErrHashMismatch, e.Path)
	}
	return nil
}

// checkRemovals compares the bundle's removal list with the OLD entries the
// NEW tree does not keep.
func (a *applier) checkRemovals() error {
	var want []string
	for i, e := range a.oldEs {
		if !a.keep[i] {
			want = append(want, e.Path)
		}
	}
	if !slices.Equal(want, a.d.removed) {
		return fmt.Errorf("%w: removal list (%d paths) differs from the old paths the new tree drops (%d)", ErrCorrupt, len(a.d.removed), len(want))
	}
	return nil
}

// finishTree creates the symlinks, syncs the directories and sets their
// modes (children first).
func (a *applier) finishTree() error {
	for _, l := range a.links {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		if err := os.Symlink(filepath.FromSlash(l.Target), a.dst(l.Path)); err != nil {
			return err
		}
	}
	if !a.o.NoSync {
		for i := len(a.dirs) - 1; i >= 0; i-- {
			if err := syncDir(a.dst(a.dirs[i].Path)); err != nil {
				return err
			}
		}
		if err := syncDir(a.out); err != nil {
			return err
		}
		if err := syncDir(filepath.Dir(a.out)); err != nil {
			return err
		}
	}
	for i := len(a.dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(a.dst(a.dirs[i].Path), a.dirs[i].Mode); err != nil {
			return err
		}
	}
	return nil
}
