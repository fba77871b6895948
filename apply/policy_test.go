package apply

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

func releasesOf(vs ...string) []*manifest.Release {
	var out []*manifest.Release
	for _, v := range vs {
		out = append(out, &manifest.Release{Version: v})
	}
	return out
}

func policyOf(min string, es ...manifest.PolicyEntry) *manifest.Policy {
	return &manifest.Policy{Schema: manifest.RolesSchema, App: "demo", Sequence: 1, MinimumVersion: min, Releases: es}
}

func simID(i int) string { return fmt.Sprintf("%032x", sha256.Sum256([]byte(fmt.Sprint(i))))[:32] }

// TestRolloutSimulated: 10,000 simulated installs, each with its own
// random-looking install id, check against a policy offering 1.1.0 to 10%:
// between 7% and 13% get it. Raising to 50% keeps every install that was
// in; halting takes everyone out at the next check.
func TestRolloutSimulated(t *testing.T) {
	const n = 10000
	rs := releasesOf("1.0.0", "1.1.0")
	target := func(id string, pol *manifest.Policy) string {
		res := &CheckResult{Current: "1.0.0"}
		res.pickTarget(rs, pol, &State{InstallID: id}, "1.0.0")
		return res.Target
	}
	in10 := map[string]bool{}
	for i := range n {
		if target(simID(i), policyOf("", manifest.PolicyEntry{Version: "1.1.0", Rollout: 10})) == "1.1.0" {
			in10[simID(i)] = true
		}
	}
	if got := len(in10); got < n*7/100 || got > n*13/100 {
		t.Fatalf("at 10%%, %d of %d installs update (%.1f%%), want 7..13%%", got, n, 100*float64(got)/n)
	}
	t.Logf("at 10%%: %d of %d installs update", len(in10), n)
	in50 := 0
	for i := range n {
		id := simID(i)
		got := target(id, policyOf("", manifest.PolicyEntry{Version: "1.1.0", Rollout: 50}))
		if in10[id] && got != "1.1.0" {
			t.Fatalf("install %s was in at 10%% and is out at 50%%", id)
		}
		if got == "1.1.0" {
			in50++
		}
		if target(id, policyOf("", manifest.PolicyEntry{Version: "1.1.0", Rollout: 50, Halted: true})) != "1.0.0" {
			t.Fatalf("halted 1.1.0 offered to %s", id)
		}
	}
	if in50 < n*45/100 || in50 > n*55/100 {
		t.Fatalf("at 50%%, %d of %d installs update", in50, n)
	}
}

