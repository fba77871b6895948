package apply

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// A repair route. When the app directory is no release but close to one,
// R (CheckResult.Closest: a few of R's files modified or missing, maybe
// files of the user's besides), the check prices "rebuild R, then patch
// R→target": the files of R that are intact come from the app directory,
// the damaged ones from the frames of R's framed archive that hold them
// (byte ranges, each checked against R's signed frame index before it is
// decompressed, each file against R's file list), and takes it when it
// costs fewer bytes than the target's full archive.

// Repair is what a repair step rebuilds and fetches.
type Repair struct {
	Version string            // the release rebuilt (the step's To)
	Archive manifest.Artifact // its framed archive, the frames' source
	// Frames are the frames fetched, in archive order: byte ranges of
	// Archive with their SHA-256 and entries (a FrameSpan's First indexes
	// Entries).
	Frames []manifest.FrameSpan
	// Files are the release's files that differ on disk, and why.
	Files []RepairedFile
	// Bytes is the frames' total size; IndexBytes what the check fetched
	// to plan it (the frame index and its signature).
	Bytes, IndexBytes int64
	// Entries are the release's entries (its file list).
	Entries []tree.Entry
}

// RepairedFile is one file of a repair.
type RepairedFile struct {
	Path string `json:"path"`
	// Why: "modified" (other content, or not a file), "missing", or
	// "mode" (only the permission bits differ: nothing is fetched).
	Why string `json:"why"`
	// Frame is the index in Repair.Frames of the frame holding the
	// file, -1 when nothing is fetched for it.
	Frame int `json:"frame"`
}

// Describe says what the repair does, e.g. "repaired 1 modified file
// (lib/big.bin) from 1.1.0's archive: 3.1 MB in 1 frame".
func (r *Repair) Describe() string {
	s := "repaired " + describeFiles(r.Files) + " from " + r.Version + "'s archive"
	if len(r.Frames) == 0 {
		return s + ": nothing to download"
	}
	return fmt.Sprintf("%s: %s in %s", s, byteSize(r.Bytes), count(len(r.Frames), "frame"))
}

