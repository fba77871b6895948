// Package tree describes a directory tree of an application version: its
// regular files, directories and symlinks, with the mode bits and SHA-256 of
// each file, in one canonical order. The release side (bundles, archives,
// manifests) and the client side (verifying an installed version) share it.
//
// Paths are relative, slash-separated, clean, and safe on every platform the
// updater targets (see CheckPath). Symlinks are kept only when their target
// stays inside the tree.
package tree

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Type is the kind of a tree entry.
type Type string

// Entry types.
const (
	File    Type = "file"
	Dir     Type = "dir"
	Symlink Type = "symlink"
)

// Entry is one node of a tree.
type Entry struct {
	Path   string      // relative, slash-separated, e.g. "bin/app"
	Type   Type        // File, Dir or Symlink
	Mode   fs.FileMode // permission bits only (0o777), files and dirs
	Size   int64       // files: size in bytes
	SHA256 [32]byte    // files: SHA-256 of the content (zero when not hashed)
	Target string      // symlinks: the link target as stored (relative)
}

// Hex returns the entry's SHA-256 in lowercase hex.
func (e Entry) Hex() string { return hex.EncodeToString(e.SHA256[:]) }

// Errors of this package; each error wraps one of them.
var (
	// ErrUnsafePath: a path is absolute, has ".." or empty elements, or a
	// name that is reserved or invalid on Windows.
	ErrUnsafePath = errors.New("tree: unsafe path")
	// ErrLinkEscape: a symlink points outside the tree (or is absolute).
	ErrLinkEscape = errors.New("tree: symlink escapes the tree")
	// ErrUnsupported: a device, socket, named pipe or other special file.
	ErrUnsupported = errors.New("tree: unsupported file type")
)

var windowsReserved = map[string]bool{
	"CON": true, "PRN": true, "AUX": true, "NUL": true, "CONIN$": true, "CONOUT$": true,
	"COM1": true, "COM2": true, "COM3": true, "COM4": true, "COM5": true, "COM6": true, "COM7": true, "COM8": true, "COM9": true,
	"LPT1": true, "LPT2": true, "LPT3": true, "LPT4": true, "LPT5": true, "LPT6": true, "LPT7": true, "LPT8": true, "LPT9": true,
}

// MaxPathLen caps the length of a relative path in bytes.
const MaxPathLen = 1024

// CheckPath reports whether p is a safe relative path: non-empty, at most
// MaxPathLen bytes, valid UTF-8 without control characters, slash-separated
// and clean (no "", ".", ".." elements, no leading or trailing slash), and
// every element valid on Windows too: none of <>:"\|?* , no trailing dot or
// space, no reserved device name (CON, NUL, COM1, ... with any extension),
// no `%` or `$` expansion markers are interpreted (they are allowed), no
// element in the form of an 8.3 short name (PROGRA~1, FOO~12.TXT), and no
// backslash.
func CheckPath(p string) error {
	if p == "" || len(p) > MaxPathLen {
		return fmt.Errorf("%w: %q: empty or longer than %d bytes", ErrUnsafePath, p, MaxPathLen)
	}
	if !validUTF8NoControl(p) {
		return fmt.Errorf("%w: %q: invalid UTF-8 or control character", ErrUnsafePath, p)
	}
	if strings.HasPrefix(p, "/") || (len(p) >= 2 && p[1] == ':') {
		return fmt.Errorf("%w: %q: absolute path", ErrUnsafePath, p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%w: %q: empty, '.' or '..' element", ErrUnsafePath, p)
		}
		if strings.ContainsAny(el, `<>:"\|?*`) {
			return fmt.Errorf("%w: %q: character not allowed on Windows in %q", ErrUnsafePath, p, el)
		}
		if strings.HasSuffix(el, ".") || strings.HasSuffix(el, " ") {
			return fmt.Errorf("%w: %q: element %q ends in a dot or space", ErrUnsafePath, p, el)
		}
		base := strings.ToUpper(el)
		if i := strings.IndexByte(base, '.'); i >= 0 {
			base = base[:i]
		}
		if windowsReserved[strings.TrimRight(base, " ")] {
			return fmt.Errorf("%w: %q: %q is a reserved device name on Windows", ErrUnsafePath, p, el)
		}
		if shortNameAlias(el) {
			return fmt.Errorf("%w: %q: %q has the form of a Windows 8.3 short name, which can alias another file's long name", ErrUnsafePath, p, el)
		}
	}
	return nil
}