func TestPickTarget(t *testing.T) {
	rs := releasesOf("1.0.0", "1.1.0", "1.2.0", "1.3.0")
	// An id outside every partial rollout of these versions (bucket >= 50).
	var id string
	for i := 0; id == ""; i++ {
		c := simID(i)
		if manifest.RolloutBucket(c, "1.1.0") >= 50 && manifest.RolloutBucket(c, "1.2.0") >= 50 && manifest.RolloutBucket(c, "1.3.0") >= 50 {
			id = c
		}
	}
	e := func(v string, rollout int, flags string) manifest.PolicyEntry {
		return manifest.PolicyEntry{Version: v, Rollout: rollout, Halted: strings.Contains(flags, "h"), Pulled: strings.Contains(flags, "p"), Critical: strings.Contains(flags, "c")}
	}
	tests := []struct {
		name          string
		current       string
		bad           []string
		pol           *manifest.Policy
		want          string
		required      bool
		currentPulled bool
		withheld      string
	}{
		{"no policy", "1.0.0", nil, nil, "1.3.0", false, false, ""},
		{"not in the rollout", "1.0.0", nil, policyOf("", e("1.3.0", 10, "")), "1.2.0", false, false, "1.3.0:rollout"},
		{"rollout 0", "1.0.0", nil, policyOf("", e("1.3.0", 0, "")), "1.2.0", false, false, "1.3.0:rollout"},
		{"halted", "1.0.0", nil, policyOf("", e("1.3.0", 100, "h")), "1.2.0", false, false, "1.3.0:halted"},
		{"pulled", "1.0.0", nil, policyOf("", e("1.3.0", 100, "p")), "1.2.0", false, false, "1.3.0:pulled"},
		{"critical ignores the rollout", "1.0.0", nil, policyOf("", e("1.3.0", 0, "c")), "1.3.0", false, false, ""},
		{"critical does not lift a halt", "1.0.0", nil, policyOf("", e("1.3.0", 0, "ch")), "1.2.0", false, false, "1.3.0:halted"},
		{"several withheld", "1.0.0", nil, policyOf("", e("1.2.0", 10, ""), e("1.3.0", 100, "h")), "1.1.0", false, false, "1.3.0:halted 1.2.0:rollout"},
		{"below the minimum: rollout bypassed", "1.0.0", nil, policyOf("1.2.0", e("1.2.0", 0, ""), e("1.3.0", 0, "")), "1.2.0", true, false, "1.3.0:rollout"},
		{"below the minimum, newest eligible already above it", "1.0.0", nil, policyOf("1.1.0"), "1.3.0", true, false, ""},
		{"below the minimum: the minimum halted, the next good one", "1.0.0", nil, policyOf("1.2.0", e("1.2.0", 100, "h"), e("1.3.0", 0, "")), "1.3.0", true, false, ""},
		{"below the minimum: nothing good at or above it", "1.0.0", nil, policyOf("1.3.0", e("1.3.0", 100, "p")), "1.2.0", true, false, "1.3.0:pulled"},
		{"at the minimum", "1.2.0", nil, policyOf("1.2.0", e("1.3.0", 0, "")), "1.2.0", false, false, "1.3.0:rollout"},
		{"on a pulled version: the next good one, whatever its rollout", "1.1.0", nil, policyOf("", e("1.1.0", 100, "p"), e("1.2.0", 0, ""), e("1.3.0", 0, "")), "1.2.0", false, true, "1.3.0:rollout"},
		{"on a pulled version: halted ones skipped", "1.1.0", nil, policyOf("", e("1.1.0", 100, "p"), e("1.2.0", 100, "h"), e("1.3.0", 0, "")), "1.3.0", false, true, ""},
		{"on a pulled version, nothing newer good", "1.3.0", nil, policyOf("", e("1.3.0", 100, "p")), "1.2.0", false, true, ""},
		{"bad and pulled", "1.0.0", []string{"1.2.0"}, policyOf("", e("1.3.0", 100, "p")), "1.1.0", false, false, "1.3.0:pulled"},
		{"below the minimum, bad skipped", "1.0.0", []string{"1.2.0"}, policyOf("1.2.0", e("1.3.0", 0, "")), "1.3.0", true, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := &CheckResult{Current: tc.current}
			res.pickTarget(rs, tc.pol, &State{InstallID: id, Bad: tc.bad}, tc.current)
			var w []string
			for _, x := range res.Withheld {
				w = append(w, x.Version+":"+x.Reason)
			}
			if res.Target != tc.want || res.Required != tc.required || res.CurrentPulled != tc.currentPulled || strings.Join(w, " ") != tc.withheld {
				t.Fatalf("target %q required %v current pulled %v withheld %q; want %q %v %v %q", res.Target, res.Required, res.CurrentPulled, w, tc.want, tc.required, tc.currentPulled, tc.withheld)
			}
		})
	}
}

// TestPlanAvoidsPulled: a pulled version is never a hop of a route; a
// halted one may be (its patches only rebuild a tree in staging).
func TestPlanAvoidsPulled(t *testing.T) {
	m := ckSharedRepo(t).manifest(t)
	cheapest, err := Plan(m, "1.0.0", "1.2.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, flags := range []manifest.PolicyEntry{{Version: "1.1.0", Rollout: 100, Pulled: true}, {Version: "1.1.0", Rollout: 100, Halted: true}} {
		rt, err := Plan(m, "1.0.0", "1.2.0", avoidVersions(nil, policyOf("", flags)))
		if err != nil {
			t.Fatal(err)
		}
		through := slices.ContainsFunc(rt.Steps, func(s Step) bool { return s.To == "1.1.0" })
		if flags.Pulled && through {
			t.Fatalf("route through pulled 1.1.0: %v", rt.Steps)
		}
		if flags.Halted && fmt.Sprint(rt.Steps) != fmt.Sprint(cheapest.Steps) {
			t.Fatalf("a halted version changed the route: %v, cheapest %v", rt.Steps, cheapest.Steps)
		}
	}
}

