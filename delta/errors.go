package delta

import "errors"

// Error classes of the delta package. Every error that Apply returns for a
// bad patch wraps exactly one of them, so callers decide with errors.Is (for
// example, fall back to a full download on ErrCorrupt or ErrHashMismatch).
var (
	// ErrFormat: the input is not a patch this package reads (unknown magic
	// or format version, unknown method).
	ErrFormat = errors.New("delta: not a supported patch")
	// ErrCorrupt: the patch is malformed: bad header checksum, truncated or
	// trailing data, control values that overflow or point outside the old
	// or new file.
	ErrCorrupt = errors.New("delta: corrupt patch")
	// ErrTooLarge: a size in the patch exceeds the caller's cap.
	ErrTooLarge = errors.New("delta: patch exceeds size limit")
	// ErrOldMismatch: the patch was made against another old file (size or
	// SHA-256 differ).
	ErrOldMismatch = errors.New("delta: patch does not apply to this old file")
	// ErrHashMismatch: the rebuilt file's SHA-256 differs from the one the
	// patch carries.
	ErrHashMismatch = errors.New("delta: output hash mismatch")
)

// ErrNoSpace: the file system the new file (or tree) is written to has less
// free space than the size the patch declares. It is refused before the
// output is created; the error also wraps syscall.ENOSPC. Free space there,
// or write the output elsewhere.
var ErrNoSpace = errors.New("delta: not enough free disk space")
