package apply

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// ArtifactFetcher downloads one artifact, verified against its size and
// SHA-256, to dest (the Downloader does it over HTTP, resumably).
type ArtifactFetcher interface {
	Fetch(ctx context.Context, art manifest.Artifact, dest string) error
}

// StageResult says how the target version was built.
type StageResult struct {
	Dir        string   // the complete, verified target tree (inside the backup directory)
	Route      string   // "patches", "repair" (a repair, then patches) or "archive"
	Fallback   string   // why the archive was used after a patch or repair route failed ("" if not)
	Downloaded []string // repository paths fetched (a byte range as PATH#bytes=FIRST-LAST)
	// Repaired lists the files of the installed release a repair route
	// rebuilt before patching, and Repair says it in a sentence
	// ("repaired 1 modified file (lib/big.bin) from 1.1.0's archive:
	// 3.1 MB in 1 frame"); both empty for other routes.
	Repaired []RepairedFile
	Repair   string
}

// Directories inside the backup directory.
const (
	downloadsDir = "downloads"
	stagingDir   = "staged"
)

// Stage builds version to of the app in the backup directory: hop by hop
// along the route's patches, starting from the app directory, each hop into
// a fresh directory (the previous one is removed); or, for a repair route,
// first rebuilding the installed release from the app directory and the
// frames of its archive that hold the damaged files (f must then be a
// RangeFetcher; see Repair); or by extracting the
// target's full archive. Every artifact is downloaded and verified before it
// is opened, every hop verifies its whole tree, and the result is checked
// against the target's signed file list. When a patch or repair route fails for any
// reason (a locally modified file, a bad patch, a damaged frame) it falls back to the full
// archive and says why, except when the local disk is full or read-only
// (ErrLocalIO: the archive would need more room still). The app directory
// is only read, and of it only the paths owned reports as installed by a
// release (nil: every path): the user's own files are not part of the old
// tree a patch applies to.
func Stage(ctx context.Context, appDir, backupDir string, m *manifest.Manifest, route *Route, target []tree.Entry, owned func(string) bool, f ArtifactFetcher) (*StageResult, error) {
	to, err := m.Release(route.To)
	if err != nil {
		return nil, err
	}
	res := &StageResult{}
	var build func() (string, error)
	kind := "patches"
	switch {
	case route.usesRepair():
		kind, build = "repair", func() (string, error) { return stageRepair(ctx, appDir, backupDir, route, f, res) }
	case route.usesPatches():
		build = func() (string, error) { return stagePatches(ctx, appDir, backupDir, route, owned, f, res) }
	}
	if build != nil {
		dir, err := build()
		if err == nil {
			if err = checkTree(ctx, dir, to.TreeDigest); err == nil {
				res.Dir, res.Route = dir, kind
				return res, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrLocalIO) || isDiskFull(err) || deniedInside(err, backupDir) {
			// The archive needs more room still: stop, keep the downloads.
			return nil, localIO(err, backupDir)
		}
		res.Fallback, res.Repaired, res.Repair = err.Error(), nil, ""
	}
	dir, err := stageArchive(ctx, backupDir, to, target, f, res)
	if err != nil {
		return nil, localIO(err, backupDir)
	}
	res.Dir, res.Route = dir, "archive"
	return res, nil
}

func (r *Route) usesPatches() bool {
	return len(r.Steps) > 0 && r.Steps[0].Kind == StepPatch
}

func (r *Route) usesRepair() bool {
	return len(r.Steps) > 0 && r.Steps[0].Kind == StepRepair && r.Steps[0].Repair != nil
}

// download fetches art into the backup directory's download area.
func download(ctx context.Context, backupDir string, art manifest.Artifact, f ArtifactFetcher, res *StageResult) (string, error) {
	dest := filepath.Join(backupDir, downloadsDir, path.Base(art.Path))
	if err := realDirFS(OSFS{}, filepath.Dir(dest)); err != nil {
		return "", err
	}
	if err := f.Fetch(ctx, art, dest); err != nil {
		if !strings.Contains(err.Error(), art.Path) { // the Downloader's errors name it
			err = fmt.Errorf("downloading %s: %w", art.Path, err)
		}
		return "", err
	}
	res.Downloaded = append(res.Downloaded, art.Path)
	return dest, nil
}

func stagePatches(ctx context.Context, appDir, backupDir string, route *Route, owned func(string) bool, f ArtifactFetcher, res *StageResult) (string, error) {
	src := appDir
	var opts *delta.BundleApplyOptions
	if owned != nil {
		opts = &delta.BundleApplyOptions{SkipOld: func(rel string) bool { return !owned(rel) }}
	}
	for i, st := range route.Steps {
		if st.Kind != StepPatch {
			return "", fmt.Errorf("apply: route mixes patches and archives at hop %d", i)
		}
		p, err := download(ctx, backupDir, st.Artifact, f, res)
		if err != nil {
			return "", err
		}
		out := filepath.Join(backupDir, stagingDir, st.To)
		if err := realDirFS(OSFS{}, filepath.Dir(out)); err != nil {
			return "", err
		}
		if err := os.RemoveAll(out); err != nil {
			return "", err
		}
		if _, err := delta.ApplyBundleFile(ctx, src, p, out, opts); err != nil {
			return "", fmt.Errorf("patch %s -> %s: %w", st.From, st.To, err)
		}
		if src != appDir {
			os.RemoveAll(src)
		}
		src, opts = out, nil
	}
	return src, nil
}

func stageArchive(ctx context.Context, backupDir string, to *manifest.Release, target []tree.Entry, f ArtifactFetcher, res *StageResult) (string, error) {
	var arch *manifest.Archive
	for i := range to.Archives {
		if arch == nil || to.Archives[i].Format == manifest.FormatTarZst {
			arch = &to.Archives[i]
		}
	}
	if arch == nil {
		return "", fmt.Errorf("apply: release %s has no archive", to.Version)
	}
	p, err := download(ctx, backupDir, arch.Artifact, f, res)
	if err != nil {
		return "", err
	}
	format, err := fallback.ParseFormat(arch.Format)
	if err != nil {
		return "", err
	}
	out := filepath.Join(backupDir, stagingDir, to.Version)
	if err := realDirFS(OSFS{}, filepath.Dir(out)); err != nil {
		return "", err
	}
	if err := os.RemoveAll(out); err != nil {
		return "", err
	}
	fh, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	if _, err := fallback.Extract(ctx, fh, format, out, &fallback.ExtractOptions{Expected: target, Sync: true}); err != nil {
		return "", fmt.Errorf("extracting %s: %w", arch.Path, err)
	}
	if err := checkTree(ctx, out, to.TreeDigest); err != nil {
		os.RemoveAll(out)
		return "", err
	}
	return out, nil
}

// ErrTreeMismatch: a staged tree is not the signed one.
var ErrTreeMismatch = errors.New("apply: staged tree differs from the signed file list")

func checkTree(ctx context.Context, dir string, want [32]byte) error {
	es, err := tree.Scan(ctx, dir, tree.ScanOptions{Hash: true})
	if err != nil {
		return err
	}
	if tree.Digest(es) != want {
		return fmt.Errorf("%w (%s)", ErrTreeMismatch, dir)
	}
	return nil
}
