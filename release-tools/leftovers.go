package releasetools

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/deltaup/deltaup/manifest"
)

// tempPrefix names the temporary directories a publish or verify makes in
// st.TempDir(): beside a local repository they carry its name.
func tempPrefix(st Store, what string) string {
	if ls, ok := st.(*localStore); ok {
		return "." + filepath.Base(filepath.Clean(ls.dir)) + what
	}
	return "deltaup" + what
}

// referencedPaths returns every repository path m's releases may refer to:
// archives, patches, file lists, frame indexes and their signatures, framed
// archives published beside a release's archive.
func referencedPaths(m *manifest.Manifest) map[string]bool {
	refs := map[string]bool{}
	if m == nil {
		return refs
	}
	for i := range m.Releases {
		r := &m.Releases[i]
		for _, a := range r.Archives {
			refs[a.Path] = true
		}
		for _, p := range r.Patches {
			refs[p.Path] = true
		}
		if r.FileList != nil {
			refs[r.FileList.Path] = true
		}
		if ip, ok := manifest.FrameIndexPath(r); ok {
			refs[ip] = true
			refs[ip+manifest.FrameIndexSigSuffix] = true
		}
		refs[FramedArchivePath(m.App, r.Version)] = true
	}
	return refs
}

// isArtifactPath reports whether rel lies in one of the artifact
// directories (archives, patches, file lists).
func isArtifactPath(rel string) bool {
	return inDir(rel, ArchivesDir) || inDir(rel, PatchesDir) || inDir(rel, FileListsDir)
}

// unreferenced lists the objects in the artifact directories that m does
// not refer to, with their total size.
func unreferenced(objs []Object, m *manifest.Manifest) ([]Object, int64) {
	refs := referencedPaths(m)
	var out []Object
	var n int64
	for _, o := range objs {
		if isArtifactPath(o.Path) && !refs[o.Path] {
			out = append(out, o)
			n += o.Size
		}
	}
	return out, n
}

// removeLeftovers deletes what an interrupted publish or prune left in the
// artifact directories of a bucket: objects the live manifest cur does not
// refer to (no client can reach them). It runs under the publish lock,
// before anything new is written. A local directory keeps them (Verify
// lists them as orphans; they are overwritten when the same version is
// published again).
func removeLeftovers(ctx context.Context, st Store, cur *manifest.Manifest, logf func(string, ...any)) error {
	if _, ok := st.(*localStore); ok {
		return nil
	}
	objs, err := st.List(ctx)
	if err != nil {
		return err
	}
	left, _ := unreferenced(objs, cur)
	for _, o := range left {
		if err := st.Delete(ctx, o.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("releasetools: removing %s, left by an interrupted publish: %w", o.Path, err)
		}
		logf("removed %s (%d bytes), left by an interrupted publish", o.Path, o.Size)
	}
	return nil
}

// isLeaseStray reports whether a top-level name is the lease directory of
// a repository that is a whole bucket.
func isLeaseStray(st Store, name string) bool {
	bs, ok := st.(*blobStore)
	return ok && bs.prefix == "" && strings.TrimSuffix(name, "/") == LeaseDir
}
