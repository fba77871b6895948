package manifest

import "errors"

// Errors of this package. Every error returned by Open, OpenFileList,
// Release.Entries, ParseUnverified, Canonicalize, Marshal, Verify and
// Validate wraps exactly one class below (ErrSchema also matches
// ErrMalformed; path errors also match tree.ErrUnsafePath or
// tree.ErrLinkEscape), so callers branch with errors.Is. The text after the
// class says what failed and what to do.
var (
	// ErrSignature: the signature file is missing, malformed, in the legacy
	// (non-prehashed) format, made by another key, or does not match the
	// bytes. The manifest must not be used: it was not published by the
	// holder of the trusted key (or was damaged in transit).
	ErrSignature = errors.New("manifest: signature check failed")
	// ErrExpired: the manifest's expiry time has passed, or its issue time
	// lies in the future (beyond ClockSkew). A mirror is serving a stale
	// copy, or the local clock is wrong.
	ErrExpired = errors.New("manifest: outside its validity period")
	// ErrRollback: the sequence number is lower than one already seen, or
	// equal with different content. Someone is replaying an older manifest,
	// or the publisher reused a sequence number.
	ErrRollback = errors.New("manifest: rollback refused")
	// ErrWrongApp: the manifest describes another application.
	ErrWrongApp = errors.New("manifest: wrong application")
	// ErrTooLarge: a document or signature is larger than its cap.
	ErrTooLarge = errors.New("manifest: too large")
	// ErrMalformed: the bytes are not a valid document of this format:
	// not canonical JSON, unknown or missing fields, bad values, or a
	// failed consistency check (see Manifest.Validate).
	ErrMalformed = errors.New("manifest: malformed")
	// ErrSchema: the schema version is not one this package knows. It
	// wraps ErrMalformed. A newer schema means this client is too old.
	ErrSchema = schemaError{}
	// ErrHashMismatch: a file-list document does not have the size or
	// SHA-256 that the signed manifest records for it, or a release index
	// not those its timestamp names (OpenIndex).
	ErrHashMismatch = errors.New("manifest: file list does not match its reference")
	// ErrNotFound: no release matches a lookup (Latest, Release).
	ErrNotFound = errors.New("manifest: no such release")
)

type schemaError struct{}

func (schemaError) Error() string { return "manifest: unsupported schema version" }
func (schemaError) Unwrap() error { return ErrMalformed }
