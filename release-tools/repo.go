// Package releasetools is the release side of deltaup: it publishes
// versions of an application into a repository directory that any static
// HTTP server, CDN or object store can serve, and verifies such a
// repository end to end.
//
// Repository layout (docs/FORMAT.md, "Repository layout"):
//
//	manifest.json                     signed index (canonical JSON)
//	manifest.json.minisig             its minisign signature
//	manifests/SEQ.json(.minisig)      every manifest ever published, by sequence
//	archives/APP-VERSION.tar.zst      full archive of each version (and .tar.gz)
//	patches/APP-FROM-to-TO.dupb       directory bundle from FROM to TO
//	filelists/APP-VERSION.files.json  file list of a large release
//
// Nothing else belongs inside: a static host serves every file there.
// Publish locks the repository with REPO.deltaup-lock beside it (LockPath)
// and extracts older trees beside it too, never inside.
//
// Publishing writes every new artifact under a new name first, then the
// manifest history entry, then the root signature, then the root manifest,
// each with write-temp, fsync, rename, fsync-dir. A crash at any point leaves
// the previous manifest.json valid, or the new one whose signature and
// history copy are already in place; the next Publish or Verify finishes an
// interrupted switch (Recover). Clients that meet a root pair that does not
// verify fetch manifests/SEQ.json named by the signature's trusted comment.
package releasetools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/deltaup/deltaup/manifest"
)

// Directory and file names inside a repository.
const (
	ArchivesDir  = "archives"
	PatchesDir   = "patches"
	FileListsDir = "filelists"
	HistoryDir   = "manifests"
	// LockSuffix names the publish lock beside the repository directory:
	// REPO.deltaup-lock (LockPath).
	LockSuffix = ".deltaup-lock"
	// LegacyLockName is the lock file older versions kept inside the
	// repository, where it was served: Publish removes it, Verify warns
	// about it.
	LegacyLockName = ".deltaup-publish.lock"
)

// Errors of this package, matchable with errors.Is.
var (
	// ErrVersionExists: the version is published already with another tree.
	ErrVersionExists = errors.New("releasetools: version already published with different contents")
	// ErrRepo: the repository is not in a state this package can work on
	// (another app's manifest, a signature that does not verify, another
	// publish running).
	ErrRepo = errors.New("releasetools: repository problem")
	// ErrOlder: the version is lower than the newest release of its
	// channel, and PublishOptions.AllowOlder is not set.
	ErrOlder = errors.New("releasetools: older version")
)

// LockPath returns the file that Publish locks while it writes into repo:
// REPO.deltaup-lock in the directory that holds repo (symbolic links in
// repo resolved, so every path to one repository finds the same lock).
// It lies outside the repository because a static host serves everything
// inside. repo must exist.
func LockPath(repo string) (string, error) {
	dir, err := filepath.EvalSymlinks(repo)
	if err != nil {
		return "", err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", err
	}
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	if parent == dir {
		return "", fmt.Errorf("%w: %s is the root of a file system: the lock goes beside the repository, so make the repository a directory below it", ErrRepo, repo)
	}
	return filepath.Join(parent, base+LockSuffix), nil
}

// ArchivePath is the repository path of a version's full archive.
func ArchivePath(app, version, format string) string {
	return path.Join(ArchivesDir, app+"-"+version+"."+format)
}

// PatchPath is the repository path of the bundle from version from to to.
func PatchPath(app, from, to string) string {
	return path.Join(PatchesDir, app+"-"+from+"-to-"+to+".dupb")
}

// FileListPath is the repository path of a version's file-list document.
func FileListPath(app, version string) string {
	return path.Join(FileListsDir, app+"-"+version+".files.json")
}

func historyPath(seq uint64) string {
	return path.Join(HistoryDir, strconv.FormatUint(seq, 10)+".json")
}

var seqComment = regexp.MustCompile(`(?:^| )sequence:([0-9]+)(?: |$)`)

// sequenceOf reads the sequence number from a signature's trusted comment.
func sequenceOf(comment string) (uint64, bool) {
	m := seqComment.FindStringSubmatch(comment)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	return n, err == nil
}