// policyClient is a client of v installed at version.
func (v *v2Repo) policyClient(t testing.TB, version string, mirrors ...string) *v2Client {
	t.Helper()
	c := v.client(t, mirrors...)
	if err := os.RemoveAll(c.cfg.AppDir); err != nil {
		t.Fatal(err)
	}
	v.base.install(t, version, c.cfg.AppDir)
	return c
}

// setPolicy changes the policy with the release key and stamps it.
func (v *v2Repo) setPolicy(t testing.TB, ch releasetools.PolicyChange) *manifest.Policy {
	t.Helper()
	p, err := releasetools.SetPolicy(context.Background(), ch, releasetools.PolicyOptions{Repo: v.dir, Keys: []manifest.PrivateKey{v.rel1},
		TimestampKeys: []manifest.PrivateKey{v.ts}, Now: func() time.Time { return v.now }})
	if err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	return p
}

func pct(n int) *int       { return &n }
func str(s string) *string { return &s }

// TestPolicyCheck runs the policy through real checks against one
// repository served over HTTP: rollout, raise, notes and critical, halt
// (stops at the next check), pull (never installed, not even with --to;
// a client on it offered the next good one), the minimum version, and a
// client's first check creating its install id.
func TestPolicyCheck(t *testing.T) {
	v := newV2Repo(t, nil)
	srv := ckServe(t, v.dir)
	c := v.policyClient(t, "1.0.0", srv.URL)

	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Percent: pct(0)})
	res, err := c.check(t)
	if err != nil {
		t.Fatal(err)
	}
	id := c.state(t).InstallID
	if res.Target != "1.1.0" || len(res.Withheld) != 1 || res.Withheld[0] != (Withheld{Version: "1.2.0", Reason: "rollout", Rollout: 0}) || checkInstallID(id) != nil || id == "" {
		t.Fatalf("rollout 0: target %q withheld %v install id %q", res.Target, res.Withheld, id)
	}
	// The policy is cached: a check with no change does not fetch it.
	before := len(srv.requests())
	if _, err := c.check(t); err != nil {
		t.Fatal(err)
	}
	for _, p := range srv.requests()[before:] {
		if strings.HasPrefix(p, "/"+manifest.PolicyDir+"/") {
			t.Fatalf("a check with no change fetched %s", p)
		}
	}
	if c.state(t).InstallID != id {
		t.Fatal("the install id changed")
	}

	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Percent: pct(100), Critical: true, Notes: str("Fixes a crash.\nUpdate soon."), NotesURL: str("https://example.com/1.2.0")})
	res, err = c.check(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "1.2.0" || !res.Critical || res.Notes != "Fixes a crash.\nUpdate soon." || res.NotesURL != "https://example.com/1.2.0" || len(res.Withheld) != 0 {
		t.Fatalf("critical with notes: %+v", res)
	}

	// Halting stops new installs at the next check.
	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Halt: true})
	if res, err = c.check(t); err != nil || res.Target != "1.1.0" {
		t.Fatalf("after the halt: target %q, %v", res.Target, err)
	}

	// Pulled: never a target, never a hop, refused with --to.
	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Resume: true, NotCritical: true})
	v.setPolicy(t, releasetools.PolicyChange{Version: "1.1.0", Pull: true})
	if res, err = c.check(t); err != nil || res.Target != "1.2.0" || res.Critical {
		t.Fatalf("1.1.0 pulled, 1.2.0 resumed: target %q critical %v, %v", res.Target, res.Critical, err)
	}
	if slices.ContainsFunc(res.Route.Steps, func(s Step) bool { return s.To == "1.1.0" }) {
		t.Fatalf("route through pulled 1.1.0: %v", res.Route.Steps)
	}
	c.cfg.To = "1.1.0"
	if _, err := c.check(t); !errors.Is(err, ErrPulled) || !errors.Is(err, ErrRefused) {
		t.Fatalf("--to a pulled version: %v, want ErrPulled", err)
	}
	c.cfg.To = ""

	// A client on the pulled version is offered the next good one,
	// whatever its rollout.
	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Percent: pct(0)})
	on := v.policyClient(t, "1.1.0", srv.URL)
	if res, err := on.check(t); err != nil || res.Target != "1.2.0" || !res.CurrentPulled || res.UpToDate {
		t.Fatalf("client on pulled 1.1.0: %+v, %v", res, err)
	}

	// Below the minimum version: at least it, whatever its rollout.
	if res, err = c.check(t); err != nil || res.Target != "1.0.0" || !res.UpToDate {
		t.Fatalf("1.2.0 at 0%%: target %q up to date %v, %v", res.Target, res.UpToDate, err)
	}
	v.setPolicy(t, releasetools.PolicyChange{MinimumVersion: str("1.2.0")})
	if res, err = c.check(t); err != nil || res.Target != "1.2.0" || !res.Required || res.MinimumVersion != "1.2.0" {
		t.Fatalf("below the minimum: %+v, %v", res, err)
	}
	st := c.state(t)
	if st.PolicySequence != 7 || st.PolicyHash == "" {
		t.Fatalf("state: policy %d %q", st.PolicySequence, st.PolicyHash)
	}
}

