package apply

import (
	"context"
	"fmt"

	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// StatusReport describes the installed tree against the manifest.
type StatusReport struct {
	// Version is the installed version when Exact, else the closest
	// release (fewest differing entries; ties go to the newer version),
	// "" when no release could be compared.
	Version string
	Exact   bool
	// Modified, Missing and Extra list the paths that differ from
	// Version's tree: present in both but different (type, mode, size,
	// content or link target), only in the release, only on disk. Sorted;
	// all empty when Exact.
	Modified, Missing, Extra []string
	// Entries is the number of entries on disk.
	Entries int
}

// Status scans appDir and reports the installed version, or the closest
// release and what differs from it. fileLists returns the file-list
// document of a release whose entries are not inline (e.g. fetched from
// the repository); when it is nil such releases are not compared. Cost:
// reads every file of appDir once; when there is no exact match, one
// file list per such release.
func Status(ctx context.Context, appDir string, m *manifest.Manifest, fileLists func(*manifest.Release) ([]byte, error)) (*StatusReport, error) {
	es, _, err := scanApp(ctx, appDir)
	if err != nil {
		return nil, err
	}
	return statusOf(es, m, fileLists)
}

// statusOf is Status on the scanned entries es of the app directory.
func statusOf(es []tree.Entry, m *manifest.Manifest, fileLists func(*manifest.Release) ([]byte, error)) (*StatusReport, error) {
	var err error
	rep := &StatusReport{Entries: len(es)}
	if r := releaseByDigest(m, tree.Digest(es)); r != nil {
		rep.Version, rep.Exact = r.Version, true
		return rep, nil
	}
	best := -1
	for _, r := range m.Sorted("") {
		var doc []byte
		if r.FileList != nil {
			if fileLists == nil {
				continue
			}
			if doc, err = fileLists(r); err != nil {
				return nil, fmt.Errorf("apply: file list of %s: %w", r.Version, err)
			}
		}
		want, err := r.Entries(doc)
		if err != nil {
			return nil, err
		}
		mod, miss, extra := diffEntries(want, es)
		if n := len(mod) + len(miss) + len(extra); best < 0 || n <= best {
			best = n
			rep.Version, rep.Modified, rep.Missing, rep.Extra = r.Version, mod, miss, extra
		}
	}
	return rep, nil
}

// diffEntries compares two sorted entry lists.
func diffEntries(want, have []tree.Entry) (modified, missing, extra []string) {
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		switch {
		case j == len(have) || (i < len(want) && want[i].Path < have[j].Path):
			missing = append(missing, want[i].Path)
			i++
		case i == len(want) || have[j].Path < want[i].Path:
			extra = append(extra, have[j].Path)
			j++
		default:
			if !sameEntry(want[i], have[j]) {
				modified = append(modified, want[i].Path)
			}
			i++
			j++
		}
	}
	return modified, missing, extra
}

func sameEntry(a, b tree.Entry) bool {
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case tree.File:
		return a.Mode == b.Mode && a.Size == b.Size && a.SHA256 == b.SHA256
	case tree.Dir:
		return a.Mode == b.Mode
	case tree.Symlink:
		return a.Target == b.Target
	}
	return false
}
