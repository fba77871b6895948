package releasetools

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// Repository v2 (docs/FORMAT.md, "Repository v2: roles"): root/N.json
// names the keys and thresholds of the root, release and timestamp roles;
// the release index (manifest.json, its history copies manifests/SEQ.json)
// is signed by the release keys, one signature file per key
// (manifests/SEQ.json.KEYID.minisig); timestamp.json names the current
// index and is re-signed often by the timestamp key (Refresh).

// Defaults of the v2 documents' validity.
const (
	DefaultRootValidity      = 365 * 24 * time.Hour
	DefaultTimestampValidity = 24 * time.Hour
)

// LoadRoot returns the newest root of repo, every version after
// root/1.json checked as a client checks it (Root.Next), or nil when the
// repository has no root (v1).
func LoadRoot(repo string) (*manifest.Root, error) {
	raw, err := readFile(repo, manifest.RootPath(1), manifest.MaxRootSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	root, err := manifest.ParseRoot(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRepo, manifest.RootPath(1), err)
	}
	if err := root.VerifyRole(manifest.RoleRoot, raw, readSigs(repo, manifest.RootPath(1), root.Roles[manifest.RoleRoot].KeyIDs)); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRepo, manifest.RootPath(1), err)
	}
	for {
		p := manifest.RootPath(root.Version + 1)
		raw, err := readFile(repo, p, manifest.MaxRootSize)
		if errors.Is(err, os.ErrNotExist) {
			return root, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRepo, err)
		}
		ids := slices.Clone(root.Roles[manifest.RoleRoot].KeyIDs)
		if n, err := manifest.ParseRoot(raw); err == nil { // its own keys, checked by Next
			ids = append(ids, n.Roles[manifest.RoleRoot].KeyIDs...)
		}
		next, err := root.Next(raw, readSigs(repo, p, ids))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRepo, err)
		}
		root = next
	}
}

// readSigs reads the signature files DOC.ID.minisig that exist.
func readSigs(repo, doc string, ids []string) map[string][]byte {
	out := map[string][]byte{}
	for _, id := range ids {
		if b, err := readFile(repo, manifest.SigPath(doc, id), manifest.MaxSignatureSize); err == nil {
			out[id] = b
		}
	}
	return out
}

// roleSigners returns the keys among keys that belong to role in root,
// failing when they are fewer than its threshold.
func roleSigners(root *manifest.Root, role string, keys []manifest.PrivateKey) ([]manifest.PrivateKey, error) {
	ro := root.Roles[role]
	var out []manifest.PrivateKey
	seen := map[string]bool{}
	for _, k := range keys {
		id := k.Public().ID()
		if slices.Contains(ro.KeyIDs, id) && !seen[id] {
			seen[id] = true
			out = append(out, k)
		}
	}
	if len(out) < ro.Threshold {
		return nil, fmt.Errorf("%w: the %s role of root %d needs %d signature(s) of its keys %s, and %d of the keys given belong to it: pass more secret keys (--key)",
			ErrRepo, role, root.Version, ro.Threshold, strings.Join(ro.KeyIDs, ", "), len(out))
	}
	return out, nil
}

// writeSigned writes one signature per key (DOC.ID.minisig), then the
// document itself, through writeFile.
func writeSigned(repo, doc string, raw []byte, keys []manifest.PrivateKey, sign func(manifest.PrivateKey, []byte) ([]byte, error)) error {
	for _, k := range keys {
		sig, err := sign(k, raw)
		if err != nil {
			return err
		}
		if err := writeFile(repo, manifest.SigPath(doc, k.Public().ID()), sig); err != nil {
			return err
		}
	}
	return writeFile(repo, doc, raw)
}

// signIndex writes the release keys' signatures of the index of sequence
// seq (raw) beside its history copy, writing the copy if it is missing.
func signIndex(repo string, seq uint64, raw []byte, keys []manifest.PrivateKey) error {
	if err := writeReleaseIndex(repo, raw, keys); err != nil {
		return err
	}
	return writeSigned(repo, manifest.IndexPath(seq), raw, keys, manifest.SignIndex)
}