// touchTimestamp gives the timestamp in dir a new modification time (see
// v2Repo.touch): the client's cache is shared by its mirrors, and
// http.FileServer answers If-Modified-Since by the second.
func touchTimestamp(t testing.TB, dir string) {
	t.Helper()
	(&v2Repo{dir: dir}).touch(t)
}

// forgeTimestampPolicy writes a timestamp naming the current index and
// the policy pol (bytes raw; nil: no policy), signed by the timestamp key.
func (v *v2Repo) forgeTimestampPolicy(t testing.TB, seq uint64, raw []byte, pol *manifest.Policy) {
	t.Helper()
	idx, err := os.ReadFile(filepath.Join(v.dir, manifest.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := manifest.ParseUnverified(idx)
	ts := &manifest.Timestamp{Schema: manifest.RolesSchema, App: "demo", Sequence: seq, Expires: v.now.Add(24 * time.Hour),
		Index: manifest.IndexRef{Sequence: m.Sequence, Size: int64(len(idx)), SHA256: sha256.Sum256(idx)}}
	if pol != nil {
		ts.Policy = &manifest.IndexRef{Sequence: pol.Sequence, Size: int64(len(raw)), SHA256: sha256.Sum256(raw)}
	}
	b, err := manifest.MarshalTimestamp(ts)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := manifest.SignTimestamp(v.ts, b)
	if err != nil {
		t.Fatal(err)
	}
	v.write(t, manifest.SigPath(manifest.TimestampName, v.ts.Public().ID()), sig)
	v.write(t, manifest.TimestampName, b)
}

// TestPolicyHostileMirror: a tampered, replayed, dropped or foreign-signed
// policy is refused (state.json unchanged) and the next mirror is tried;
// an expired one is refused.
func TestPolicyHostileMirror(t *testing.T) {
	v := newV2Repo(t, nil)
	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Halt: true})
	oldRaw, _ := os.ReadFile(filepath.Join(v.dir, manifest.PolicyName))
	old, _ := manifest.ParsePolicy(oldRaw)
	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Percent: pct(0)})
	srv := ckServe(t, v.dir)
	c := v.policyClient(t, "1.0.0", srv.URL)
	if res, err := c.check(t); err != nil || res.Target != "1.1.0" {
		t.Fatalf("first check: %v", err)
	}
	tsSeq := c.state(t).TimestampSequence
	clientState := filepath.Join(t.TempDir(), "client")
	ckCopyDir(t, c.cfg.BackupDir, clientState)
	// The publisher's next policy, which the client has not seen.
	cur := v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Notes: str("halted for now")})
	curRaw, _ := os.ReadFile(filepath.Join(v.dir, manifest.PolicyName))
	honest := filepath.Join(t.TempDir(), "honest")
	ckCopyDir(t, v.dir, honest)
	touchTimestamp(t, honest)
	good := ckServe(t, honest)

	tests := []struct {
		name  string
		build func(t *testing.T)
		want  error
	}{
		{"tampered policy", func(t *testing.T) {
			// The mirror changes the policy the timestamp names: 1.2.0 at 1%.
			v.write(t, manifest.PolicyPath(cur.Sequence), []byte(strings.Replace(string(curRaw), `"rollout":0,`, `"rollout":1,`, 1)))
		}, manifest.ErrHashMismatch},
		{"replayed older policy (un-halts)", func(t *testing.T) {
			v.forgeTimestampPolicy(t, tsSeq+5, oldRaw, old)
		}, manifest.ErrRollback},
		{"timestamp without the policy", func(t *testing.T) {
			v.forgeTimestampPolicy(t, tsSeq+5, nil, nil)
		}, manifest.ErrRollback},
		{"policy signed by the timestamp key only", func(t *testing.T) {
			p := *cur
			p.Sequence = cur.Sequence + 1
			p.Releases = nil
			raw, err := manifest.MarshalPolicy(&p)
			if err != nil {
				t.Fatal(err)
			}
			sig, _ := manifest.SignPolicy(v.ts, raw)
			v.write(t, manifest.SigPath(manifest.PolicyPath(p.Sequence), v.ts.Public().ID()), sig)
			v.write(t, manifest.PolicyPath(p.Sequence), raw)
			v.forgeTimestampPolicy(t, tsSeq+5, raw, &p)
		}, manifest.ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// v.dir is the hostile mirror, the client as after its first check.
			for _, d := range []string{v.dir, c.cfg.BackupDir} {
				if err := os.RemoveAll(d); err != nil {
					t.Fatal(err)
				}
			}
			ckCopyDir(t, honest, v.dir)
			ckCopyDir(t, clientState, c.cfg.BackupDir)
			tc.build(t)
			stateBefore, _ := os.ReadFile(StatePath(c.cfg.BackupDir))
			c.cfg.Servers = []string{srv.URL}
			_, err := c.check(t)
			if !errors.Is(err, ErrRefused) || !errors.Is(err, tc.want) {
				t.Fatalf("hostile mirror alone: %v, want ErrRefused and %v", err, tc.want)
			}
			if after, _ := os.ReadFile(StatePath(c.cfg.BackupDir)); string(after) != string(stateBefore) {
				t.Fatal("a refused check changed state.json")
			}
			c.cfg.Servers = []string{srv.URL, good.URL}
			if res, err := c.check(t); err != nil || res.Target != "1.1.0" || c.state(t).PolicySequence != cur.Sequence {
				t.Fatalf("hostile then honest mirror: %v", err)
			}
		})
	}

	// An expired policy (its validity shorter than the timestamp's) on one
	// mirror, a current one on the next.
	fresh := filepath.Join(t.TempDir(), "fresh")
	ckCopyDir(t, honest, fresh)
	if _, err := releasetools.SetPolicy(context.Background(), releasetools.PolicyChange{Version: "1.2.0", Notes: str("still halted")},
		releasetools.PolicyOptions{Repo: fresh, Keys: []manifest.PrivateKey{v.rel1}, TimestampKeys: []manifest.PrivateKey{v.ts}, Now: func() time.Time { return v.now }}); err != nil {
		t.Fatal(err)
	}
	touchTimestamp(t, fresh)
	if _, err := releasetools.SetPolicy(context.Background(), releasetools.PolicyChange{Version: "1.2.0", Resume: true},
		releasetools.PolicyOptions{Repo: honest, Keys: []manifest.PrivateKey{v.rel1}, TimestampKeys: []manifest.PrivateKey{v.ts}, Validity: 2 * time.Hour,
			Now: func() time.Time { return v.now }}); err != nil {
		t.Fatal(err)
	}
	touchTimestamp(t, honest)
	c.cfg.Servers = []string{good.URL}
	c.clock = v.now.Add(3 * time.Hour)
	if _, err := c.check(t); !errors.Is(err, manifest.ErrExpired) || !strings.Contains(err.Error(), "release policy expired") {
		t.Fatalf("expired policy: %v, want ErrExpired", err)
	}
	c.cfg.Servers = []string{good.URL, ckServe(t, fresh).URL}
	if res, err := c.check(t); err != nil || res.Target != "1.1.0" || res.Notes != "" {
		t.Fatalf("expired then current policy: %v", err)
	}
	if st := c.state(t); st.PolicySequence != cur.Sequence+1 {
		t.Fatalf("accepted policy %d, want %d (the fresh mirror's)", st.PolicySequence, cur.Sequence+1)
	}
}

