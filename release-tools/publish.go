package releasetools

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// Defaults of PublishOptions.
const (
	DefaultChannel     = "stable"
	DefaultPatchesFrom = 3
	DefaultValidity    = 90 * 24 * time.Hour
)

// PublishOptions describe one publication. Repo, App, Version and Key are
// required.
type PublishOptions struct {
	Repo    string // repository directory; created when missing
	App     string // application name (manifest rules: [A-Za-z0-9][A-Za-z0-9._-]*)
	Version string // semantic version of the new release; a leading v is dropped (v1.2.3 is 1.2.3)
	Channel string // default DefaultChannel ("stable")
	Key     manifest.PrivateKey
	// PatchesFrom is how many of the channel's versions below Version get a
	// patch to it (the closest ones); 0 means DefaultPatchesFrom, a negative
	// value none.
	PatchesFrom int
	// NoMilestones turns off the milestone patches (see MilestoneBases):
	// by default a release also gets patches from the channel's releases
	// 4, 8, 16, … positions below it when its position is a multiple of
	// that distance, so that a client many versions behind needs about
	// log2(versions) hops, not versions/PatchesFrom. They add half a
	// patch per release on average. Ignored when PatchesFrom is negative.
	NoMilestones bool
	// PortableModes records only the permission bits every OS keeps
	// (tree.ModesPortable: files 0644/0444, directories 0755/0555) in the
	// manifest, archives and bundles. Required for releases that Windows
	// clients install (Windows has no permission bits: a release with an
	// executable bit cannot be verified there). Only for those: installed
	// elsewhere, the files would lose their executable bits, so publish
	// each platform's build as its own platform (Platform, which sets it
	// for windows-…), app or channel. A whole channel should use one
	// setting.
	PortableModes bool
	// NoSolid keeps every patch a version-1 bundle (one payload per
	// file; delta.BundleOptions.NoSolid): clients built before solid
	// bundles (tree-wide matching) refuse version 2 and fall back to the
	// full archive. Patches are then somewhat larger on trees.
	NoSolid bool
	// Platform, when set (manifest.ValidPlatform: "linux-amd64",
	// "windows-amd64", "darwin-arm64", …), publishes into that platform's
	// sub-repository REPO/PLATFORM/ (its own index, archives and patches;
	// docs/FORMAT.md, "Platforms in one repository"); in a v2 repository
	// the timestamp then names its index beside the others'. A Windows
	// platform ("windows-…") implies PortableModes. "" is the
	// platform-less build, at the repository's top, as before.
	Platform string
	// AllowOlder publishes a version lower than the newest release of its
	// channel (a fix for an older line, say). Without it Publish refuses
	// with ErrOlder: clients already on the newest never install it, and
	// it is usually a mistyped version.
	AllowOlder bool
	// Validity is how long the new manifest is valid; 0 means
	// DefaultValidity. Clients refuse an expired manifest: publish (or
	// re-sign) before it runs out.
	Validity time.Duration
	// ExtraKeys are more release keys, for a v2 repository whose release
	// threshold is above one: Key and these sign the new index.
	ExtraKeys []manifest.PrivateKey
	// TimestampKeys, for a v2 repository, sign the timestamp that shows
	// the new release to v2 clients (TimestampValidity, default
	// DefaultTimestampValidity); without them it shows after the next
	// Refresh.
	TimestampKeys     []manifest.PrivateKey
	TimestampValidity time.Duration
	// Policy, for a v2 repository, sets the new release's rollout,
	// critical flag or notes in the release policy (its Version is
	// ignored: the release published), signed by the release keys and
	// written before the index, so that the release never shows without
	// it. Nil: no policy entry (every install is offered the release).
	Policy *PolicyChange
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log, when set, receives one line per step.
	Log io.Writer
}

func (o *PublishOptions) modes() tree.Modes {
	if o.PortableModes {
		return tree.ModesPortable
	}
	return tree.ModesExact
}