// currentTimestamp returns the repository's timestamp, nil when none.
func currentTimestamp(repo string) (*manifest.Timestamp, error) {
	raw, err := readFile(repo, manifest.TimestampName, manifest.MaxTimestampSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	ts, err := manifest.ParseTimestamp(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v (move it away to start the timestamp sequence afresh)", ErrRepo, manifest.TimestampName, err)
	}
	return ts, nil
}

// writeTimestamp issues the next timestamp for the index raw (sequence
// seq) of platform ("" for the platform-less build), naming every other
// index as the current timestamp does, signed by the timestamp keys among
// keys. Its sequence follows the current timestamp's, or restarts at 1
// when restart is set (new timestamp keys: clients forget the sequences
// of the old ones, so a sequence fast-forwarded with a stolen key is left
// behind).
func writeTimestamp(repo, platform string, root *manifest.Root, seq uint64, raw []byte, keys []manifest.PrivateKey, now time.Time, validity time.Duration, restart bool) (*manifest.Timestamp, error) {
	prev, err := currentTimestamp(repo)
	if err != nil {
		return nil, err
	}
	var index manifest.IndexRef
	var plats map[string]manifest.IndexRef
	if prev != nil {
		index, plats = prev.Index, maps.Clone(prev.Platforms)
	}
	ref := manifest.IndexRef{Sequence: seq, Size: int64(len(raw)), SHA256: sha256Of(raw)}
	if platform == "" {
		index = ref
	} else {
		if plats == nil {
			plats = map[string]manifest.IndexRef{}
		}
		plats[platform] = ref
	}
	return issueTimestamp(repo, root, index, plats, keys, now, validity, restart)
}

// issueTimestamp writes the next timestamp naming index (the zero
// IndexRef: none), the platforms' indexes and the repository's current
// release policy (policy.json at repo's top, when there is one), as
// writeTimestamp.
func issueTimestamp(repo string, root *manifest.Root, index manifest.IndexRef, plats map[string]manifest.IndexRef, keys []manifest.PrivateKey, now time.Time, validity time.Duration, restart bool) (*manifest.Timestamp, error) {
	signers, err := roleSigners(root, manifest.RoleTimestamp, keys)
	if err != nil {
		return nil, err
	}
	prev, err := currentTimestamp(repo)
	if err != nil {
		return nil, err
	}
	if validity <= 0 {
		validity = DefaultTimestampValidity
	}
	ts := &manifest.Timestamp{Schema: manifest.RolesSchema, App: root.App, Sequence: 1, Expires: now.UTC().Truncate(time.Second).Add(validity),
		Index: index, Platforms: plats}
	// The repository's one policy, shared by every platform.
	if ts.Policy, err = currentPolicyRef(repo, root); err != nil {
		return nil, err
	}
	if prev != nil && !restart {
		if prev.Sequence >= manifest.MaxSafeInteger {
			return nil, fmt.Errorf("%w: %s has sequence %d, the highest there is: someone signed it with a stolen key; rotate the timestamp key (mkdelta key rotate --role timestamp), which restarts the sequence", ErrRepo, manifest.TimestampName, prev.Sequence)
		}
		ts.Sequence = prev.Sequence + 1
	}
	b, err := manifest.MarshalTimestamp(ts)
	if err != nil {
		return nil, err
	}
	prevMod := localMtime(repo, manifest.TimestampName)
	if err := writeSigned(repo, manifest.TimestampName, b, signers, manifest.SignTimestamp); err != nil {
		return nil, err
	}
	if err := laterThan(repo, prevMod, timestampFiles(signers)...); err != nil {
		return nil, err
	}
	return ts, nil
}

// RolesOptions are the common options of Migrate, ChangeKeys and Refresh.
type RolesOptions struct {
	Repo string
	// Keys are the secret keys at hand: each document is signed by those
	// of them that belong to its role (at least the role's threshold).
	Keys []manifest.PrivateKey
	// Validity of a new root (default DefaultRootValidity) and of a new
	// timestamp (default DefaultTimestampValidity).
	Validity, TimestampValidity time.Duration
	Now                         func() time.Time
	Log                         io.Writer
}

func (o *RolesOptions) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC().Truncate(time.Second)
	}
	return time.Now().UTC().Truncate(time.Second)
}