// TestPolicyReleaseKeyRotation: rotating a release key re-signs the
// policy with the new key; a client walks to the new root, forgets the
// policy sequence it accepted under the old keys, and accepts the policy
// by the new key's signature (the cached one, by the old key, no longer
// counts).
func TestPolicyReleaseKeyRotation(t *testing.T) {
	v := newV2Repo(t, nil)
	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Halt: true})
	srv := ckServe(t, v.dir)
	c := v.policyClient(t, "1.0.0", srv.URL)
	if res, err := c.check(t); err != nil || res.Target != "1.1.0" {
		t.Fatalf("first check: %v", err)
	}
	before := c.state(t)
	o := v.opts(v.rootA, v.rel2)
	if _, err := releasetools.ChangeKeys(context.Background(), releasetools.KeyChange{Role: manifest.RoleRelease, Remove: []string{v.rel1.Public().ID()}}, o); err != nil {
		t.Fatal(err)
	}
	v.touch(t)
	res, err := c.check(t)
	if err != nil || res.Target != "1.1.0" {
		t.Fatalf("after the rotation: %v (target %q): the halt must still hold", err, res.Target)
	}
	after := c.state(t)
	if after.ReleaseKeys == before.ReleaseKeys || after.RootVersion != 2 || after.PolicySequence != before.PolicySequence {
		t.Fatalf("state after the rotation: %+v", after)
	}
}

