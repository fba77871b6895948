package releasetools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// PruneOptions describe one pruning. Repo, Key and Keep are required.
type PruneOptions struct {
	Repo string // repository: a directory or a bucket URL (OpenStore)
	Key  manifest.PrivateKey
	// Keep is how many of the newest releases of each channel stay (at
	// least 1).
	Keep int
	// KeepFor also keeps every release published less than this long ago
	// (its full archive's modification time); 0 keeps only Keep.
	KeepFor time.Duration
	// DryRun reports what would go and changes nothing.
	DryRun bool
	// Validity is how long the new manifest is valid; 0 means
	// DefaultValidity.
	Validity time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log, when set, receives one line per step.
	Log io.Writer
	// Platform, when set, prunes that platform's sub-repository
	// (REPO/PLATFORM/) under the repository's lock; "" the platform-less
	// build. Each platform is pruned on its own.
	Platform string
}

// PruneResult reports a pruning.
type PruneResult struct {
	Sequence uint64   // sequence of the manifest now in place (unchanged on a dry run or when nothing goes)
	Kept     []string // versions kept, in version order
	Dropped  []string // versions removed from the manifest
	// Routed lists the kept versions that are kept only because a kept
	// version's shortest chain of patches to the newest passes through
	// them (milestones of an older line, say).
	Routed []string
	// Deleted are the objects removed (on a dry run: that would be), with
	// DeletedBytes their total size.
	Deleted      []Object
	DeletedBytes int64
	// ManifestBytes is what the new manifest adds: its history copy and
	// signature, and the root pair's change of size (negative when the
	// manifest shrinks by more than the history copy's size).
	ManifestBytes int64
	// BytesBefore and BytesAfter are the repository's total size before
	// and after (on a dry run, the expected size after): BytesAfter =
	// BytesBefore - DeletedBytes + ManifestBytes.
	BytesBefore, BytesAfter int64
	DryRun                  bool
}