// shortNameAlias reports whether el has the form of a DOS 8.3 short name
// with a numeric tail (PROGRA~1, FOO~12.TXT): on Windows (and other file
// systems that keep short names) such a name may refer to another entry of
// the same directory by its generated short name.
func shortNameAlias(el string) bool {
	base, ext := el, ""
	if i := strings.LastIndexByte(el, '.'); i >= 0 {
		base, ext = el[:i], el[i+1:]
	}
	if len(base) > 8 || len(ext) > 3 {
		return false
	}
	i := strings.LastIndexByte(base, '~')
	if i <= 0 || i == len(base)-1 {
		return false
	}
	for _, c := range base[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validUTF8NoControl(s string) bool {
	for _, r := range s {
		if r == 0xFFFD || r < 0x20 || r == 0x7F {
			return false
		}
	}
	return true
}

// CheckLink reports whether a symlink at linkPath with target stays inside
// the tree: the target must be relative and, resolved lexically against the
// link's directory, must not leave the root.
func CheckLink(linkPath, target string) error {
	if target == "" || strings.HasPrefix(target, "/") || strings.Contains(target, `\`) || (len(target) >= 2 && target[1] == ':') {
		return fmt.Errorf("%w: %s -> %q: absolute or empty target", ErrLinkEscape, linkPath, target)
	}
	joined := path.Join(path.Dir(linkPath), target)
	if joined == ".." || strings.HasPrefix(joined, "../") || joined == "." {
		return fmt.Errorf("%w: %s -> %q", ErrLinkEscape, linkPath, target)
	}
	return nil
}

// Modes says how Scan reports permission bits.
type Modes uint8

const (
	// ModesDefault means DefaultModes.
	ModesDefault Modes = iota
	// ModesExact: the permission bits as the file system reports them.
	ModesExact
	// ModesPortable: only what every supported OS keeps — files 0644, or
	// 0444 when not writable by the owner; directories 0755, or 0555. It
	// is how Windows sees any tree (it has a read-only attribute, no
	// permission bits), so trees for Windows are published with it.
	ModesPortable
)

// DefaultModes is the Modes of a zero ScanOptions: ModesPortable on Windows,
// ModesExact elsewhere. (A variable so that tests can run the Windows
// rules on other systems.)
var DefaultModes = defaultModes

// Resolve returns m, or DefaultModes for ModesDefault.
func (m Modes) Resolve() Modes {
	if m == ModesDefault {
		return DefaultModes
	}
	return m
}

// Perm maps the permission bits perm of an entry of type t as m reports
// them. Symlinks are always 0777.
func (m Modes) Perm(t Type, perm fs.FileMode) fs.FileMode {
	perm = perm.Perm()
	switch {
	case t == Symlink:
		return 0o777
	case m.Resolve() != ModesPortable:
		return perm
	case t == Dir && perm&0o200 != 0:
		return 0o755
	case t == Dir:
		return 0o555
	case perm&0o200 != 0:
		return 0o644
	default:
		return 0o444
	}
}

// NotPortable returns the first entry of es whose mode ModesPortable
// would report differently (say an executable file, 0755), or "" if none:
// a tree with such entries cannot be verified on Windows.
func NotPortable(es []Entry) string {
	for _, e := range es {
		if ModesPortable.Perm(e.Type, e.Mode) != e.Mode.Perm() {
			return fmt.Sprintf("%s (%s, mode %04o)", e.Path, e.Type, e.Mode.Perm())
		}
	}
	return ""
}

// ScanOptions tune Scan.
type ScanOptions struct {
	// Hash computes each file's SHA-256 (reads every byte).
	Hash bool
	// Modes says how permission bits are reported; the zero value means
	// DefaultModes.
	Modes Modes
	// Skip, when set, is called with each relative path; returning true
	// leaves the entry (and, for a directory, its contents) out.
	Skip func(rel string) bool
}

// Scan walks the tree at root and returns its entries sorted by path (the
// root itself is not an entry). It fails on unsafe names, names that
// collide on case-insensitive file systems, symlinks that escape the tree
// (also through other symlinks) and special files (see CheckEntries). Cost: one stat per entry, plus reading
// every file when opts.Hash is set.
func Scan(ctx context.Context, root string, opts ScanOptions) ([]Entry, error) {
	var out []Entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if opts.Skip != nil && opts.Skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if err := CheckPath(rel); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := Entry{Path: rel, Mode: info.Mode().Perm()}
		switch {
		case info.Mode().IsRegular():
			e.Type, e.Size = File, info.Size()
			if opts.Hash {
				if e.SHA256, err = HashFile(p); err != nil {
					return err
				}
			}
		case info.IsDir():
			e.Type = Dir
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t = filepath.ToSlash(t)
			if err := CheckLink(rel, t); err != nil {
				return err
			}
			e.Type, e.Target, e.Mode = Symlink, t, 0o777
		default:
			return fmt.Errorf("%w: %s (%v)", ErrUnsupported, rel, info.Mode().Type())
		}
		e.Mode = opts.Modes.Perm(e.Type, e.Mode)
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	Sort(out)
	if err := CheckEntries(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Sort orders entries by path, bytewise (the canonical order everywhere).
func Sort(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
}

// HashFile returns the SHA-256 of the file at p.
func HashFile(p string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("hashing %s: %w", p, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// Digest returns a SHA-256 over the canonical description of the entries
// (type, path, mode, size, hash or target, one line each, in path order):
// two trees with the same digest have the same files, bytes, modes and
// links.
func Digest(es []Entry) [32]byte {
	sorted := slices.Clone(es)
	Sort(sorted)
	h := sha256.New()
	for _, e := range sorted {
		switch e.Type {
		case File:
			fmt.Fprintf(h, "file %q %04o %d %x\n", e.Path, e.Mode, e.Size, e.SHA256)
		case Dir:
			fmt.Fprintf(h, "dir %q %04o\n", e.Path, e.Mode)
		case Symlink:
			fmt.Fprintf(h, "symlink %q %q\n", e.Path, e.Target)
		}
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

// ErrCollision: two entries have the same path, or paths that only differ
// in case or Unicode normalization (one file on Windows and macOS).
var ErrCollision = errors.New("tree: paths collide")

// CheckEntries checks a whole entry list as one tree: every path safe
// (CheckPath), no two paths equal under FoldKey, every symlink inside the
// tree lexically (CheckLink) and after following the tree's other symlinks
// (CheckLinkChains). The release side runs it on what it publishes, the
// client side on what it is about to write. Cost: linear in the entries
// plus the link resolution.
func CheckEntries(es []Entry) error {
	seen := make(map[string]string, len(es))
	links := map[string]string{}
	for _, e := range es {
		if err := CheckPath(e.Path); err != nil {
			return err
		}
		k := FoldKey(e.Path)
		if prev, ok := seen[k]; ok {
			return fmt.Errorf("%w: %q and %q", ErrCollision, prev, e.Path)
		}
		seen[k] = e.Path
		switch e.Type {
		case Symlink:
			if err := CheckLink(e.Path, e.Target); err != nil {
				return err
			}
			links[e.Path] = e.Target
		case File, Dir:
		default:
			return fmt.Errorf("%w: %s has type %q", ErrUnsupported, e.Path, e.Type)
		}
	}
	return CheckLinkChains(links)
}

// Inside reports whether p is dir or lies below it (lexically, after
// making both absolute and resolving symlinks where they exist).
func Inside(p, dir string) bool {
	abs := func(s string) string {
		a, err := filepath.Abs(s)
		if err != nil {
			return s
		}
		if r, err := filepath.EvalSymlinks(a); err == nil {
			return r
		}
		// p itself usually does not exist yet: resolve its directory.
		if r, err := filepath.EvalSymlinks(filepath.Dir(a)); err == nil {
			return filepath.Join(r, filepath.Base(a))
		}
		return a
	}
	rel, err := filepath.Rel(abs(dir), abs(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
