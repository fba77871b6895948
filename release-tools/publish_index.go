package releasetools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// FramedSlackPercent is how much larger than the one-frame tar.zst the
// framed one may be and still replace it as the release's archive: within
// it (trees of distinct binaries) the release has one tar.zst, framed;
// beyond it (trees of similar files, where a shared compression window
// matters) the one-frame archive stays the release's archive for full
// downloads and the framed one is published beside it for repairs only.
const FramedSlackPercent = 1

// FramedArchivePath is the repository path of a version's framed tar.zst
// when it is published beside the release's archive.
func FramedArchivePath(app, version string) string {
	return path.Join(ArchivesDir, app+"-"+version+".frames.tar.zst")
}

// publishFrames writes the framed tar.zst of newDir and its signed frame
// index (manifest.FrameIndex) for rel, whose archives are written: the
// framed archive replaces rel's tar.zst when it is at most
// FramedSlackPercent larger, else it stays beside it. An index over
// manifest.MaxFrameIndexSize is left out (logged): clients then fetch the
// whole archive.
func publishFrames(ctx context.Context, o *PublishOptions, newDir string, rel *manifest.Release, logf func(string, ...any)) error {
	ai := -1
	for i, a := range rel.Archives {
		if a.Format == manifest.FormatTarZst {
			ai = i
		}
	}
	if ai < 0 {
		return nil
	}
	solid := rel.Archives[ai].Artifact
	rp := FramedArchivePath(o.App, o.Version)
	var st fallback.Stats
	framed, err := writeArtifact(o.Repo, rp, func(w io.Writer) error {
		var err error
		st, err = fallback.Write(ctx, w, newDir, fallback.TarZst, &fallback.WriteOptions{Modes: o.modes(), Framed: true})
		return err
	})
	if err != nil {
		return fmt.Errorf("releasetools: writing %s: %w", rp, err)
	}
	if tree.Digest(st.Entries) != rel.TreeDigest {
		return fmt.Errorf("releasetools: %s changed while it was being published", newDir)
	}
	store, sctx, err := storeOf(o.Repo)
	if err != nil {
		return err
	}
	if framed.Size <= solid.Size+solid.Size*FramedSlackPercent/100 {
		if err := store.Rename(sctx, rp, solid.Path); err != nil {
			return err
		}
		framed.Path = solid.Path
		rel.Archives[ai].Artifact = framed
		logf("archive %s: framed, %d bytes (%d frames; one frame: %d)", framed.Path, framed.Size, len(st.Frames), solid.Size)
	} else {
		logf("archive %s: framed copy for repairs, %d bytes (%d frames; %s stays one frame: %d)", rp, framed.Size, len(st.Frames), solid.Path, solid.Size)
	}
	x := &manifest.FrameIndex{Schema: manifest.SchemaVersion, App: o.App, Version: o.Version, TreeDigest: rel.TreeDigest, Archive: framed}
	for _, f := range st.Frames {
		x.Frames = append(x.Frames, manifest.IndexFrame{Entries: f.Count, Size: f.Size, SHA256: f.SHA256})
	}
	raw, err := manifest.MarshalFrameIndex(x)
	if errors.Is(err, manifest.ErrTooLarge) {
		logf("no frame index: %v", err)
		if framed.Path == rp {
			return store.Delete(sctx, rp)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasetools: frame index: %w", err)
	}
	sig, err := manifest.SignFrameIndex(o.Key, raw)
	if err != nil {
		return err
	}
	ip, _ := manifest.FrameIndexPath(rel)
	if err := writeFile(o.Repo, ip, raw); err != nil {
		return err
	}
	if err := writeFile(o.Repo, ip+manifest.FrameIndexSigSuffix, sig); err != nil {
		return err
	}
	logf("frame index %s: %d frames, %d bytes", ip, len(x.Frames), len(raw))
	return nil
}

// syncDirOf makes a rename in p's directory durable; best effort.
func syncDirOf(p string) {
	if f, err := os.Open(filepath.Dir(p)); err == nil {
		f.Sync()
		f.Close()
	}
}

// verifyFrameIndex checks release r's frame index when it has one: the
// signature by pub, that it describes r (entries), the framed archive's
// size and SHA-256, and every frame on its own (its SHA-256, then its
// entries and contents against the file list: fallback.ReadFrame). It
// returns the repository paths it covers (index, signature, a separate
// framed archive), none when there is no index.
func verifyFrameIndex(ctx context.Context, repo string, pub manifest.PublicKey, app string, r *manifest.Release, entries []tree.Entry) ([]string, error) {
	ip, ok := manifest.FrameIndexPath(r)
	if !ok {
		return nil, nil
	}
	raw, err := readFile(repo, ip, manifest.MaxFrameIndexSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return []string{ip}, err
	}
	refs := []string{ip, ip + manifest.FrameIndexSigSuffix}
	sig, err := readFile(repo, ip+manifest.FrameIndexSigSuffix, manifest.MaxSignatureSize)
	if err != nil {
		return refs, err
	}
	x, err := manifest.OpenFrameIndex(raw, sig, pub, app, r, len(entries))
	if err != nil {
		return refs, err
	}
	refs = append(refs, x.Archive.Path)
	f, err := openArtifact(repo, x.Archive)
	if err != nil {
		return refs, err
	}
	defer f.Close()
	for i, s := range x.Spans() {
		if err := ctx.Err(); err != nil {
			return refs, err
		}
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, s.Offset, s.Size)); err != nil {
			return refs, err
		}
		if sum := h.Sum(nil); !bytes.Equal(sum, s.SHA256[:]) {
			return refs, fmt.Errorf("%s: frame %d (bytes %d..%d) has SHA-256 %x, the index says %x", x.Archive.Path, i, s.Offset, s.Offset+s.Size, sum[:8], s.SHA256[:8])
		}
		if err := fallback.ReadFrame(ctx, io.NewSectionReader(f, s.Offset, s.Size), entries[s.First:s.First+s.Entries], nil); err != nil {
			return refs, fmt.Errorf("%s: frame %d: %w", x.Archive.Path, i, err)
		}
	}
	return refs, nil
}