func (o *RolesOptions) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// currentIndexBy returns the repository's current index (manifest.json,
// completed by Recover), checks that one of pubs signed it and says which
// (its position).
func currentIndexBy(repo string, pubs []manifest.PublicKey) (loaded, int, error) {
	var ids []string
	for i, pub := range pubs {
		cur, err := loadManifest(repo, pub, "")
		if err == nil {
			return cur, i, nil
		}
		ids = append(ids, pub.ID())
	}
	return loaded{}, -1, fmt.Errorf("%w: %s is signed by none of the release keys given (%s): one of them must be the key the repository is signed with today",
		ErrRepo, manifest.ManifestName, strings.Join(ids, ", "))
}

// loadIndex is loadManifest for a v2 repository: manifest.json must carry
// a threshold of the release signatures of root (beside its history copy,
// manifests/SEQ.json.KEYID.minisig); manifest.json.minisig, kept for v1
// clients, may be by a key since rotated out. An empty repository gives
// a zero loaded.
func loadIndex(repo string, root *manifest.Root, app string) (loaded, error) {
	raw, err := readFile(repo, manifest.ManifestName, manifest.MaxManifestSize)
	if errors.Is(err, os.ErrNotExist) {
		return loaded{}, nil
	}
	if err != nil {
		return loaded{}, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		return loaded{}, fmt.Errorf("%w: %s: %v", ErrRepo, manifest.ManifestName, err)
	}
	ip := manifest.IndexPath(m.Sequence)
	if err := root.VerifyRole(manifest.RoleRelease, raw, readSigs(repo, ip, root.Roles[manifest.RoleRelease].KeyIDs)); err != nil {
		return loaded{}, fmt.Errorf("%w: %s (sequence %d): %v", ErrRepo, manifest.ManifestName, m.Sequence, err)
	}
	if app != "" && m.App != app {
		return loaded{}, fmt.Errorf("%w: the repository holds app %q, not %q", ErrRepo, m.App, app)
	}
	return loaded{m: m, raw: raw}, nil
}

