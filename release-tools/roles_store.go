package releasetools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deltaup/deltaup/manifest"
	"gocloud.dev/blob"
)

// The repository v2 commands (Migrate, ChangeKeys, Refresh) on every
// Store: a directory (a path or file:///DIR) or a bucket (s3://, gs://,
// azblob://). They take the same lock as Publish and Prune (flock beside a
// directory, the lease object on a bucket), so a key command and a
// publish exclude each other, and they write in an order that keeps what
// clients read valid at every step (docs/FORMAT.md, "Key commands on
// object stores"):
//
//   - Migrate: file lists and the re-published index (as a publish),
//     the release keys' index signatures, the timestamp, then
//     root/1.json's signatures and root/1.json last. Until root/1.json
//     exists the repository is v1 for every tool (LoadRoot), and no v2
//     client exists yet (they ship root/1.json); a rerun redoes it all.
//   - ChangeKeys: the new release keys' signatures of the current index
//     (new object names: clients of root N never read them), then
//     root/N+1.json's signatures, then root/N+1.json (a client walking to
//     it finds its signatures in place, and the index already signed by
//     the new release keys), then, when the timestamp keys changed, the
//     timestamp signed by the new ones.
//   - Refresh: the timestamp's signatures, then timestamp.json.
//
// Before the write that makes a change visible (root/N.json, or the
// timestamp) the lease is checked (Store.Fence). What an interrupted
// command leaves is completed or removed by the next one: root signatures
// of a version that was never written are deleted (cleanRootStrays); a
// timestamp not signed by the newest root's timestamp keys (a key change
// stopped between the root and the timestamp) is reissued by the next
// Refresh, or by the same key command run again.
//
// Platforms and the release policy follow the same order: every
// platform's index (PLATFORM/) is outlined, signed and named by the one
// timestamp as the platform-less one is, the policy is re-signed with new
// release keys before the root, and every timestamp names every
// platform's current index and the current policy (stampIndexes).

// lockRoles opens repo's store for a key command and takes the publish
// lock (lockStore, as Publish, Prune and SetPolicy). A local repository
// must be an existing directory. Every platform's sub-repository is
// registered (usePlatform) so that the helpers reach it on a bucket too.
// The returned function releases the lock and the stores.
func lockRoles(ctx context.Context, repo string) (Store, func(), error) {
	if !IsRemote(repo) {
		dir, err := LocalPath(repo)
		if err != nil {
			return nil, nil, err
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, nil, fmt.Errorf("%w: %s is not a repository directory", ErrRepo, repo)
		}
	}
	st, release, err := lockStore(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	plats, err := ListPlatforms(ctx, repo)
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("%w: listing the platforms of %s: %v", ErrRepo, repo, err)
	}
	dones := []func(){release}
	unlock := func() {
		for _, d := range slices.Backward(dones) {
			d()
		}
	}
	for _, p := range plats {
		_, _, done, err := usePlatform(ctx, repo, st, p)
		if err != nil {
			unlock()
			return nil, nil, err
		}
		dones = append(dones, done)
	}
	return st, unlock, nil
}

// lockV2 takes the publish lock of a v2 repository, removes what an
// interrupted key command left (cleanRootStrays) and loads its newest
// root.
func lockV2(ctx context.Context, repo string, logf func(string, ...any)) (Store, func(), *manifest.Root, error) {
	st, unlock, err := lockRoles(ctx, repo)
	if err != nil {
		return nil, nil, nil, err
	}
	root, err := LoadRoot(repo)
	if err == nil && root == nil {
		err = fmt.Errorf("%w: %s has no root: run `mkdelta migrate` first", ErrRepo, repo)
	}
	if err == nil {
		err = cleanRootStrays(ctx, st, root.Version, logf)
	}
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return st, unlock, root, nil
}