// staleSigs answers 304 to every conditional request for a signature
// file, as a server without ETags does for a file replaced within the
// second it was fetched in.
type staleSigs struct{ *Downloader }

func (s staleSigs) GetIf(ctx context.Context, p string, max int64, v Validators) ([]byte, Validators, bool, error) {
	if strings.HasSuffix(p, ".minisig") && v != (Validators{}) {
		return nil, v, true, nil
	}
	return s.Downloader.GetIf(ctx, p, max, v)
}

// TestStaleSignatureRefetched: a halt must reach the client at its next
// check even when the server answers 304 for the timestamp's replaced
// signature: the stale copy does not verify, so it is fetched again.
func TestStaleSignatureRefetched(t *testing.T) {
	v := newV2Repo(t, nil)
	srv := ckServe(t, v.dir)
	c := v.policyClient(t, "1.0.0", srv.URL)
	f := staleSigs{&Downloader{Mirrors: c.cfg.Servers, Retries: -1, BackoffMin: time.Millisecond}}
	if res, err := Check(context.Background(), c.cfg, f); err != nil || res.Target != "1.2.0" {
		t.Fatalf("first check: %v", err)
	}
	v.setPolicy(t, releasetools.PolicyChange{Version: "1.2.0", Halt: true})
	for i := range 2 { // and again: the fresh signature was cached without validators
		if res, err := Check(context.Background(), c.cfg, f); err != nil || res.Target != "1.1.0" {
			t.Fatalf("check %d after the halt: %v", i+1, err)
		}
	}
}