// Migrate turns a v1 repository (or an empty one for app) into a v2 one:
// it writes root/1.json naming the public halves of roles' keys with the
// thresholds given (0 means 1), signed by the root keys; signs the current
// index with the release keys (one of which must be the key that signed
// it); and issues the first timestamp with the timestamp keys. v1 clients
// keep working: manifest.json and its signature are untouched. Nothing is
// written when a check fails.
func Migrate(ctx context.Context, app string, roles map[string][]manifest.PrivateKey, thresholds map[string]int, o RolesOptions) (*manifest.Root, error) {
	st, unlock, err := lockRoles(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if root, err := LoadRoot(o.Repo); err != nil || root != nil {
		if err == nil {
			err = fmt.Errorf("%w: %s already has root version %d: change its keys with `mkdelta key`", ErrRepo, o.Repo, root.Version)
		}
		return nil, err
	}
	var relPubs []manifest.PublicKey
	for _, k := range roles[manifest.RoleRelease] {
		relPubs = append(relPubs, k.Public())
	}
	// The platform-less index and every platform's (each a v1
	// repository of its own so far), each signed by one of the release keys.
	type v1Index struct {
		platformIndex
		signer int
	}
	var idx []v1Index
	plats, err := ListPlatforms(ctx, o.Repo)
	if err != nil {
		return nil, fmt.Errorf("%w: listing the platforms of %s: %v", ErrRepo, o.Repo, err)
	}
	for _, p := range append([]string{""}, plats...) {
		sub, err := platformRepo(o.Repo, p)
		if err != nil {
			return nil, err
		}
		cur, signer, err := currentIndexBy(sub, relPubs)
		if err == nil && cur.m == nil && p == "" {
			continue // platforms only
		}
		if err != nil {
			if p != "" {
				err = fmt.Errorf("platform %s: %w", p, err)
			}
			return nil, err
		}
		want := app
		if want == "" && len(idx) > 0 {
			want = idx[0].cur.m.App
		}
		if want != "" && cur.m.App != want {
			return nil, fmt.Errorf("%w: %s holds app %q, not %q", ErrRepo, sub, cur.m.App, want)
		}
		idx = append(idx, v1Index{platformIndex{platform: p, repo: sub, cur: cur}, signer})
	}
	if len(idx) == 0 {
		return nil, fmt.Errorf("%w: %s has no manifest.json: publish a first release, then migrate", ErrRepo, o.Repo)
	}
	validity := o.Validity
	if validity <= 0 {
		validity = DefaultRootValidity
	}
	root := &manifest.Root{Schema: manifest.RolesSchema, App: idx[0].cur.m.App, Version: 1, Expires: o.now().Add(validity), Keys: map[string]manifest.PublicKey{}, Roles: map[string]manifest.Role{}}
	var all []manifest.PrivateKey
	for _, name := range manifest.Roles {
		var ids []string
		for _, k := range roles[name] {
			pub := k.Public()
			root.Keys[pub.ID()] = pub
			if !slices.Contains(ids, pub.ID()) {
				ids = append(ids, pub.ID())
			}
			all = append(all, k)
		}
		slices.Sort(ids)
		th := thresholds[name]
		if th == 0 {
			th = 1
		}
		root.Roles[name] = manifest.Role{KeyIDs: ids, Threshold: th}
	}
	raw, err := manifest.MarshalRoot(root)
	if err != nil {
		return nil, fmt.Errorf("releasetools: root: %w", err)
	}
	if root, err = manifest.ParseRoot(raw); err != nil {
		return nil, err
	}
	rootSigners, err := roleSigners(root, manifest.RoleRoot, all)
	if err != nil {
		return nil, err
	}
	relSigners, err := roleSigners(root, manifest.RoleRelease, all)
	if err != nil {
		return nil, err
	}
	if _, err := roleSigners(root, manifest.RoleTimestamp, all); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// What an interrupted migration left: root signatures without
	// root/1.json, file lists the live indexes do not name (a bucket; each
	// platform's sub-repository against its own index).
	if err := cleanRootStrays(ctx, st, 0, o.logf); err != nil {
		return nil, err
	}
	stamped := make([]platformIndex, len(idx))
	for i, x := range idx {
		sst, _, err := storeOf(x.repo)
		if err != nil {
			return nil, err
		}
		if err := removeLeftovers(ctx, sst, x.cur.m, o.logf); err != nil {
			return nil, err
		}
		if x.cur, err = outlineFileLists(x.repo, x.cur, roles[manifest.RoleRelease][x.signer], relSigners, o.now(), o.logf); err != nil {
			return nil, err
		}
		stamped[i] = x.platformIndex
	}
	// The timestamp before root/1.json: root/1.json is what makes the
	// repository v2 (LoadRoot), so it comes last, when everything it
	// vouches for is in place.
	ts, err := stampIndexes(o.Repo, root, stamped, all, o.now(), o.TimestampValidity, true)
	if err != nil {
		return nil, err
	}
	o.logf("timestamp %d: %s, valid until %s", ts.Sequence, describeStamp(ts), ts.Expires.Format(time.RFC3339))
	if err := st.Fence(ctx); err != nil {
		return nil, err
	}
	if err := writeSigned(o.Repo, manifest.RootPath(1), raw, rootSigners, manifest.SignRoot); err != nil {
		return nil, err
	}
	o.logf("root 1: keys %s", strings.Join(slices.Sorted(maps.Keys(root.Keys)), ", "))
	return root, nil
}

// outlineFileLists moves every inline file list of the index cur into a
// file-list document (FileListPath, pinned by size and SHA-256) and
// publishes the result as the next index: signed by the release signers
// (beside its history copy, for v2 clients) and by v1Key (the key v1
// clients trust, manifest.json.minisig), with the same releases and
// expiry. The index shrinks by the file lists (about 140 bytes per tree
// entry per release); clients fetch a list only for a version they install
// or repair. An index without inline lists is only signed.
func outlineFileLists(repo string, cur loaded, v1Key manifest.PrivateKey, signers []manifest.PrivateKey, now time.Time, logf func(string, ...any)) (loaded, error) {
	m := *cur.m
	m.Releases = slices.Clone(cur.m.Releases)
	moved := 0
	for i := range m.Releases {
		r := &m.Releases[i]
		if r.Files == nil {
			continue
		}
		doc, err := manifest.MarshalFileList(&manifest.FileList{Schema: manifest.SchemaVersion, Version: r.Version, Files: r.Files})
		if err != nil {
			return loaded{}, err
		}
		rp := FileListPath(m.App, r.Version)
		if err := writeFile(repo, rp, doc); err != nil {
			return loaded{}, err
		}
		ref := manifest.NewFileListRef(rp, doc)
		r.FileList, r.Files = &ref, nil
		moved++
	}
	if moved == 0 {
		return cur, signIndex(repo, cur.m.Sequence, cur.raw, signers)
	}
	m.Sequence++
	if now.After(m.Issued) && now.Before(m.Expires) {
		m.Issued = now
	}
	raw, err := manifest.Marshal(&m)
	if err != nil {
		return loaded{}, err
	}
	sig, err := manifest.Sign(v1Key, raw)
	if err != nil {
		return loaded{}, err
	}
	if err := signIndex(repo, m.Sequence, raw, signers); err != nil {
		return loaded{}, err
	}
	if err := publishManifest(repo, raw, sig, m.Sequence); err != nil {
		return loaded{}, err
	}
	logf("index %d: %d file lists moved out of the index (%d -> %d bytes)", m.Sequence, moved, len(cur.raw), len(raw))
	nm, err := manifest.ParseUnverified(raw)
	if err != nil {
		return loaded{}, err
	}
	return loaded{m: nm, raw: raw}, nil
}

// KeyChange is one change of a role's keys: ChangeKeys applies it as a
// new root version.
type KeyChange struct {
	Role      string               // manifest.RoleRoot, RoleRelease or RoleTimestamp; "" with no change (renew)
	Add       []manifest.PublicKey // keys joining the role
	Remove    []string             // key IDs leaving it (revoked or rotated out)
	Threshold int                  // the role's new threshold; 0 keeps it (lowered to the key count if needed)
}

// ChangeKeys issues root version N+1 with the change applied and a new
// expiry (o.Validity), signed by a threshold of root N's root keys and of
// its own (o.Keys must hold enough of both). When the release role
// changes, the current index is signed by the new release keys too (o.Keys
// must reach the new release threshold); when the timestamp role changes,
// a new timestamp is issued with the new timestamp keys. Clients walk to
// the new root on their next check and forget the sequences they accepted
// for a role whose keys changed. Nothing is written when a check fails.
func ChangeKeys(ctx context.Context, kc KeyChange, o RolesOptions) (*manifest.Root, error) {
	st, unlock, old, err := lockV2(ctx, o.Repo, o.logf)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A change that stopped between root N and its timestamp: run again,
	// it issues the timestamp.
	tsSigned := timestampSigned(o.Repo, old)
	if !tsSigned && changeInEffect(old, kc) {
		if _, err := roleSigners(old, manifest.RoleTimestamp, o.Keys); err != nil {
			return nil, fmt.Errorf("root %d already holds this change, but timestamp.json is not signed by its timestamp keys (the command that made it stopped before the timestamp): %w", old.Version, err)
		}
		if _, err := completeTimestamp(ctx, st, old, o, fmt.Sprintf(" (completing the interrupted change to root %d)", old.Version)); err != nil {
			return nil, err
		}
		return old, nil
	}
	validity := o.Validity
	if validity <= 0 {
		validity = DefaultRootValidity
	}
	next := &manifest.Root{Schema: manifest.RolesSchema, App: old.App, Version: old.Version + 1, Expires: o.now().Add(validity),
		Keys: maps.Clone(old.Keys), Roles: map[string]manifest.Role{}}
	for name, ro := range old.Roles {
		next.Roles[name] = manifest.Role{KeyIDs: slices.Clone(ro.KeyIDs), Threshold: ro.Threshold}
	}
	if kc.Role != "" {
		ro, ok := next.Roles[kc.Role]
		if !ok {
			return nil, fmt.Errorf("releasetools: no role %q (roles: %s)", kc.Role, strings.Join(manifest.Roles, ", "))
		}
		for _, id := range kc.Remove {
			if !slices.Contains(ro.KeyIDs, id) {
				return nil, fmt.Errorf("%w: key %s is not a %s key of root %d (its keys: %s)", ErrRepo, id, kc.Role, old.Version, strings.Join(ro.KeyIDs, ", "))
			}
			ro.KeyIDs = slices.DeleteFunc(ro.KeyIDs, func(s string) bool { return s == id })
		}
		for _, k := range kc.Add {
			if slices.Contains(ro.KeyIDs, k.ID()) {
				return nil, fmt.Errorf("%w: key %s is a %s key already", ErrRepo, k.ID(), kc.Role)
			}
			next.Keys[k.ID()] = k
			ro.KeyIDs = append(ro.KeyIDs, k.ID())
		}
		slices.Sort(ro.KeyIDs)
		if kc.Threshold > 0 {
			ro.Threshold = kc.Threshold
		} else if ro.Threshold > len(ro.KeyIDs) {
			ro.Threshold = len(ro.KeyIDs)
		}
		next.Roles[kc.Role] = ro
		// Keys no role uses any more leave the root.
		for id := range next.Keys {
			used := false
			for _, r := range next.Roles {
				used = used || slices.Contains(r.KeyIDs, id)
			}
			if !used {
				delete(next.Keys, id)
			}
		}
	}
	raw, err := manifest.MarshalRoot(next)
	if err != nil {
		return nil, fmt.Errorf("releasetools: root %d: %w", next.Version, err)
	}
	if next, err = manifest.ParseRoot(raw); err != nil {
		return nil, err
	}
	oldSigners, err := roleSigners(old, manifest.RoleRoot, o.Keys)
	if err != nil {
		return nil, fmt.Errorf("signing root %d with the keys of root %d: %w", next.Version, old.Version, err)
	}
	newSigners, err := roleSigners(next, manifest.RoleRoot, o.Keys)
	if err != nil {
		return nil, fmt.Errorf("signing root %d with its own keys: %w", next.Version, err)
	}
	signers := slices.Clone(oldSigners)
	for _, k := range newSigners {
		if !slices.ContainsFunc(signers, func(s manifest.PrivateKey) bool { return s.Public().Equal(k.Public()) }) {
			signers = append(signers, k)
		}
	}
	releaseChanged := next.RoleFingerprint(manifest.RoleRelease) != old.RoleFingerprint(manifest.RoleRelease)
	tsChanged := next.RoleFingerprint(manifest.RoleTimestamp) != old.RoleFingerprint(manifest.RoleTimestamp)
	var idx []platformIndex
	var relSigners []manifest.PrivateKey
	if releaseChanged || tsChanged {
		if idx, err = currentIndexes(o.Repo, old); err != nil {
			return nil, err
		}
	}
	if releaseChanged {
		if relSigners, err = roleSigners(next, manifest.RoleRelease, o.Keys); err != nil {
			return nil, fmt.Errorf("re-signing the current index with the new release keys: %w", err)
		}
	}
	if tsChanged {
		if _, err := roleSigners(next, manifest.RoleTimestamp, o.Keys); err != nil {
			return nil, fmt.Errorf("issuing a timestamp with the new timestamp keys: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if releaseChanged {
		for _, x := range idx {
			if err := signIndex(x.repo, x.cur.m.Sequence, x.cur.raw, relSigners); err != nil {
				return nil, err
			}
		}
		if err := resignPolicy(o.Repo, old, relSigners); err != nil {
			return nil, err
		}
	}
	if err := st.Fence(ctx); err != nil {
		return nil, err
	}
	if err := writeSigned(o.Repo, manifest.RootPath(next.Version), raw, signers, manifest.SignRoot); err != nil {
		return nil, err
	}
	o.logf("root %d: valid until %s", next.Version, next.Expires.Format(time.RFC3339))
	if !tsChanged && !tsSigned {
		if _, err := roleSigners(next, manifest.RoleTimestamp, o.Keys); err == nil {
			if _, err := completeTimestamp(ctx, st, next, o, fmt.Sprintf(" (completing the change to root %d an earlier command stopped before its timestamp)", old.Version)); err != nil {
				return nil, err
			}
		} else {
			o.logf("timestamp.json is not signed by the timestamp keys of root %d (an earlier command stopped before it): run mkdelta refresh with them", next.Version)
		}
	}
	if tsChanged {
		ts, err := stampIndexes(o.Repo, next, idx, o.Keys, o.now(), o.TimestampValidity, true)
		if err != nil {
			return nil, err
		}
		o.logf("timestamp %d: %s, valid until %s", ts.Sequence, describeStamp(ts), ts.Expires.Format(time.RFC3339))
	}
	return next, nil
}

// Refresh issues the next timestamp for the repository's current indexes
// (the platform-less one and every platform's, each re-read and checked),
// valid for o.TimestampValidity (default a day), signed by the timestamp
// keys among o.Keys. A cron or CI job runs it more often than the validity
// (say every 6 hours for a day's validity); clients refuse a timestamp
// that has expired, so a mirror that stops updating is detected within
// the validity. The index must be signed by a threshold of the release
// keys: Refresh never vouches for an index the release keys did not sign.
func Refresh(ctx context.Context, o RolesOptions) (*manifest.Timestamp, error) {
	st, unlock, root, err := lockV2(ctx, o.Repo, o.logf)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return completeTimestamp(ctx, st, root, o, "")
}

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }

// rolesPlan is what Publish does for a v2 repository, decided before it
// writes anything.
type rolesPlan struct {
	root     *manifest.Root // nil for a v1 repository
	top      string         // the repository (root, timestamp), when the index is a platform's
	platform string         // the platform published, "" for the platform-less build
	release  []manifest.PrivateKey
	stamping bool // timestamp keys reach the threshold
}

// planRoles checks, for a v2 repository, that Key and ExtraKeys reach the
// release threshold and whether TimestampKeys reach the timestamp one.
func planRoles(o *PublishOptions) (rolesPlan, error) {
	root, err := LoadRoot(o.Repo)
	if err == nil && root == nil && o.Policy != nil {
		err = fmt.Errorf("%w: rollout settings (--rollout, --critical, --notes) need a v2 repository: run `mkdelta migrate` first", ErrRepo)
	}
	if err != nil || root == nil {
		return rolesPlan{}, err
	}
	keys := append([]manifest.PrivateKey{o.Key}, o.ExtraKeys...)
	if !slices.Contains(root.Roles[manifest.RoleRelease].KeyIDs, o.Key.Public().ID()) {
		return rolesPlan{}, fmt.Errorf("%w: the key %s is not a release key of root %d (release keys: %s)", ErrRepo, o.Key.Public().ID(), root.Version, strings.Join(root.Roles[manifest.RoleRelease].KeyIDs, ", "))
	}
	rel, err := roleSigners(root, manifest.RoleRelease, keys)
	if err != nil {
		return rolesPlan{}, err
	}
	p := rolesPlan{root: root, release: rel}
	if len(o.TimestampKeys) > 0 {
		if _, err := roleSigners(root, manifest.RoleTimestamp, o.TimestampKeys); err != nil {
			return rolesPlan{}, err
		}
		p.stamping = true
	}
	return p, nil
}

// signNewIndex writes the release keys' signatures of the new index
// (sequence seq, bytes raw) beside its history copy, before manifest.json
// changes: an index in place always carries them.
func signNewIndex(o *PublishOptions, p rolesPlan, seq uint64, raw []byte) error {
	if p.root == nil {
		return nil
	}
	return signIndex(o.Repo, seq, raw, p.release)
}

// publishRoles issues the timestamp that makes the new index (sequence
// seq, bytes raw) visible to v2 clients, once it is in place.
func publishRoles(o *PublishOptions, p rolesPlan, seq uint64, raw []byte, logf func(string, ...any)) error {
	if p.root == nil {
		return nil
	}
	sigs := readSigs(o.Repo, manifest.IndexPath(seq), p.root.Roles[manifest.RoleRelease].KeyIDs)
	if err := writeDeltas(o.Repo, seq, raw, sigs, logf); err != nil {
		return err
	}
	if err := writeReleaseDeltas(o.Repo, seq, p.root.Roles[manifest.RoleRelease].KeyIDs); err != nil {
		return err
	}
	if !p.stamping {
		logf("no timestamp key given: v2 clients see sequence %d after the next `mkdelta refresh`", seq)
		return nil
	}
	top := cmp.Or(p.top, o.Repo)
	ts, err := writeTimestamp(top, p.platform, p.root, seq, raw, o.TimestampKeys, o.Now(), o.TimestampValidity, false)
	if err != nil {
		return err
	}
	logf("timestamp %d: %s, valid until %s", ts.Sequence, describeStamp(ts), ts.Expires.Format(time.RFC3339))
	return nil
}

// verifyRoles checks the v2 documents of a repository as a client would
// (nothing for a v1 repository): the root chain and the newest root's
// expiry, the release signatures of the current index m (bytes raw), and
// the timestamp: its signatures, expiry, and that it names this index (as
// platform's; top is the repository, repo the platform's sub-repository).
func verifyRoles(top, repo, platform string, m *manifest.Manifest, raw []byte, now time.Time) []Fault {
	root, err := LoadRoot(top)
	if err != nil {
		return []Fault{{Path: manifest.RootDir + "/", Err: err}}
	}
	if root == nil {
		return nil
	}
	var out []Fault
	if err := root.CheckFresh(now); err != nil {
		out = append(out, Fault{Path: manifest.RootPath(root.Version), Err: err})
	}
	ip := manifest.IndexPath(m.Sequence)
	if err := root.VerifyRole(manifest.RoleRelease, raw, readSigs(repo, ip, root.Roles[manifest.RoleRelease].KeyIDs)); err != nil {
		out = append(out, Fault{Path: ip, Err: err})
	}
	out = append(out, verifyReleaseIndex(repo, root, m, raw)...)
	tsRaw, err := readFile(top, manifest.TimestampName, manifest.MaxTimestampSize)
	if err != nil {
		return append(out, Fault{Path: manifest.TimestampName, Err: err})
	}
	sigs := readSigs(top, manifest.TimestampName, root.Roles[manifest.RoleTimestamp].KeyIDs)
	ts, err := manifest.OpenTimestamp(tsRaw, sigs, root, manifest.TimestampOptions{App: root.App, Now: now})
	if err != nil {
		return append(out, Fault{Path: manifest.TimestampName, Err: fmt.Errorf("%w (mkdelta refresh issues a new one)", err)})
	}
	if ref, ok := ts.IndexFor(platform); !ok {
		out = append(out, Fault{Path: manifest.TimestampName, Err: fmt.Errorf("names no index for %s: v2 clients do not see it yet; run mkdelta refresh", platformText(platform))})
	} else if ref.Sequence != m.Sequence || ref.SHA256 != sha256Of(raw) {
		out = append(out, Fault{Path: manifest.TimestampName, Err: fmt.Errorf("names index %d for %s, but %s is index %d: v2 clients do not see it yet; run mkdelta refresh", ref.Sequence, platformText(platform), manifest.PlatformPath(platform, manifest.ManifestName), m.Sequence)})
	}
	// The policy is the repository's (at top), whatever the platform.
	return append(out, verifyPolicy(top, root, ts, now)...)
}

// DeltaDepth is how many earlier indexes get a delta to each new one: a
// client that missed up to this many publishes fetches a delta, one
// further behind the whole index.
const DeltaDepth = 8

// writeDeltas writes deltas/S-SEQ.json from each of the DeltaDepth
// indexes before seq (their history copies) to the new index raw, with
// its release signatures sigs, where the delta is smaller than the index.
func writeDeltas(repo string, seq uint64, raw []byte, sigs map[string][]byte, logf func(string, ...any)) error {
	next, err := manifest.ParseUnverified(raw)
	if err != nil {
		return err
	}
	for s := seq - 1; s >= 1 && s+DeltaDepth >= seq; s-- {
		old, err := readFile(repo, manifest.IndexPath(s), manifest.MaxManifestSize)
		if err != nil {
			continue // pruned or never written
		}
		base, err := manifest.ParseUnverified(old)
		if err != nil {
			continue
		}
		d, err := manifest.MakeDelta(base, next, sigs)
		if err != nil {
			return err
		}
		if len(d) >= len(raw) {
			continue
		}
		if err := writeFile(repo, manifest.DeltaPath(s, seq), d); err != nil {
			return err
		}
	}
	logf("deltas to index %d from the %d before it", seq, min(uint64(DeltaDepth), seq-1))
	return nil
}
