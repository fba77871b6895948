package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// entryKind is the type of one tree entry.
type entryKind int

// Entry kinds. Anything that is not a regular file, directory or symlink
// (devices, sockets, FIFOs) is kindOther.
const (
	kindFile entryKind = iota
	kindDir
	kindSymlink
	kindOther
)

// String names the kind for difference reports.
func (k entryKind) String() string {
	switch k {
	case kindFile:
		return "file"
	case kindDir:
		return "dir"
	case kindSymlink:
		return "symlink"
	default:
		return "other"
	}
}

// treeEntry describes one path below a tree's root.
type treeEntry struct {
	Kind   entryKind
	Mode   fs.FileMode // permission bits (files and directories)
	Size   int64       // regular files only
	Sum    [sha256.Size]byte
	Target string // symlinks only
}

// treeIndex maps slash-separated paths relative to a tree's root (the root
// itself excluded) to their entries.
type treeIndex map[string]treeEntry

// scanTree indexes every entry below root, hashing regular files. Symlinks
// are recorded, not followed.
func scanTree(root string) (treeIndex, error) {
	idx := treeIndex{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{Mode: info.Mode().Perm()}
		switch {
		case info.Mode().IsRegular():
			e.Kind = kindFile
			e.Size = info.Size()
			if e.Sum, err = fileSHA256(p); err != nil {
				return err
			}
		case info.IsDir():
			e.Kind = kindDir
		case info.Mode()&fs.ModeSymlink != 0:
			e.Kind = kindSymlink
			e.Mode = 0 // symlink permissions are meaningless on most systems
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			e.Kind = kindOther
		}
		idx[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return idx, nil
}

// fileStats returns the number of regular files and their total size.
func (t treeIndex) fileStats() (files int, bytes int64) {
	for _, e := range t {
		if e.Kind == kindFile {
			files++
			bytes += e.Size
		}
	}
	return files, bytes
}

// sortedPaths returns the index's paths in lexical order.
func (t treeIndex) sortedPaths() []string {
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// treeDiff classifies the regular files of two trees by path.
type treeDiff struct {
	Unchanged []string // regular file at the same path in both, same bytes
	Changed   []string // regular file at the same path in both, other bytes
	Added     []string // regular file in new with no regular file at its path in old
	Removed   []string // regular file in old with no regular file at its path in new
}

// classifyTrees compares old and new by path; each list is sorted. A mode
// change alone leaves a file Unchanged (its bytes need no delta).
func classifyTrees(old, new treeIndex) treeDiff {
	var d treeDiff
	for _, p := range new.sortedPaths() {
		n := new[p]
		if n.Kind != kindFile {
			continue
		}
		o, ok := old[p]
		switch {
		case !ok || o.Kind != kindFile:
			d.Added = append(d.Added, p)
		case o.Sum == n.Sum && o.Size == n.Size:
			d.Unchanged = append(d.Unchanged, p)
		default:
			d.Changed = append(d.Changed, p)
		}
	}
	for _, p := range old.sortedPaths() {
		if old[p].Kind != kindFile {
			continue
		}
		if n, ok := new[p]; !ok || n.Kind != kindFile {
			d.Removed = append(d.Removed, p)
		}
	}
	return d
}

// compareTrees lists how got differs from want: missing and unexpected
// paths, kind changes, file contents, file and directory permissions, and
// symlink targets. An empty result means the trees are identical.
func compareTrees(want, got treeIndex) []string {
	var diffs []string
	for _, p := range want.sortedPaths() {
		w := want[p]
		g, ok := got[p]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: missing", p))
			continue
		}
		if g.Kind != w.Kind {
			diffs = append(diffs, fmt.Sprintf("%s: %s, want %s", p, g.Kind, w.Kind))
			continue
		}
		switch w.Kind {
		case kindFile:
			if g.Size != w.Size || g.Sum != w.Sum {
				diffs = append(diffs, fmt.Sprintf("%s: content differs (%d bytes, want %d)", p, g.Size, w.Size))
			}
		case kindSymlink:
			if g.Target != w.Target {
				diffs = append(diffs, fmt.Sprintf("%s: symlink to %q, want %q", p, g.Target, w.Target))
			}
		}
		if (w.Kind == kindFile || w.Kind == kindDir) && g.Mode != w.Mode {
			diffs = append(diffs, fmt.Sprintf("%s: mode %04o, want %04o", p, uint32(g.Mode), uint32(w.Mode)))
		}
	}
	for _, p := range got.sortedPaths() {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: unexpected %s", p, got[p].Kind))
		}
	}
	return diffs
}

// summarizeDiffs joins the first max differences, noting how many more
// there are.
func summarizeDiffs(diffs []string, max int) string {
	if len(diffs) <= max {
		return strings.Join(diffs, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(diffs[:max], "; "), len(diffs)-max)
}

// copyTree copies the tree at src to dst (which must not exist), keeping
// permissions and symlinks.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			// Set after creation so that the umask does not interfere;
			// read-only directories would need a second pass, which
			// benchmark repositories do not have.
			return os.Chmod(target, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: cannot copy %s", p, info.Mode().Type())
		}
	})
}

// copyFile copies one regular file, creating dst with permissions perm.
func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}