// Prune removes from the repository the releases beyond the newest
// opts.Keep of each channel (and not younger than opts.KeepFor), and every
// artifact no kept release refers to: archives, patches from removed
// versions, file lists, frame indexes. A kept version whose shortest chain
// of patches to the newest of its channel passes through an older release
// keeps that release too (milestone patches), so every kept version that
// reached the newest by patches still does. It writes the new signed
// manifest first (history copy, signature, root: the same order as
// Publish) and deletes the files only once it is live; a client holding
// the previous manifest may then miss a patch it planned and checks again.
// One Publish or Prune at a time (the repository's lock).
//
// Cost: one listing of the repository, one manifest, one delete per file.
func Prune(ctx context.Context, opts PruneOptions) (*PruneResult, error) {
	o := opts
	switch {
	case o.Repo == "":
		return nil, errors.New("releasetools: PruneOptions.Repo is empty")
	case o.Keep < 1:
		return nil, fmt.Errorf("releasetools: PruneOptions.Keep is %d: keep at least the newest release (1)", o.Keep)
	case o.KeepFor < 0 || o.Validity < 0:
		return nil, errors.New("releasetools: negative KeepFor or Validity")
	}
	if err := checkPlatform(o.Platform); err != nil {
		return nil, err
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	st, done, err := useStore(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	defer done()
	pub := o.Key.Public()
	var cur loaded
	if !o.DryRun {
		unlock, lerr := st.Lock(ctx)
		if lerr != nil {
			return nil, lerr
		}
		defer unlock()
	}
	sub, st, release, err := usePlatform(ctx, o.Repo, st, o.Platform)
	if err != nil {
		return nil, err
	}
	defer release()
	o.Repo = sub
	if o.DryRun {
		cur, err = readManifest(o.Repo, pub, "")
	} else {
		cur, err = loadManifest(o.Repo, pub, "")
	}
	if err != nil {
		return nil, err
	}
	if cur.m == nil {
		return nil, fmt.Errorf("%w: %s holds no manifest: nothing to prune", ErrRepo, st)
	}
	objs, err := st.List(ctx)
	if err != nil {
		return nil, err
	}
	objs = withoutPlatforms(objs)
	res := &PruneResult{Sequence: cur.m.Sequence, DryRun: o.DryRun}
	for _, ob := range objs {
		res.BytesBefore += ob.Size
	}

	kept := keptVersions(cur.m, o.Keep, o.KeepFor, o.Now(), objs)
	routed := routeClosure(cur.m, kept)
	next := *cur.m
	next.Releases = nil
	for _, r := range cur.m.Releases {
		if !kept[r.Version] {
			res.Dropped = append(res.Dropped, r.Version)
			continue
		}
		r.Patches = slices.DeleteFunc(slices.Clone(r.Patches), func(p manifest.Patch) bool { return !kept[p.From] })
		next.Releases = append(next.Releases, r)
	}
	for _, r := range next.Sorted("") {
		res.Kept = append(res.Kept, r.Version)
		if routed[r.Version] {
			res.Routed = append(res.Routed, r.Version)
		}
	}
	res.Deleted, res.DeletedBytes = unreferenced(objs, &next)
	for _, v := range res.Dropped {
		logf("release %s: removed", v)
	}
	for _, v := range res.Routed {
		logf("release %s: kept, on a kept version's route to the newest", v)
	}
	for _, ob := range res.Deleted {
		logf("%s %s (%d bytes)", map[bool]string{true: "would delete", false: "delete"}[o.DryRun], ob.Path, ob.Size)
	}
	if len(res.Dropped) == 0 && len(res.Deleted) == 0 {
		res.BytesAfter = res.BytesBefore
		logf("nothing to prune")
		return res, nil
	}

	var added int64
	if len(res.Dropped) > 0 {
		now := o.Now().UTC().Truncate(time.Second)
		next.Sequence = cur.m.Sequence + 1
		next.Issued, next.Expires = now, now.Add(o.Validity)
		raw, err := manifest.Marshal(&next)
		if err != nil {
			return nil, fmt.Errorf("releasetools: new manifest: %w", err)
		}
		sig, err := manifest.Sign(o.Key, raw)
		if err != nil {
			return nil, err
		}
		// The history copy and its signature are new objects; the root
		// pair replaces objects of about the same size.
		added = int64(len(raw)+len(sig)) + int64(len(raw)-len(cur.raw))
		if curSig, err := readFile(o.Repo, manifest.SignatureName, manifest.MaxSignatureSize); err == nil {
			added += int64(len(sig) - len(curSig))
		}
		res.ManifestBytes = added
		if !o.DryRun {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := publishManifest(o.Repo, raw, sig, next.Sequence); err != nil {
				return nil, fmt.Errorf("releasetools: installing the manifest: %w", err)
			}
			res.Sequence = next.Sequence
			logf("manifest: sequence %d, %d releases", next.Sequence, len(next.Releases))
		}
	}
	if !o.DryRun {
		for _, ob := range res.Deleted {
			if err := st.Delete(ctx, ob.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("releasetools: deleting %s (the new manifest is live; prune again to finish): %w", ob.Path, err)
			}
		}
		after, err := st.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, ob := range withoutPlatforms(after) {
			res.BytesAfter += ob.Size
		}
	} else {
		res.BytesAfter = res.BytesBefore - res.DeletedBytes + added
	}
	return res, nil
}

// keptVersions picks the newest keep releases of every channel, and those
// whose full archive is younger than keepFor.
func keptVersions(m *manifest.Manifest, keep int, keepFor time.Duration, now time.Time, objs []Object) map[string]bool {
	mod := map[string]time.Time{}
	for _, ob := range objs {
		mod[ob.Path] = ob.ModTime
	}
	kept := map[string]bool{}
	for _, ch := range m.Channels {
		rs := m.Sorted(ch)
		for i, r := range rs {
			if i >= len(rs)-keep {
				kept[r.Version] = true
				continue
			}
			if keepFor > 0 && len(r.Archives) > 0 {
				if t, ok := mod[r.Archives[0].Path]; ok && now.Sub(t) < keepFor {
					kept[r.Version] = true
				}
			}
		}
	}
	return kept
}

// routeClosure adds to kept the releases on the shortest chains of patches
// from kept releases to the newest of their channel, and returns those it
// added.
func routeClosure(m *manifest.Manifest, kept map[string]bool) map[string]bool {
	from := map[string][]string{} // version -> versions it has a patch to
	for i := range m.Releases {
		for _, p := range m.Releases[i].Patches {
			from[p.From] = append(from[p.From], p.To)
		}
	}
	dist, _ := patchRoutes(m)
	added := map[string]bool{}
	for _, r := range m.Sorted("") {
		if !kept[r.Version] {
			continue
		}
		v := r.Version
		d, ok := dist[v]
		for ok && d > 0 {
			// Prefer a step that is kept already.
			next := ""
			for _, w := range from[v] {
				if dw, ok := dist[w]; ok && dw == d-1 && (next == "" || kept[w] && !kept[next]) {
					next = w
				}
			}
			if next == "" {
				break
			}
			if !kept[next] {
				kept[next] = true
				added[next] = true
			}
			v, d = next, d-1
		}
	}
	return added
}
