package releasetools

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// The release policy of a v2 repository (docs/FORMAT.md, "Release
// policy"): policy/SEQ.json, signed by a threshold of the release keys
// (policy/SEQ.json.KEYID.minisig), its publisher's copy policy.json, and
// the timestamp that names it. A rollout change, a halt or a pull costs a
// policy of a few hundred bytes and a timestamp: no new index, no patch.

// PolicyChange is one change of the release policy. Version names the
// release the flags apply to; it may be "" when only MinimumVersion
// changes. A nil pointer leaves the setting as it is.
type PolicyChange struct {
	Version string
	// Percent sets the rollout (0..100; 100: every install). Raising it
	// keeps every install already in.
	Percent *int
	// Halt stops offering the release (installs on it keep it); Resume
	// offers it again. Pull: never installed again, and installs on it
	// are offered the next good release; Unpull undoes it.
	Halt, Resume, Pull, Unpull bool
	// Critical: offered to every install whatever its rollout, shown as
	// critical; NotCritical clears it.
	Critical, NotCritical bool
	// Notes and NotesURL set the release notes ("" clears them).
	Notes, NotesURL *string
	// MinimumVersion sets the lowest version supported, a release of the
	// index ("" clears it): installs below it must update to at least it.
	MinimumVersion *string
	// Renew issues the next policy even when nothing else changes: a new
	// expiry.
	Renew bool
}

func (ch *PolicyChange) empty() bool {
	return ch.Percent == nil && !ch.Halt && !ch.Resume && !ch.Pull && !ch.Unpull && !ch.Critical && !ch.NotCritical &&
		ch.Notes == nil && ch.NotesURL == nil && ch.MinimumVersion == nil
}

// validate checks the change alone (no repository needed) and normalizes
// its versions.
func (ch *PolicyChange) validate() error {
	if ch.empty() && !ch.Renew {
		return errors.New("releasetools: the policy change changes nothing: give a rollout percentage, halt, resume, pull, critical, notes or a minimum version (or renew it)")
	}
	perRelease := !(ch.Percent == nil && !ch.Halt && !ch.Resume && !ch.Pull && !ch.Unpull && !ch.Critical && !ch.NotCritical && ch.Notes == nil && ch.NotesURL == nil)
	switch {
	case perRelease && ch.Version == "":
		return errors.New("releasetools: which release? the policy change needs a version")
	case ch.Halt && ch.Resume, ch.Pull && ch.Unpull, ch.Critical && ch.NotCritical:
		return errors.New("releasetools: the policy change both sets and clears one setting (halt/resume, pull/unpull, critical/not critical)")
	case ch.Pull && ch.Critical:
		return errors.New("releasetools: a release cannot be both pulled and critical")
	case ch.Percent != nil && (*ch.Percent < 0 || *ch.Percent > manifest.FullRollout):
		return fmt.Errorf("releasetools: rollout %d%% outside 0..100", *ch.Percent)
	}
	if ch.Notes != nil && *ch.Notes != "" {
		if err := manifest.CheckNotes(*ch.Notes); err != nil {
			return err
		}
	}
	if ch.NotesURL != nil && *ch.NotesURL != "" {
		if err := manifest.CheckNotesURL(*ch.NotesURL); err != nil {
			return err
		}
	}
	if ch.Version != "" {
		v, err := manifest.NormalizeVersion(ch.Version)
		if err != nil {
			return fmt.Errorf("releasetools: %w", err)
		}
		ch.Version = v
	}
	if ch.MinimumVersion != nil && *ch.MinimumVersion != "" {
		v, err := manifest.NormalizeVersion(*ch.MinimumVersion)
		if err != nil {
			return fmt.Errorf("releasetools: minimum version: %w", err)
		}
		ch.MinimumVersion = &v
	}
	return nil
}

// apply returns e changed by ch.
func (ch *PolicyChange) apply(e manifest.PolicyEntry) manifest.PolicyEntry {
	if ch.Percent != nil {
		e.Rollout = *ch.Percent
	}
	e.Halted = (e.Halted || ch.Halt) && !ch.Resume
	e.Pulled = (e.Pulled || ch.Pull) && !ch.Unpull
	e.Critical = (e.Critical || ch.Critical) && !ch.NotCritical
	if ch.Notes != nil {
		e.Notes = *ch.Notes
	}
	if ch.NotesURL != nil {
		e.NotesURL = *ch.NotesURL
	}
	return e
}

