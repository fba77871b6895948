package apply

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// The release policy of a v2 repository (docs/FORMAT.md, "Release
// policy"): rollouts, halts, pulls, critical releases, the minimum
// supported version and release notes, from policy/SEQ.json, which the
// timestamp names.

// ErrPulled: the version asked for (Config.To) was pulled by the
// publisher; it is never installed. It comes wrapped in ErrRefused.
var ErrPulled = errors.New("apply: version pulled by the publisher")

// Withheld is a newer version of the channel the check did not offer.
type Withheld struct {
	Version string `json:"version"`
	// Reason is "pulled", "halted" or "rollout" (this install is not in
	// the release's rollout yet; Rollout is its percentage).
	Reason  string `json:"reason"`
	Rollout int    `json:"rollout"`
}

// fetchPolicy returns the release policy the timestamp ts names (nil when
// it names none), checked as the index is: taken from the cache when the
// cached copy has the named size and SHA-256, else fetched with a cap of
// exactly that size; then OpenPolicy (hash, a threshold of the release
// keys' signatures before parsing, strict parsing, app, sequence not
// below the one accepted under the same release keys, expiry). A
// timestamp that names no policy is refused once a policy was accepted
// under the same release keys: dropping it would lift halts and pulls.
func (rf *rolesFetch) fetchPolicy(ctx context.Context, root *manifest.Root, ts *manifest.Timestamp, st *State, sameKeys bool, now time.Time) (*manifest.Policy, error) {
	ref := ts.Policy
	if ref == nil {
		if sameKeys && st.PolicySequence > 0 {
			return nil, fmt.Errorf("%w: %w: the timestamp names no release policy, but this client accepted policy %d before: a timestamp without it would lift halts and pulls; trying another mirror",
				ErrRefused, manifest.ErrRollback, st.PolicySequence)
		}
		return nil, nil
	}
	opts := manifest.PolicyOptions{App: rf.cfg.App, Now: now}
	if sameKeys {
		opts.MinSequence = st.PolicySequence
		opts.SeenHash, _ = decodeHash("policy_hash", st.PolicyHash)
	}
	pp := manifest.PolicyPath(ref.Sequence)
	if raw, ok := rf.cache.Docs[pp]; ok && int64(len(raw)) == ref.Size && sha256.Sum256(raw) == ref.SHA256 {
		sigs := map[string][]byte{}
		for _, id := range root.Roles[manifest.RoleRelease].KeyIDs {
			if s, ok := rf.cache.Docs[manifest.SigPath(pp, id)]; ok {
				sigs[id] = s
			}
		}
		if p, err := manifest.OpenPolicy(raw, sigs, root, *ref, opts); err == nil {
			rf.docs[pp] = raw
			for id, s := range sigs {
				rf.docs[manifest.SigPath(pp, id)] = s
			}
			return p, nil
		}
	}
	raw, err := rf.f.Get(ctx, pp, ref.Size)
	if err != nil {
		return nil, fetchError(pp, err)
	}
	rf.docs[pp] = raw
	sigs, err := rf.roleSigs(ctx, root, manifest.RoleRelease, pp, raw, nil)
	if err != nil {
		return nil, err
	}
	p, err := manifest.OpenPolicy(raw, sigs, root, *ref, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return p, nil
}

// recordPolicy records the policy accepted (nil: none) in the state.
func (s *State) recordPolicy(p *manifest.Policy) {
	s.policy = p
	if p == nil {
		s.PolicySequence, s.PolicyHash = 0, ""
		return
	}
	s.PolicySequence, s.PolicyHash = p.Sequence, hexHash(p.ContentHash())
}

// Policy returns the release policy accepted by the last check with this
// state (v2 repositories that publish one), nil when there is none.
func (s *State) Policy() *manifest.Policy { return s.policy }

// checkInstallID checks the install id of state.json: empty, or 32
// lowercase hex digits.
func checkInstallID(id string) error {
	if id == "" {
		return nil
	}
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 16 || hex.EncodeToString(b) != id {
		return fmt.Errorf("install_id %q is not 32 lowercase hex digits", id)
	}
	return nil
}

// ensureInstallID gives the install its random 128-bit id, once: it is
// kept in state.json and decides which rollouts the install is in.
func (s *State) ensureInstallID() {
	if s.InstallID == "" {
		var b [16]byte
		rand.Read(b[:]) // never fails (crypto/rand)
		s.InstallID = hex.EncodeToString(b[:])
	}
}

// withheldBy says why pol withholds version v from the install id ("":
// offered): pulled, halted, or not in its rollout (critical ignores the
// rollout, not a halt).
func withheldBy(pol *manifest.Policy, v, id string) (manifest.PolicyEntry, string) {
	e, _ := pol.Entry(v)
	switch {
	case e.Pulled:
		return e, "pulled"
	case e.Halted:
		return e, "halted"
	case !e.InRollout(id):
		return e, "rollout"
	}
	return e, ""
}

// pickTarget chooses the target among rs (the channel's releases, in
// version order) for an install whose version is known (res.Current, else
// the floor; "" when unknown), under the policy pol (nil: none) and the
// versions marked bad in st:
//   - the newest release neither bad, pulled nor halted that the install is
//     in the rollout of (or that is critical);
//   - when known is below the policy's minimum version and that target is
//     not at least the minimum: the lowest release at or above it that is
//     neither bad, pulled nor halted, whatever its rollout (Required);
//   - when the installed version is pulled and that target is not newer:
//     the next release above it that is neither bad, pulled nor halted,
//     whatever its rollout (CurrentPulled).
//
// Newer versions passed over go to Skipped (bad) and Withheld (policy).
func (res *CheckResult) pickTarget(rs []*manifest.Release, pol *manifest.Policy, st *State, known string) {
	for i := len(rs) - 1; i >= 0; i-- {
		v := rs[i].Version
		if st.IsBad(v) {
			res.Skipped = append(res.Skipped, v)
			continue
		}
		if pol != nil {
			if e, why := withheldBy(pol, v, st.InstallID); why != "" {
				res.Withheld = append(res.Withheld, Withheld{Version: v, Reason: why, Rollout: e.Rollout})
				continue
			}
		}
		res.Target = v
		break
	}
	if pol == nil {
		return
	}
	less := func(a, b string) bool {
		c, err := manifest.Compare(a, b)
		return err == nil && c < 0
	}
	good := func(v string) bool {
		e, _ := pol.Entry(v)
		return !st.IsBad(v) && !e.Pulled && !e.Halted
	}
	// lowest returns the lowest good release above (or at) v.
	lowest := func(v string, orEqual bool) string {
		for _, r := range rs {
			if (less(v, r.Version) || orEqual && !less(r.Version, v)) && good(r.Version) {
				return r.Version
			}
		}
		return ""
	}
	if min := pol.MinimumVersion; min != "" && known != "" && less(known, min) {
		res.Required, res.MinimumVersion = true, min
		if res.Target == "" || less(res.Target, min) {
			if t := lowest(min, true); t != "" {
				res.Target = t
			}
		}
	}
	if cur := res.Current; cur != "" {
		if e, _ := pol.Entry(cur); e.Pulled {
			res.CurrentPulled = true
			if res.Target == "" || !less(cur, res.Target) {
				if t := lowest(cur, false); t != "" {
					res.Target = t
				}
			}
		}
	}
	// Only what is newer than the target and the installed version was
	// withheld.
	kept := res.Withheld[:0]
	for _, w := range res.Withheld {
		if (res.Target == "" || less(res.Target, w.Version)) && (known == "" || less(known, w.Version)) {
			kept = append(kept, w)
		}
	}
	res.Withheld = kept
}

// applyPolicy fills the policy fields of res for its target: critical,
// the release notes; and refuses an explicit target (Config.To) that was
// pulled.
func (res *CheckResult) applyPolicy(pol *manifest.Policy, explicit bool) error {
	if pol == nil || res.Target == "" {
		return nil
	}
	e, _ := pol.Entry(res.Target)
	if explicit && e.Pulled {
		return fmt.Errorf("%w: %w: %s was pulled by the publisher and is never installed; pick another version (deltaup check lists the one offered)", ErrRefused, ErrPulled, res.Target)
	}
	res.Critical, res.Notes, res.NotesURL = e.Critical, e.Notes, e.NotesURL
	return nil
}

// avoidVersions returns the versions a route must not pass through: those
// marked bad and those pulled by the policy. Halted releases and those
// whose rollout the install is not in may be hops: their patches only
// rebuild a tree in the staging directory, checked against its digest;
// they are never installed on the way.
func avoidVersions(bad []string, pol *manifest.Policy) []string {
	if pol == nil {
		return bad
	}
	out := append([]string(nil), bad...)
	for _, e := range pol.Releases {
		if e.Pulled {
			out = append(out, e.Version)
		}
	}
	return out
}

// refetchStale fetches the signature file p again, unconditionally, when
// sig (which did not verify) is the cached copy: a server without ETags
// answers If-Modified-Since by the second, so a signature replaced within
// the second it was fetched in is answered 304, and the stale copy would
// fail every later check against the new document until it changes
// again. It returns the fresh bytes, or sig when the fetch fails.
func (rf *rolesFetch) refetchStale(ctx context.Context, p string, sig []byte) []byte {
	if cached, ok := rf.cache.Docs[p]; !ok || !bytes.Equal(cached, sig) {
		return sig
	}
	fresh, err := rf.f.Get(ctx, p, manifest.MaxSignatureSize+1)
	if err != nil {
		return sig
	}
	rf.docs[p] = fresh
	delete(rf.http, p) // no validators: the next check asks unconditionally
	return fresh
}