// listDir lists the objects below directory dir of the repository
// (dir/...), sorted by path: a prefix listing on a bucket, a walk of the
// subdirectory on a local repository.
func listDir(ctx context.Context, st Store, dir string) ([]Object, error) {
	var out []Object
	switch s := st.(type) {
	case *blobStore:
		it := s.b.List(&blob.ListOptions{Prefix: s.key(dir + "/")})
		for {
			o, err := it.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("listing %s in %s: %w", dir, s.url, err)
			}
			if !o.IsDir {
				out = append(out, Object{Path: strings.TrimPrefix(o.Key, s.prefix), Size: o.Size, ModTime: o.ModTime})
			}
		}
	case *localStore:
		err := filepath.WalkDir(s.path(dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() {
				return ctx.Err()
			}
			rel, err := filepath.Rel(s.dir, p)
			if err != nil {
				return err
			}
			out = append(out, Object{Path: filepath.ToSlash(rel)})
			return nil
		})
		if err != nil {
			return nil, err
		}
	default: // a wrapper (tests): the whole listing, filtered
		all, err := st.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range all {
			if inDir(o.Path, dir) {
				out = append(out, o)
			}
		}
		return out, nil
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// rootSigName matches the signature files in root/: N.json.KEYID.minisig.
var rootSigName = regexp.MustCompile(`^([0-9]+)\.json\.[0-9A-F]{16}\.minisig$`)

// cleanRootStrays deletes the root signatures of versions above newest
// (root/M.json.KEYID.minisig with no root/M.json): what a key command
// stopped between a root's signatures and the root leaves. No client
// reads them (clients fetch root/M.json first, and find none).
func cleanRootStrays(ctx context.Context, st Store, newest uint64, logf func(string, ...any)) error {
	objs, err := listDir(ctx, st, manifest.RootDir)
	if err != nil {
		return err
	}
	docs := map[string]bool{}
	for _, o := range objs {
		docs[o.Path] = true
	}
	for _, o := range objs {
		m := rootSigName.FindStringSubmatch(strings.TrimPrefix(o.Path, manifest.RootDir+"/"))
		if m == nil {
			continue
		}
		v, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil || v <= newest || docs[manifest.RootPath(v)] {
			continue
		}
		if err := st.Delete(ctx, o.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("releasetools: removing %s, left by an interrupted key command: %w", o.Path, err)
		}
		logf("removed %s, left by an interrupted key command", o.Path)
	}
	return nil
}

// timestampSigned reports whether timestamp.json carries a threshold of
// signatures of root's timestamp keys (its expiry and sequence are not
// checked). False when there is none, or when a key change stopped after
// root's version was written and before the timestamp its new keys sign
// (or a refresh stopped between the signature and the document).
func timestampSigned(repo string, root *manifest.Root) bool {
	raw, err := readFile(repo, manifest.TimestampName, manifest.MaxTimestampSize)
	if err != nil {
		return false
	}
	return root.VerifyRole(manifest.RoleTimestamp, raw, readSigs(repo, manifest.TimestampName, root.Roles[manifest.RoleTimestamp].KeyIDs)) == nil
}

// restartTimestamp reports whether the next timestamp must restart its
// sequence at 1: only when the current one has the highest sequence there
// is (a fast-forward made with a stolen key) and is not signed by root's
// timestamp keys (they were rotated since). Otherwise the sequence goes
// on: clients forget the sequence of a role whose keys changed, so going
// on is accepted either way, and restarting under unchanged keys would be
// refused as a rollback.
func restartTimestamp(repo string, root *manifest.Root) bool {
	prev, err := currentTimestamp(repo)
	return err == nil && prev != nil && prev.Sequence >= manifest.MaxSafeInteger && !timestampSigned(repo, root)
}

// changeInEffect reports whether root already holds kc: its added keys in
// the role, its removed ones out, its threshold (when given). A key
// command run again after it stopped between the root and the timestamp
// finds its change in effect.
func changeInEffect(root *manifest.Root, kc KeyChange) bool {
	ro, ok := root.Roles[kc.Role]
	if kc.Role == "" || !ok {
		return false
	}
	for _, k := range kc.Add {
		if !slices.Contains(ro.KeyIDs, k.ID()) {
			return false
		}
	}
	for _, id := range kc.Remove {
		if slices.Contains(ro.KeyIDs, id) {
			return false
		}
	}
	return kc.Threshold == 0 || kc.Threshold == ro.Threshold
}

// completeTimestamp issues the timestamp of the current indexes (the
// platform-less one and every platform's, each re-read and checked, as
// Refresh, with the current policy) signed by root's timestamp keys among
// o.Keys, after a key change that stopped before it. note ends the log
// line.
func completeTimestamp(ctx context.Context, st Store, root *manifest.Root, o RolesOptions, note string) (*manifest.Timestamp, error) {
	idx, err := currentIndexes(o.Repo, root)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := roleSigners(root, manifest.RoleTimestamp, o.Keys); err != nil {
		return nil, err
	}
	if err := st.Fence(ctx); err != nil {
		return nil, err
	}
	ts, err := stampIndexes(o.Repo, root, idx, o.Keys, o.now(), o.TimestampValidity, restartTimestamp(o.Repo, root))
	if err != nil {
		return nil, err
	}
	o.logf("timestamp %d: %s, valid until %s%s", ts.Sequence, describeStamp(ts), ts.Expires.Format(time.RFC3339), note)
	return ts, nil
}