// PolicyOptions are the options of SetPolicy.
type PolicyOptions struct {
	Repo string // a local directory or a bucket URL (see OpenStore)
	// Keys sign the policy: those of them that are release keys of the
	// repository's root, at least its release threshold.
	Keys []manifest.PrivateKey
	// TimestampKeys, when given, issue the timestamp that shows the new
	// policy to clients at once (else after the next Refresh).
	TimestampKeys []manifest.PrivateKey
	// Validity of the new policy (default DefaultValidity: clients refuse
	// an expired one, so change the policy or re-issue it before) and of
	// the timestamp (default DefaultTimestampValidity).
	Validity, TimestampValidity time.Duration
	Now                         func() time.Time
	Log                         io.Writer
}

// SetPolicy applies ch to the release policy of the v2 repository
// o.Repo (creating the policy on its first change): the next policy,
// signed by the release keys among o.Keys, and with o.TimestampKeys a
// timestamp naming it and every current index (the platform-less one and
// each platform's: one policy serves them all). Everything is checked
// before anything is written: the change, the repository's root and
// indexes (the version must be a release of one of them), the keys'
// thresholds. It holds the publish
// lock. Cost: a few small documents.
func SetPolicy(ctx context.Context, ch PolicyChange, o PolicyOptions) (*manifest.Policy, error) {
	if err := ch.validate(); err != nil {
		return nil, err
	}
	ro := RolesOptions{Repo: o.Repo, Now: o.Now, Log: o.Log}
	// The key commands' lock: the publish lock, every platform's
	// sub-repository reachable on a bucket too.
	st, release, err := lockRoles(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	defer release()
	root, err := LoadRoot(o.Repo)
	if err == nil && root == nil {
		err = fmt.Errorf("%w: %s has no root: rollouts need a v2 repository; run `mkdelta migrate` first", ErrRepo, o.Repo)
	}
	if err != nil {
		return nil, err
	}
	// One policy for the whole repository: its versions are checked
	// against every current index (the platform-less one and each
	// platform's).
	idx, err := currentIndexes(o.Repo, root)
	if err != nil {
		return nil, err
	}
	signers, err := roleSigners(root, manifest.RoleRelease, o.Keys)
	if err != nil {
		return nil, err
	}
	if len(o.TimestampKeys) > 0 {
		if _, err := roleSigners(root, manifest.RoleTimestamp, o.TimestampKeys); err != nil {
			return nil, err
		}
	}
	p, raw, err := nextPolicy(o.Repo, root, idx, ch, ro.now(), o.Validity)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := st.Fence(ctx); err != nil {
		return nil, err
	}
	if err := writePolicy(o.Repo, p, raw, signers); err != nil {
		return nil, err
	}
	ro.logf("policy %d: %s", p.Sequence, describePolicy(p))
	if len(o.TimestampKeys) == 0 {
		ro.logf("no timestamp key given: clients see policy %d after the next `mkdelta refresh`", p.Sequence)
		return p, nil
	}
	// The timestamp names every current index, as Refresh, and the new
	// policy.
	ts, err := stampIndexes(o.Repo, root, idx, o.TimestampKeys, ro.now(), o.TimestampValidity, false)
	if err != nil {
		return nil, err
	}
	ro.logf("timestamp %d: %s, policy %d, valid until %s", ts.Sequence, describeStamp(ts), p.Sequence, ts.Expires.Format(time.RFC3339))
	return p, nil
}

// lockStore opens repo's store (useStore) and takes its publish lock
// (Store.Lock); release unlocks and releases the store.
func lockStore(ctx context.Context, repo string) (Store, func(), error) {
	st, done, err := useStore(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := st.Lock(ctx)
	if err != nil {
		done()
		return nil, nil, err
	}
	return st, func() { unlock(); done() }, nil
}

// describePolicy lists a policy's settings in one line.
func describePolicy(p *manifest.Policy) string {
	s := "minimum version none"
	if p.MinimumVersion != "" {
		s = "minimum version " + p.MinimumVersion
	}
	for _, e := range p.Releases {
		s += "; " + e.String()
	}
	return s + "; valid until " + p.Expires.Format(time.RFC3339)
}

// currentPolicy returns the repository's current policy (policy.json)
// and its bytes, checked: it parses, is for root's app and carries a
// threshold of root's release signatures (beside policy/SEQ.json); nil
// when the repository has none.
func currentPolicy(repo string, root *manifest.Root) (*manifest.Policy, []byte, error) {
	raw, err := readFile(repo, manifest.PolicyName, manifest.MaxPolicySize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	p, err := manifest.ParsePolicy(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrRepo, manifest.PolicyName, err)
	}
	if p.App != root.App {
		return nil, nil, fmt.Errorf("%w: %s is for app %q, the root for %q", ErrRepo, manifest.PolicyName, p.App, root.App)
	}
	pp := manifest.PolicyPath(p.Sequence)
	if err := root.VerifyRole(manifest.RoleRelease, raw, readSigs(repo, pp, root.Roles[manifest.RoleRelease].KeyIDs)); err != nil {
		return nil, nil, fmt.Errorf("%w: %s (sequence %d): %v: change the policy with the release keys (mkdelta rollout)", ErrRepo, manifest.PolicyName, p.Sequence, err)
	}
	return p, raw, nil
}

// currentPolicyRef returns the reference a timestamp gives to the
// repository's current policy (nil when it has none).
func currentPolicyRef(repo string, root *manifest.Root) (*manifest.IndexRef, error) {
	p, raw, err := currentPolicy(repo, root)
	if p == nil || err != nil {
		return nil, err
	}
	return &manifest.IndexRef{Sequence: p.Sequence, Size: int64(len(raw)), SHA256: sha256Of(raw)}, nil
}

// nextPolicy returns the policy after the current one with ch applied,
// for the current indexes idx (the platform-less one and each
// platform's: one policy for them all, a version names the same release
// on every platform): ch's versions must be releases of one of them;
// entries of versions none of them has any more, and entries that change
// nothing, are dropped.
func nextPolicy(repo string, root *manifest.Root, idx []platformIndex, ch PolicyChange, now time.Time, validity time.Duration) (*manifest.Policy, []byte, error) {
	cur, _, err := currentPolicy(repo, root)
	if err != nil {
		return nil, nil, err
	}
	if validity <= 0 {
		validity = DefaultValidity
	}
	p := &manifest.Policy{Schema: manifest.RolesSchema, App: root.App, Sequence: 1}
	if cur != nil {
		if cur.Sequence >= manifest.MaxSafeInteger {
			return nil, nil, fmt.Errorf("%w: %s has sequence %d, the highest there is: someone signed it with a stolen release key; rotate the release keys (mkdelta key rotate --role release) and move %s away", ErrRepo, manifest.PolicyName, cur.Sequence, manifest.PolicyName)
		}
		p.Sequence, p.MinimumVersion = cur.Sequence+1, cur.MinimumVersion
		p.Releases = slices.Clone(cur.Releases)
	}
	p.Expires = now.Add(validity)
	if ch.MinimumVersion != nil {
		if v := *ch.MinimumVersion; v != "" {
			if _, err := releaseIn(idx, v); err != nil {
				return nil, nil, fmt.Errorf("%w: minimum version %s is not a release of %s: publish it first", ErrRepo, v, describeIndexes(idx))
			}
		}
		p.MinimumVersion = *ch.MinimumVersion
	}
	if ch.Version != "" {
		r, err := releaseIn(idx, ch.Version)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s is not a release of %s", ErrRepo, ch.Version, describeIndexes(idx))
		}
		e, _ := p.Entry(r.Version)
		e = ch.apply(e)
		if e.Pulled && e.Critical {
			return nil, nil, fmt.Errorf("%w: %s is critical: clear it (--no-critical) to pull it", ErrRepo, r.Version)
		}
		p.Releases = slices.DeleteFunc(p.Releases, func(x manifest.PolicyEntry) bool { return x.Version == r.Version })
		p.Releases = append(p.Releases, e)
	}
	p.Releases = slices.DeleteFunc(p.Releases, func(e manifest.PolicyEntry) bool {
		_, err := releaseIn(idx, e.Version)
		return err != nil || e == (manifest.PolicyEntry{Version: e.Version, Rollout: manifest.FullRollout})
	})
	slices.SortFunc(p.Releases, func(a, b manifest.PolicyEntry) int {
		c, _ := manifest.Compare(a.Version, b.Version)
		return c
	})
	raw, err := manifest.MarshalPolicy(p)
	if err != nil {
		return nil, nil, fmt.Errorf("releasetools: policy %d: %w", p.Sequence, err)
	}
	if p, err = manifest.ParsePolicy(raw); err != nil {
		return nil, nil, err
	}
	return p, raw, nil
}

// releaseIn returns the release version of the first index of idx that
// has it (manifest.Release); an error wrapping manifest.ErrNotFound when
// none has.
func releaseIn(idx []platformIndex, version string) (*manifest.Release, error) {
	for _, x := range idx {
		if r, err := x.cur.m.Release(version); err == nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: version %s is in no index", manifest.ErrNotFound, version)
}

// describeIndexes names indexes for messages: "index 5" for the
// platform-less one, "linux-amd64 index 3" for a platform's.
func describeIndexes(idx []platformIndex) string {
	var parts []string
	for _, x := range idx {
		s := fmt.Sprintf("index %d", x.cur.m.Sequence)
		if x.platform != "" {
			s = x.platform + " " + s
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "no index"
	}
	return strings.Join(parts, ", ")
}

// writePolicy writes the release signatures of policy p (bytes raw), its
// history copy policy/SEQ.json, then policy.json: the copy a timestamp
// names is in place, signed, before anything points to it.
func writePolicy(repo string, p *manifest.Policy, raw []byte, signers []manifest.PrivateKey) error {
	if err := writeSigned(repo, manifest.PolicyPath(p.Sequence), raw, signers, manifest.SignPolicy); err != nil {
		return err
	}
	return writeFile(repo, manifest.PolicyName, raw)
}

// resignPolicy signs the current policy (checked against root old) with
// the new release keys signers, beside its history copy, before the root
// that names them is written: clients of the new root find their
// signatures.
func resignPolicy(repo string, old *manifest.Root, signers []manifest.PrivateKey) error {
	p, raw, err := currentPolicy(repo, old)
	if p == nil || err != nil {
		return err
	}
	return writeSigned(repo, manifest.PolicyPath(p.Sequence), raw, signers, manifest.SignPolicy)
}

// publishPolicy applies o.Policy to the new release of m (the index about
// to be published, the platform-less one or a platform's: the policy at
// the repository's top serves them all) before the index is in place, so that the release is
// never visible without its policy (a publish killed in between leaves an
// entry for a version the index does not have yet, which clients ignore).
// Without o.Policy, a repository's existing policy is renewed (a new
// expiry, as the index gets): a publisher who publishes but never changes
// the policy does not see it expire.
func publishPolicy(o *PublishOptions, p rolesPlan, m *manifest.Manifest, logf func(string, ...any)) error {
	if p.root == nil {
		return nil
	}
	top := cmp.Or(p.top, o.Repo) // the policy is the repository's, whatever the platform
	ch := PolicyChange{Renew: true}
	if o.Policy != nil {
		ch = *o.Policy
		ch.Version = o.Version
	} else if cur, _, err := currentPolicy(top, p.root); cur == nil || err != nil {
		return err
	}
	if err := ch.validate(); err != nil {
		return err
	}
	// The versions are checked against every current index, the one
	// published (m) in place of its platform's.
	idx, err := loadIndexes(top, p.root)
	if err != nil {
		return err
	}
	idx = slices.DeleteFunc(idx, func(x platformIndex) bool { return x.platform == p.platform })
	idx = append(idx, platformIndex{platform: p.platform, repo: o.Repo, cur: loaded{m: m}})
	pol, raw, err := nextPolicy(top, p.root, idx, ch, o.Now().UTC().Truncate(time.Second), o.Validity)
	if err != nil {
		return err
	}
	if err := writePolicy(top, pol, raw, p.release); err != nil {
		return err
	}
	logf("policy %d: %s", pol.Sequence, describePolicy(pol))
	return nil
}

// verifyPolicy checks the repository's policy as a client would: signed
// by the release keys, not expired, and named by the timestamp ts.
func verifyPolicy(repo string, root *manifest.Root, ts *manifest.Timestamp, now time.Time) []Fault {
	p, raw, err := currentPolicy(repo, root)
	if err != nil {
		return []Fault{{Path: manifest.PolicyName, Err: err}}
	}
	if p == nil {
		if ts.Policy != nil {
			return []Fault{{Path: manifest.TimestampName, Err: fmt.Errorf("names policy %d, but the repository has no %s", ts.Policy.Sequence, manifest.PolicyName)}}
		}
		return nil
	}
	var out []Fault
	if !now.Before(p.Expires) {
		out = append(out, Fault{Path: manifest.PolicyPath(p.Sequence), Err: fmt.Errorf("%w: expired at %s: clients refuse every check; issue a new one (mkdelta rollout)", manifest.ErrExpired, p.Expires.Format(time.RFC3339))})
	}
	if ts.Policy == nil || ts.Policy.Sequence != p.Sequence || ts.Policy.SHA256 != sha256Of(raw) {
		out = append(out, Fault{Path: manifest.TimestampName, Err: fmt.Errorf("does not name policy %d (%s): clients do not see it yet; run mkdelta refresh", p.Sequence, manifest.PolicyName)})
	}
	return out
}
