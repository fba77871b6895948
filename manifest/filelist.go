package manifest

import (
	"crypto/sha256"
	"fmt"

	"github.com/deltaup/deltaup/internal/tree"
)

// FileList is a file-list document: the entries of one release's tree, kept
// outside manifest.json when they are many (see InlineFilesMax). The signed
// manifest pins it by size and SHA-256 (Release.FileList), so it carries no
// signature of its own.
type FileList struct {
	Schema  int          // SchemaVersion
	Version string       // the release it describes
	Files   []tree.Entry // sorted by path, as Release.Files
}

// Validate checks the schema, the version syntax and the entries (as for
// inline Release.Files). Cost: linear in the entries.
func (fl *FileList) Validate() error {
	if fl.Schema != SchemaVersion {
		return fmt.Errorf("%w: file list schema %d, this package knows %d", ErrSchema, fl.Schema, SchemaVersion)
	}
	if _, err := parseVersion(fl.Version); err != nil {
		return fmt.Errorf("%w: file list: %v", ErrMalformed, err)
	}
	if len(fl.Files) == 0 {
		return fmt.Errorf("%w: file list of %s has no entries", ErrMalformed, fl.Version)
	}
	return validateEntries("file list "+fl.Version+": files", fl.Files)
}

func (fl *FileList) wire() *wireFileList {
	return &wireFileList{Files: toWireEntries(fl.Files), Schema: fl.Schema, Version: fl.Version}
}

// MarshalFileList validates fl and returns its canonical bytes (ErrTooLarge
// beyond MaxFileListSize). Publish them at some path P and reference them
// from the release with NewFileListRef(P, bytes), setting the release's
// TreeDigest to tree.Digest(fl.Files).
func MarshalFileList(fl *FileList) ([]byte, error) {
	if err := fl.Validate(); err != nil {
		return nil, err
	}
	return encodeJSON(fl.wire(), MaxFileListSize)
}

// NewFileListRef returns the reference to the file-list document doc
// published at path.
func NewFileListRef(path string, doc []byte) FileListRef {
	return FileListRef{Path: path, Size: int64(len(doc)), SHA256: sha256.Sum256(doc)}
}

// OpenFileList checks raw against ref, taken from a manifest that Open
// accepted: the size cap, then the exact size and SHA-256 (ErrTooLarge,
// ErrHashMismatch: the mirror served other bytes; fetch them again or from
// elsewhere), and only then parses strictly (canonical form, known fields,
// FileList.Validate; ErrMalformed). It does not check the tree digest or
// the version: Release.Entries does both.
func OpenFileList(raw []byte, ref FileListRef) (*FileList, error) {
	if ref.Size > MaxFileListSize || int64(len(raw)) > MaxFileListSize {
		return nil, fmt.Errorf("%w: file list %s: %d bytes (reference says %d), the cap is %d", ErrTooLarge, ref.Path, len(raw), ref.Size, MaxFileListSize)
	}
	if int64(len(raw)) != ref.Size {
		return nil, fmt.Errorf("%w: %s is %d bytes, the manifest says %d: download it again", ErrHashMismatch, ref.Path, len(raw), ref.Size)
	}
	if sum := sha256.Sum256(raw); sum != ref.SHA256 {
		return nil, fmt.Errorf("%w: %s has SHA-256 %x, the manifest says %x: download it again", ErrHashMismatch, ref.Path, sum, ref.SHA256)
	}
	return parseFileList(raw)
}

func parseFileList(raw []byte) (*FileList, error) {
	if err := checkCanonical(raw, MaxFileListSize); err != nil {
		return nil, fmt.Errorf("file list: %w", err)
	}
	if err := checkSchema(raw); err != nil {
		return nil, fmt.Errorf("file list: %w", err)
	}
	var w wireFileList
	if err := decodeStrict(raw, &w); err != nil {
		return nil, fmt.Errorf("file list: %w", err)
	}
	fl := &FileList{Schema: w.Schema, Version: w.Version}
	var err error
	if fl.Files, err = fromWireEntries("files", w.Files); err != nil {
		return nil, fmt.Errorf("file list: %w", err)
	}
	if err := fl.Validate(); err != nil {
		return nil, err
	}
	enc, err := encodeJSON(fl.wire(), MaxFileListSize)
	if err != nil {
		return nil, err
	}
	if err := sameBytes(raw, enc); err != nil {
		return nil, fmt.Errorf("file list: %w", err)
	}
	return fl, nil
}

// Entries returns the release's tree entries: the inline Files (fileList
// is then ignored and may be nil), or the entries of the file-list document
// fileList, checked with OpenFileList and then for the release's version and
// TreeDigest (ErrMalformed if either differs: the publisher referenced the
// wrong document).
func (r *Release) Entries(fileList []byte) ([]tree.Entry, error) {
	if r.FileList == nil {
		return r.Files, nil
	}
	fl, err := OpenFileList(fileList, *r.FileList)
	if err != nil {
		return nil, err
	}
	if fl.Version != r.Version {
		return nil, fmt.Errorf("%w: %s describes version %s, not %s: the repository is inconsistent, report it to the publisher", ErrMalformed, r.FileList.Path, fl.Version, r.Version)
	}
	if d := tree.Digest(fl.Files); d != r.TreeDigest {
		return nil, fmt.Errorf("%w: %s: tree digest %x, the manifest says %x: the repository is inconsistent, report it to the publisher", ErrMalformed, r.FileList.Path, d, r.TreeDigest)
	}
	return fl.Files, nil
}