// describeFiles: "1 modified file (lib/big.bin)", "2 modified files (a,
// b) and 1 missing file (c)", at most 3 names per kind.
func describeFiles(fs []RepairedFile) string {
	var parts []string
	for _, why := range []string{"modified", "missing", "mode"} {
		var names []string
		for _, f := range fs {
			if f.Why == why {
				names = append(names, f.Path)
			}
		}
		if len(names) == 0 {
			continue
		}
		label := why + " " + plural(len(names), "file")
		if why == "mode" {
			label = plural(len(names), "file") + " with other permission bits"
		}
		list := strings.Join(names[:min(len(names), 3)], ", ")
		if len(names) > 3 {
			list += ", ..."
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", len(names), label, list))
	}
	return strings.Join(parts, " and ")
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// count is "1 frame", "2 frames".
func count(n int, word string) string { return fmt.Sprintf("%d %s", n, plural(n, word)) }

// byteSize writes n in 1000-based units: "512 bytes", "3.1 kB", "8.7 MB".
func byteSize(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d bytes", n)
	case n < 1000_000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1000_000_000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}

// rangeOverhead is what a repair counts for each range request beyond its
// bytes (request and response headers), so that a repair that saves less
// than that over the full archive is not taken.
const rangeOverhead = 1 << 10

// planRepair runs when the installed tree is no release: it sets
// res.Reason, and replaces res.Route (the target's full archive) by a
// repair of res.Closest followed by Closest's patch chain to the target
// when that costs fewer bytes. Anything that keeps a repair from being
// planned (no frame index, a refused one, no patch chain) only shows in
// the reason; only a canceled context is an error.
func (res *CheckResult) planRepair(ctx context.Context, cfg *Config, f Fetcher, bad []string) error {
	full := res.Route.FullBytes
	if res.Closest == "" {
		res.Reason = fmt.Sprintf("the app directory matches no release of %s: installing the full archive of %s (%s)", res.Manifest.App, res.Target, byteSize(full))
		return nil
	}
	rel, err := res.Manifest.Release(res.Closest)
	if err != nil {
		return err
	}
	var damaged []RepairedFile
	for _, p := range res.Modified {
		damaged = append(damaged, RepairedFile{Path: p, Why: "modified", Frame: -1})
	}
	for _, p := range res.Missing {
		damaged = append(damaged, RepairedFile{Path: p, Why: "missing", Frame: -1})
	}
	sort.Slice(damaged, func(i, j int) bool { return damaged[i].Path < damaged[j].Path })
	what := ""
	archive := func(why string) error {
		res.Reason = fmt.Sprintf("%s; %s: installing the full archive of %s (%s)", what, why, res.Target, byteSize(full))
		return ctx.Err()
	}
	var doc []byte
	if rel.FileList != nil {
		doc = res.lists[rel.FileList.Path]
		if doc == nil {
			if doc, err = f.Get(ctx, rel.FileList.Path, manifest.MaxFileListSize); err != nil {
				return archive(fmt.Sprintf("its file list could not be fetched (%v)", err))
			}
		}
	}
	entries, err := rel.Entries(doc)
	if err != nil {
		return archive(fmt.Sprintf("its file list was refused (%v)", err))
	}
	rp := &Repair{Version: rel.Version, Entries: entries}
	// Which files need their bytes: those whose content on disk differs
	// (a file with other permission bits only is copied and chmodded).
	index := make(map[string]int, len(entries))
	for i, e := range entries {
		index[e.Path] = i
	}
	var need []int
	for i := range damaged {
		d := &damaged[i]
		e := entries[index[d.Path]]
		if e.Type != tree.File {
			continue // a directory or a symlink comes from the file list
		}
		if d.Why == "modified" && sameContent(cfg.AppDir, e) {
			d.Why = "mode"
			continue
		}
		need = append(need, index[d.Path])
	}
	rp.Files = damaged
	what = fmt.Sprintf("the app directory is %s except for %s", rel.Version, describeFiles(damaged))
	if len(need) > 0 {
		x, n, why := fetchFrameIndex(ctx, cfg, f, rel, len(entries))
		rp.IndexBytes = n
		if x == nil {
			return archive(why)
		}
		rp.Archive = x.Archive
		rp.Archive.Path = manifest.PlatformPath(cfg.indexDir, rp.Archive.Path) // a platform's, in its directory
		spans := x.Spans()
		spanOf := make(map[int]int, len(need)) // entry index -> span index
		var ks []int
		for _, i := range need {
			k := sort.Search(len(spans), func(k int) bool { return spans[k].First+spans[k].Entries > i })
			spanOf[i] = k
			ks = append(ks, k)
		}
		slices.Sort(ks)
		ks = slices.Compact(ks)
		pos := make(map[int]int, len(ks)) // span index -> index in rp.Frames
		for _, k := range ks {
			pos[k] = len(rp.Frames)
			rp.Frames = append(rp.Frames, spans[k])
			rp.Bytes += spans[k].Size
		}
		for j := range rp.Files {
			if k, ok := spanOf[index[rp.Files[j].Path]]; ok {
				rp.Files[j].Frame = pos[k]
			}
		}
	}
	chain := &Route{}
	if rel.Version != res.Target {
		if chain, err = Plan(res.Manifest, rel.Version, res.Target, bad); err != nil {
			return archive(fmt.Sprintf("no route from %s (%v)", rel.Version, err))
		}
		if !chain.usesPatches() || slices.ContainsFunc(chain.Steps, func(s Step) bool { return s.Kind != StepPatch }) {
			return archive(fmt.Sprintf("no patch chain from %s to %s is cheaper than the archive", rel.Version, res.Target))
		}
	}
	cost := satAdd(rp.Bytes, chain.Bytes)
	if satAdd(cost, rangeOverhead*int64(len(rp.Frames))) >= full {
		patching := ""
		if len(chain.Steps) > 0 {
			patching = fmt.Sprintf(" and patching to %s (%s)", res.Target, byteSize(chain.Bytes))
		}
		return archive(fmt.Sprintf("repairing from %s's archive (%s in %s)%s would cost more", rel.Version, byteSize(rp.Bytes), count(len(rp.Frames), "frame"), patching))
	}
	step := Step{Kind: StepRepair, To: rel.Version, Format: manifest.FormatTarZst, Artifact: rp.Archive, Repair: rp}
	res.Route = &Route{To: res.Target, Steps: append([]Step{step}, chain.Steps...), Bytes: cost, FullBytes: full, Saving: full - cost}
	then := ""
	if len(chain.Steps) > 0 {
		then = fmt.Sprintf(", then patching %s→%s (%s)", rel.Version, res.Target, byteSize(chain.Bytes))
	}
	res.Reason = fmt.Sprintf("%s: repairing from %s's archive (%s in %s)%s instead of the full archive of %s (%s)",
		what, rel.Version, byteSize(rp.Bytes), count(len(rp.Frames), "frame"), then, res.Target, byteSize(full))
	return nil
}

// sameContent reports whether the app directory's file at e.Path has e's
// size and SHA-256 (whatever its permission bits).
func sameContent(appDir string, e tree.Entry) bool {
	p := filepath.Join(appDir, filepath.FromSlash(e.Path))
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != e.Size {
		return false
	}
	sum, err := tree.HashFile(p)
	return err == nil && sum == e.SHA256
}

// fetchFrameIndex fetches and opens release r's frame index; on failure it
// returns nil and why (a repository without one is the common case).
func fetchFrameIndex(ctx context.Context, cfg *Config, f Fetcher, r *manifest.Release, entries int) (*manifest.FrameIndex, int64, string) {
	p, ok := manifest.FrameIndexPath(r)
	if !ok {
		return nil, 0, r.Version + " has no tar.zst archive to repair from"
	}
	raw, err := f.Get(ctx, p, manifest.MaxFrameIndexSize)
	if fetchNotFound(err) {
		return nil, 0, r.Version + "'s archive has no frame index (published before mkdelta wrote them), so its files cannot be fetched one by one"
	}
	if err != nil {
		return nil, 0, fmt.Sprintf("%s's frame index could not be fetched (%v)", r.Version, err)
	}
	sig, err := f.Get(ctx, p+manifest.FrameIndexSigSuffix, manifest.MaxSignatureSize)
	n := int64(len(raw) + len(sig))
	if err != nil && !fetchNotFound(err) {
		return nil, n, fmt.Sprintf("%s's frame index signature could not be fetched (%v)", r.Version, err)
	}
	var x *manifest.FrameIndex
	err = fmt.Errorf("%w: no key to check it with", manifest.ErrSignature)
	for _, k := range cfg.indexKeys() {
		if x, err = manifest.OpenFrameIndex(raw, sig, k, cfg.App, r, entries); err == nil {
			break
		}
	}
	if err != nil {
		return nil, n, fmt.Sprintf("%s's frame index was refused (%v)", r.Version, err)
	}
	return x, n, ""
}

// RangeFetcher fetches part of a repository file: the size bytes at off
// of the file at path p, into dest, verified against sum before dest is
// created. The Downloader implements it (HTTP Range requests).
type RangeFetcher interface {
	FetchRange(ctx context.Context, p string, off, size int64, sum [32]byte, dest string) error
}

// stageRepair runs a repair route: it fetches the frames of the repair
// step, rebuilds the release in the backup directory (intact files copied
// from the app directory, damaged ones from the frames, directories and
// symlinks from the file list, every file checked against it), then
// applies the route's patches from it. It fills res.Repaired and
// res.Repair.
func stageRepair(ctx context.Context, appDir, backupDir string, route *Route, f ArtifactFetcher, res *StageResult) (string, error) {
	rp := route.Steps[0].Repair
	rf, ok := f.(RangeFetcher)
	if !ok && len(rp.Frames) > 0 {
		return "", errors.New("apply: this fetcher cannot fetch byte ranges")
	}
	frames := make([]string, len(rp.Frames))
	for i, s := range rp.Frames {
		dest := filepath.Join(backupDir, downloadsDir, fmt.Sprintf("%s.frame-%d-%x", path.Base(rp.Archive.Path), s.Offset, s.SHA256[:4]))
		if err := realDirFS(OSFS{}, filepath.Dir(dest)); err != nil {
			return "", err
		}
		if err := rf.FetchRange(ctx, rp.Archive.Path, s.Offset, s.Size, s.SHA256, dest); err != nil {
			return "", fmt.Errorf("repairing %s: %w", rp.Version, err)
		}
		frames[i] = dest
		res.Downloaded = append(res.Downloaded, fmt.Sprintf("%s#bytes=%d-%d", rp.Archive.Path, s.Offset, s.Offset+s.Size-1))
	}
	out := filepath.Join(backupDir, stagingDir, rp.Version+".repair")
	if err := realDirFS(OSFS{}, filepath.Dir(out)); err != nil {
		return "", err
	}
	final := len(route.Steps) == 1
	if err := buildRepaired(ctx, appDir, out, rp, frames, final); err != nil {
		os.RemoveAll(out)
		return "", fmt.Errorf("repairing %s: %w", rp.Version, err)
	}
	res.Repaired, res.Repair = rp.Files, rp.Describe()
	if final {
		dir := filepath.Join(backupDir, stagingDir, rp.Version)
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
		return dir, os.Rename(out, dir)
	}
	return stagePatches(ctx, out, backupDir, &Route{Steps: route.Steps[1:]}, nil, f, res)
}

// buildRepaired writes release rp.Entries into the new directory out. The
// files fetched come from the frames (fallback.ReadFrame checks each
// against the list), the others from appDir, hashed while copied. sync
// fsyncs what it writes (the tree is the staged one).
func buildRepaired(ctx context.Context, appDir, out string, rp *Repair, frames []string, sync bool) error {
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	dst, err := os.OpenRoot(out)
	if err != nil {
		return err
	}
	defer dst.Close()
	src, err := os.OpenRoot(appDir)
	if err != nil {
		return err
	}
	defer src.Close()
	fetched := map[string]bool{}
	for _, f := range rp.Files {
		if f.Frame >= 0 {
			fetched[f.Path] = true
		}
	}
	var dirs, links []tree.Entry
	for _, e := range rp.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case e.Type == tree.Dir:
			if err := dst.Mkdir(e.Path, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, e)
		case e.Type == tree.Symlink:
			links = append(links, e)
		case !fetched[e.Path]:
			in, err := src.Open(e.Path)
			if err != nil {
				return fmt.Errorf("%s changed since the check: %w", e.Path, err)
			}
			err = writeVerified(dst, e, in, sync)
			in.Close()
			if err != nil {
				return err
			}
		}
	}
	for i, s := range rp.Frames {
		fh, err := openNoFollow(frames[i], os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		err = fallback.ReadFrame(ctx, fh, rp.Entries[s.First:s.First+s.Entries], func(e tree.Entry, r io.Reader) error {
			if !fetched[e.Path] {
				return nil
			}
			return writeVerified(dst, e, r, sync)
		})
		fh.Close()
		if err != nil {
			return fmt.Errorf("frame at %d of %s: %w", s.Offset, rp.Archive.Path, err)
		}
	}
	for _, l := range links {
		if err := dst.Symlink(filepath.FromSlash(l.Target), l.Path); err != nil {
			return err
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- { // deepest first: sorted by path
		if err := dst.Chmod(dirs[i].Path, dirs[i].Mode.Perm()); err != nil {
			return err
		}
	}
	if sync {
		for i := len(dirs) - 1; i >= 0; i-- {
			syncDir(filepath.Join(out, filepath.FromSlash(dirs[i].Path)))
		}
		syncDir(out)
	}
	return nil
}

// writeVerified creates e's file in dst from r: exactly e.Size bytes with
// e's SHA-256 (else an error naming the file), mode e.Mode.
func writeVerified(dst *os.Root, e tree.Entry, r io.Reader, sync bool) error {
	w, err := dst.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer w.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, e.Size+1))
	if err != nil {
		return err
	}
	if sum := [32]byte(h.Sum(nil)); n != e.Size || sum != e.SHA256 {
		return fmt.Errorf("%w: %s has %d bytes with SHA-256 %x, the file list says %d bytes, %x (changed since the check?)", ErrTreeMismatch, e.Path, n, sum, e.Size, e.SHA256)
	}
	if err := w.Chmod(e.Mode.Perm() & fs.ModePerm); err != nil {
		return err
	}
	if sync {
		if err := w.Sync(); err != nil {
			return err
		}
	}
	return w.Close()
}