// writeFile writes b to repo/rel atomically through repo's store (a
// directory: temp, fsync, rename, fsync directory, creating parent
// directories; a bucket: one upload, with CacheControlFor(rel)).
func writeFile(repo, rel string, b []byte) error {
	st, ctx, err := storeOf(repo)
	if err != nil {
		return err
	}
	return st.Put(ctx, rel, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// readFile reads repo/rel, refusing more than limit bytes; a missing file
// gives an error matching fs.ErrNotExist.
func readFile(repo, rel string, limit int64) ([]byte, error) {
	st, ctx, err := storeOf(repo)
	if err != nil {
		return nil, err
	}
	return st.Get(ctx, rel, limit)
}

// loaded is the repository's current manifest, verified.
type loaded struct {
	m   *manifest.Manifest // nil for an empty repository
	raw []byte
}

// loadManifest reads and verifies the root manifest (expired ones are
// accepted: the publisher re-signs). It first completes an interrupted
// publish (Recover).
func loadManifest(repo string, pub manifest.PublicKey, app string) (loaded, error) {
	if _, err := Recover(repo, pub); err != nil {
		return loaded{}, err
	}
	return readManifest(repo, pub, app)
}

// readManifest reads and verifies the root manifest, changing nothing.
func readManifest(repo string, pub manifest.PublicKey, app string) (loaded, error) {
	raw, err := readFile(repo, manifest.ManifestName, manifest.MaxManifestSize)
	if errors.Is(err, os.ErrNotExist) {
		return loaded{}, nil
	}
	if err != nil {
		return loaded{}, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	sig, err := readFile(repo, manifest.SignatureName, manifest.MaxSignatureSize)
	if err != nil {
		return loaded{}, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	if _, err := manifest.Verify(pub, raw, sig); err != nil {
		return loaded{}, fmt.Errorf("%w: %s does not verify with this key: %v", ErrRepo, manifest.ManifestName, err)
	}
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		return loaded{}, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	if app != "" && m.App != app {
		return loaded{}, fmt.Errorf("%w: the repository holds app %q, not %q", ErrRepo, m.App, app)
	}
	return loaded{m: m, raw: raw}, nil
}

// Recover completes a publish that stopped between writing the root
// signature and the root manifest: when manifest.json.minisig names a
// sequence whose history copy verifies with it but manifest.json holds other
// bytes, the history copy is installed as manifest.json. It reports whether
// it changed anything. A root pair that verifies is left alone.
func Recover(repo string, pub manifest.PublicKey) (bool, error) {
	_, done, err := useStore(context.Background(), repo)
	if err != nil {
		return false, err
	}
	defer done()
	sig, err := readFile(repo, manifest.SignatureName, manifest.MaxSignatureSize)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	raw, err := readFile(repo, manifest.ManifestName, manifest.MaxManifestSize)
	if err == nil {
		if _, verr := manifest.Verify(pub, raw, sig); verr == nil {
			return false, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	comment, err := trustedCommentOf(sig)
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrRepo, manifest.SignatureName, err)
	}
	seq, ok := sequenceOf(comment)
	if !ok {
		return false, fmt.Errorf("%w: %s has no sequence in its trusted comment %q", ErrRepo, manifest.SignatureName, comment)
	}
	hist, err := readFile(repo, historyPath(seq), manifest.MaxManifestSize)
	if err != nil {
		return false, fmt.Errorf("%w: cannot recover: %v", ErrRepo, err)
	}
	if _, err := manifest.Verify(pub, hist, sig); err != nil {
		return false, fmt.Errorf("%w: cannot recover: %s does not match %s: %v", ErrRepo, historyPath(seq), manifest.SignatureName, err)
	}
	if err := writeFile(repo, manifest.ManifestName, hist); err != nil {
		return false, err
	}
	return true, nil
}

// trustedCommentOf returns the trusted comment of a signature file,
// unverified: Recover uses it only to find the history copy, which it then
// verifies against the same signature before acting on it.
func trustedCommentOf(sig []byte) (string, error) {
	for _, l := range strings.Split(string(sig), "\n") {
		if c, ok := strings.CutPrefix(strings.TrimRight(l, "\r"), "trusted comment: "); ok {
			return c, nil
		}
	}
	return "", errors.New("no trusted comment")
}

// publishManifest writes m's bytes and signature: history copy, root
// signature, root manifest, in that order.
//
// On a bucket the lease is checked first (Store.Fence): a publisher whose
// lease was taken over makes nothing live.
func publishManifest(repo string, raw, sig []byte, seq uint64) error {
	st, ctx, err := storeOf(repo)
	if err != nil {
		return err
	}
	if err := st.Fence(ctx); err != nil {
		return err
	}
	if err := writeFile(repo, historyPath(seq), raw); err != nil {
		return err
	}
	if err := writeFile(repo, historyPath(seq)+".minisig", sig); err != nil {
		return err
	}
	if err := writeFile(repo, manifest.SignatureName, sig); err != nil {
		return err
	}
	return writeFile(repo, manifest.ManifestName, raw)
}