func (o *PublishOptions) validate() error {
	switch {
	case o.Repo == "":
		return errors.New("releasetools: PublishOptions.Repo is empty")
	case o.App == "":
		return errors.New("releasetools: PublishOptions.App is empty")
	case o.Version == "":
		return errors.New("releasetools: PublishOptions.Version is empty")
	case o.Validity < 0:
		return errors.New("releasetools: negative Validity")
	}
	v, err := manifest.NormalizeVersion(o.Version)
	if err != nil {
		return fmt.Errorf("releasetools: %w", err)
	}
	o.Version = v
	if err := checkPlatform(o.Platform); err != nil {
		return err
	}
	if manifest.IsWindowsPlatform(o.Platform) {
		o.PortableModes = true
	}
	if o.Channel == "" {
		o.Channel = DefaultChannel
	}
	if o.PatchesFrom == 0 {
		o.PatchesFrom = DefaultPatchesFrom
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Policy != nil {
		ch := *o.Policy
		ch.Version = o.Version
		if err := ch.validate(); err != nil {
			return err
		}
	}
	return nil
}

// PatchBases picks, from lower (the channel's releases below the new one,
// in version order), those that get a patch to it: the closest n, and with
// milestones the releases at positions i-4, i-8, i-16, … where i =
// len(lower) is the new release's position and the distance divides i.
// Climbing from any position to the newest then takes one hop to the next
// multiple of 4 and one per doubling of the step, so about 2·log2(n) hops
// at most, each hop a patch over consecutive milestones.
func PatchBases(lower []*manifest.Release, n int, milestones bool) []*manifest.Release {
	i := len(lower)
	var out []*manifest.Release
	if milestones {
		for d := 4; d <= i; d *= 2 {
			if i%d == 0 && d > n {
				out = append(out, lower[i-d])
			}
		}
		slices.Reverse(out) // oldest first, like the closest ones
	}
	if n > i {
		n = i
	}
	return append(out, lower[i-n:]...)
}

// PublishResult reports a publication.
type PublishResult struct {
	Sequence  uint64           // sequence number of the manifest now in place
	Unchanged bool             // the version was already published with this very tree
	Release   manifest.Release // the release as recorded
	Took      time.Duration
}

// Publish adds the tree at newDir to the repository as opts.Version: full
// archives (tar.zst and tar.gz), bundles from the closest PatchesFrom
// versions of the channel below it (their trees are rebuilt from their own
// archives, verified against the current manifest first), and a new signed
// manifest with the next sequence number. Republishing an existing version
// succeeds without change when the tree is identical and fails with
// ErrVersionExists otherwise, and so does a version published in another
// channel. A version lower than the newest of its channel is refused with
// ErrOlder unless AllowOlder is set. One Publish at a time per repository
// (the lock file LockPath, beside it); see the package comment for crash
// safety.
//
// Cost: one archive pass per format over the tree, one extraction and one
// DiffBundle per patch.
func Publish(ctx context.Context, newDir string, opts PublishOptions) (*PublishResult, error) {
	start := time.Now()
	o := opts
	if err := o.validate(); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	st, release, err := lockStore(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	defer release()

	roles, err := planRoles(&o)
	if err != nil {
		return nil, err
	}
	// A platform's releases go to its sub-repository; the lock, the root
	// and the timestamp are the repository's.
	sub, sst, release, err := usePlatform(ctx, o.Repo, st, o.Platform)
	if err != nil {
		return nil, err
	}
	defer release()
	if o.Platform != "" {
		roles.top, roles.platform, o.Repo = o.Repo, o.Platform, sub
		logf("platform %s: publishing into %s%s", o.Platform, sub, map[bool]string{true: " (portable modes)", false: ""}[o.PortableModes])
	}
	var cur loaded
	if roles.root != nil {
		cur, err = loadIndex(o.Repo, roles.root, o.App)
	} else {
		cur, err = loadManifest(o.Repo, o.Key.Public(), o.App)
	}
	if err != nil {
		return nil, err
	}
	if err := removeLeftovers(ctx, sst, cur.m, logf); err != nil {
		return nil, err
	}
	entries, err := tree.Scan(ctx, newDir, tree.ScanOptions{Hash: true, Modes: o.modes()})
	if err != nil {
		return nil, fmt.Errorf("releasetools: scanning %s: %w", newDir, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("releasetools: %s is empty", newDir)
	}
	digest := tree.Digest(entries)
	if cur.m != nil {
		if r, err := cur.m.Release(o.Version); err == nil {
			if r.Channel != o.Channel {
				return nil, fmt.Errorf("%w: %s %s is in channel %q, not %q; a version belongs to one channel: publish it under a new version", ErrVersionExists, o.App, r.Version, r.Channel, o.Channel)
			}
			if r.TreeDigest == digest {
				logf("%s %s is already published with this tree: nothing to do", o.App, o.Version)
				return &PublishResult{Sequence: cur.m.Sequence, Unchanged: true, Release: *r, Took: time.Since(start)}, nil
			}
			return nil, fmt.Errorf("%w: %s %s (tree digest %x, the new tree's is %x); publish it under a new version", ErrVersionExists, o.App, o.Version, r.TreeDigest[:8], digest[:8])
		}
		if rs := cur.m.Sorted(o.Channel); len(rs) > 0 && !o.AllowOlder {
			newest := rs[len(rs)-1].Version
			if c, err := manifest.Compare(o.Version, newest); err == nil && c < 0 {
				return nil, fmt.Errorf("%w: %s %s is lower than %s, the newest of channel %q (clients on %s never install it)", ErrOlder, o.App, o.Version, newest, o.Channel, newest)
			}
		}
	}

	rel := manifest.Release{Version: o.Version, Channel: o.Channel, TreeDigest: digest}
	// Full archives.
	for _, f := range []fallback.Format{fallback.TarZst, fallback.TarGz} {
		fname := f.String()
		rp := ArchivePath(o.App, o.Version, fname)
		var st fallback.Stats
		art, err := writeArtifact(o.Repo, rp, func(w io.Writer) error {
			var err error
			st, err = fallback.Write(ctx, w, newDir, f, &fallback.WriteOptions{Modes: o.modes()})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("releasetools: writing %s: %w", rp, err)
		}
		if tree.Digest(st.Entries) != digest {
			return nil, fmt.Errorf("releasetools: %s changed while it was being published", newDir)
		}
		rel.Archives = append(rel.Archives, manifest.Archive{Format: fname, Artifact: art})
		logf("archive %s: %d bytes", rp, art.Size)
	}
	// The framed tar.zst and its frame index, for clients repairing a few files.
	if err := publishFrames(ctx, &o, newDir, &rel, logf); err != nil {
		return nil, err
	}

	// Patches from the closest lower versions of the channel.
	if cur.m != nil && o.PatchesFrom > 0 {
		var bases []*manifest.Release
		for _, r := range cur.m.Sorted(o.Channel) {
			if c, err := manifest.Compare(r.Version, o.Version); err == nil && c < 0 {
				bases = append(bases, r)
			}
		}
		bases = PatchBases(bases, o.PatchesFrom, !o.NoMilestones)
		// Beside the repository, not inside it, where it would be served.
		tmp, err := os.MkdirTemp(st.TempDir(), tempPrefix(st, ".publish-"))
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		for _, base := range bases {
			oldDir := filepath.Join(tmp, base.Version)
			if err := extractRelease(ctx, o.Repo, base, oldDir); err != nil {
				return nil, fmt.Errorf("releasetools: rebuilding %s %s from its archive: %w", o.App, base.Version, err)
			}
			rp := PatchPath(o.App, base.Version, o.Version)
			var bst delta.BundleStats
			art, err := writeArtifact(o.Repo, rp, func(w io.Writer) error {
				var err error
				bst, err = delta.DiffBundle(ctx, oldDir, newDir, w, &delta.BundleOptions{Modes: o.modes(), NoSolid: o.NoSolid})
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("releasetools: writing %s: %w", rp, err)
			}
			if bst.NewDigest != digest {
				return nil, fmt.Errorf("releasetools: %s changed while it was being published", newDir)
			}
			rel.Patches = append(rel.Patches, manifest.Patch{From: base.Version, To: o.Version, Artifact: art})
			logf("patch %s: %d bytes", rp, art.Size)
			if err := os.RemoveAll(oldDir); err != nil {
				return nil, err
			}
		}
	}

	// The file list: inline, or a document of its own when long.
	// A v2 repository keeps every file list out of the index: clients
	// fetch one only for a version they install or repair.
	if len(entries) > manifest.InlineFilesMax || roles.root != nil {
		doc, err := manifest.MarshalFileList(&manifest.FileList{Schema: manifest.SchemaVersion, Version: o.Version, Files: entries})
		if err != nil {
			return nil, err
		}
		rp := FileListPath(o.App, o.Version)
		if err := writeFile(o.Repo, rp, doc); err != nil {
			return nil, err
		}
		ref := manifest.NewFileListRef(rp, doc)
		rel.FileList = &ref
	} else {
		rel.Files = entries
	}

	// The new manifest.
	now := o.Now().UTC().Truncate(time.Second)
	m := &manifest.Manifest{Schema: manifest.SchemaVersion, App: o.App, Sequence: 1}
	if cur.m != nil {
		m.Channels = slices.Clone(cur.m.Channels)
		m.Releases = slices.Clone(cur.m.Releases)
		m.Sequence = cur.m.Sequence + 1
	}
	if !slices.Contains(m.Channels, o.Channel) {
		m.Channels = append(m.Channels, o.Channel)
	}
	m.Issued, m.Expires = now, now.Add(o.Validity)
	m.Releases = append(m.Releases, rel)
	raw, err := manifest.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("releasetools: new manifest: %w", err)
	}
	sig, err := manifest.Sign(o.Key, raw)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := signNewIndex(&o, roles, m.Sequence, raw); err != nil {
		return nil, fmt.Errorf("releasetools: signing the index for v2 clients: %w", err)
	}
	if err := publishPolicy(&o, roles, m, logf); err != nil {
		return nil, fmt.Errorf("releasetools: the release policy: %w", err)
	}
	if err := publishManifest(o.Repo, raw, sig, m.Sequence); err != nil {
		return nil, fmt.Errorf("releasetools: installing the manifest: %w", err)
	}
	if err := publishRoles(&o, roles, m.Sequence, raw, logf); err != nil {
		return nil, fmt.Errorf("releasetools: issuing the timestamp: %w", err)
	}
	logf("manifest: sequence %d, %d releases, valid until %s", m.Sequence, len(m.Releases), m.Expires.Format(time.RFC3339))
	return &PublishResult{Sequence: m.Sequence, Release: rel, Took: time.Since(start)}, nil
}

// writeArtifact writes repo/rel atomically with fill (through repo's
// store, see writeFile) and returns its size and SHA-256.
func writeArtifact(repo, rel string, fill func(io.Writer) error) (manifest.Artifact, error) {
	art := manifest.Artifact{Path: rel}
	st, ctx, err := storeOf(repo)
	if err != nil {
		return art, err
	}
	h := sha256.New()
	err = st.Put(ctx, rel, func(w io.Writer) error {
		cw := &hashCounter{w: w, h: h}
		if err := fill(cw); err != nil {
			return err
		}
		art.Size = cw.n
		return nil
	})
	copy(art.SHA256[:], h.Sum(nil))
	return art, err
}

type hashCounter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *hashCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// openArtifact opens repo/art.Path after checking its size and SHA-256
// against the manifest (verify before parse); the returned reader holds
// the verified bytes.
func openArtifact(repo string, art manifest.Artifact) (ArtifactFile, error) {
	st, ctx, err := storeOf(repo)
	if err != nil {
		return nil, err
	}
	f, size, err := st.Open(ctx, art.Path)
	if err != nil {
		return nil, err
	}
	if size != art.Size {
		f.Close()
		return nil, fmt.Errorf("%s is %d bytes, the manifest says %d", art.Path, size, art.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, err
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	if sum != art.SHA256 {
		f.Close()
		return nil, fmt.Errorf("%s has SHA-256 %x, the manifest says %x", art.Path, sum[:8], art.SHA256[:8])
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// releaseEntries returns a release's entries, reading its file-list
// document when it has one.
func releaseEntries(repo string, r *manifest.Release) ([]tree.Entry, error) {
	if r.FileList == nil {
		return r.Files, nil
	}
	doc, err := readFile(repo, r.FileList.Path, manifest.MaxFileListSize)
	if err != nil {
		return nil, err
	}
	return r.Entries(doc)
}

// extractRelease rebuilds release r's tree at dest from its tar.zst archive
// (or the first archive), verified against the manifest.
func extractRelease(ctx context.Context, repo string, r *manifest.Release, dest string) error {
	entries, err := releaseEntries(repo, r)
	if err != nil {
		return err
	}
	arch := r.Archives[0]
	for _, a := range r.Archives {
		if a.Format == manifest.FormatTarZst {
			arch = a
		}
	}
	return extractArchive(ctx, repo, arch, entries, dest)
}

func extractArchive(ctx context.Context, repo string, arch manifest.Archive, entries []tree.Entry, dest string) error {
	f, err := openArtifact(repo, arch.Artifact)
	if err != nil {
		return err
	}
	defer f.Close()
	format, err := fallback.ParseFormat(arch.Format)
	if err != nil {
		return err
	}
	_, err = fallback.Extract(ctx, f, format, dest, &fallback.ExtractOptions{Expected: entries})
	return err
}
