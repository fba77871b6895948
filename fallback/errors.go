package fallback

import "errors"

// Error classes of Extract. Every error Extract returns for a bad archive
// wraps exactly one of them (plus, where it applies, the tree package's
// class), so callers decide with errors.Is. Errors of the source reader, of
// the file system at dest and of the context are returned wrapped as they
// are, without a class.
var (
	// ErrUnsafeEntry: an entry name is absolute, has "..", ".", empty or
	// Windows-unsafe elements, an element longer than 255 bytes, control
	// characters (also wraps tree.ErrUnsafePath); or the entry's parent in
	// the archive is a file or a symlink (the "link, then a file through it"
	// attack).
	ErrUnsafeEntry = errors.New("fallback: unsafe archive entry")
	// ErrLinkEscape: a symlink is absolute or resolves outside the tree,
	// lexically or by following other symlinks of the archive, or the
	// archive's symlinks form a loop or a chain deeper than 40 (also wraps
	// tree.ErrLinkEscape).
	ErrLinkEscape = errors.New("fallback: symlink escapes the tree")
	// ErrDuplicate: two entries have the same path, or paths that are the
	// same on a case-insensitive or Unicode-normalizing file system.
	ErrDuplicate = errors.New("fallback: duplicate archive entry")
	// ErrUnsupportedEntry: a hard link, device, FIFO, sparse file, PAX
	// global header or any entry type other than regular file, directory
	// and symlink (also wraps tree.ErrUnsupported).
	ErrUnsupportedEntry = errors.New("fallback: unsupported archive entry")
	// ErrLimit: the archive exceeds a cap: MaxFiles, MaxFileSize,
	// MaxTotalSize, the metadata budget, or the zstd window cap.
	ErrLimit = errors.New("fallback: archive exceeds a limit")
	// ErrCorrupt: the archive is malformed: bad or truncated compressed
	// stream, bad tar header, missing end-of-archive marker, non-zero or
	// excess trailing data, an entry before its parent directory.
	ErrCorrupt = errors.New("fallback: corrupt archive")
	// ErrMismatch: the archive differs from ExtractOptions.Expected: an
	// entry not in it, a different type, size, mode, target or SHA-256, or
	// an expected entry missing from the archive.
	ErrMismatch = errors.New("fallback: archive does not match the expected entries")
)
