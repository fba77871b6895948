package apply

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// TestPlatformsPolicy: a repository of two platforms and one release
// policy at its top. A client of either platform sees a rollout and a
// halt of a version (the policy is fetched from the top, never from the
// platform's directory), and still takes its own platform's index.
func TestPlatformsPolicy(t *testing.T) {
	ctx := context.Background()
	r := newPlatRepo(t) // 1.0.0 and 1.1.0 on both platforms
	srv := ckServe(t, r.dir)
	setPolicy := func(ch releasetools.PolicyChange) {
		t.Helper()
		if _, err := releasetools.SetPolicy(ctx, ch, releasetools.PolicyOptions{Repo: r.dir, Keys: []manifest.PrivateKey{r.rel},
			TimestampKeys: []manifest.PrivateKey{r.ts}, Now: func() time.Time { return r.now }}); err != nil {
			t.Fatal(err)
		}
	}
	own := r.client(t, srv.URL, r.own, "")
	other := r.client(t, srv.URL, r.other, r.other)
	check := func(cfg *Config) *CheckResult {
		t.Helper()
		res, err := Check(ctx, cfg, &Downloader{Mirrors: cfg.Servers})
		if err != nil {
			t.Fatalf("check (platform %q): %v", cfg.Platform, err)
		}
		if a := res.Route; !res.UpToDate && a != nil && len(a.Steps) > 0 {
			want := cfg.Platform
			if want == "" {
				want = r.own
			}
			if p := a.Steps[0].Artifact.Path; !strings.HasPrefix(p, want+"/") {
				t.Fatalf("platform %q: route through %s", cfg.Platform, p)
			}
		}
		return res
	}
	for _, cfg := range []*Config{own, other} {
		if res := check(cfg); res.Target != "1.1.0" {
			t.Fatalf("platform %q before any policy: target %q", cfg.Platform, res.Target)
		}
	}

	// 1.1.0 at 0 %: withheld on both platforms.
	setPolicy(releasetools.PolicyChange{Version: "1.1.0", Percent: pct(0)})
	for _, cfg := range []*Config{own, other} {
		res := check(cfg)
		if !res.UpToDate || len(res.Withheld) != 1 || res.Withheld[0] != (Withheld{Version: "1.1.0", Reason: "rollout"}) {
			t.Fatalf("platform %q, 1.1.0 at 0%%: %+v", cfg.Platform, res)
		}
	}
	// Full rollout, then a halt: the halt reaches both platforms at their
	// next check.
	setPolicy(releasetools.PolicyChange{Version: "1.1.0", Percent: pct(100)})
	for _, cfg := range []*Config{own, other} {
		if res := check(cfg); res.Target != "1.1.0" || res.UpToDate {
			t.Fatalf("platform %q, 1.1.0 at 100%%: %+v", cfg.Platform, res)
		}
	}
	setPolicy(releasetools.PolicyChange{Version: "1.1.0", Halt: true})
	for _, cfg := range []*Config{own, other} {
		res := check(cfg)
		if !res.UpToDate || res.Target != "1.0.0" || len(res.Withheld) != 1 || res.Withheld[0].Reason != "halted" {
			t.Fatalf("platform %q after the halt: %+v", cfg.Platform, res)
		}
		st, err := LoadState(cfg.AppDir + BackupSuffix)
		if err != nil || st.PolicySequence != 3 || st.IndexPlatform != map[string]string{"": r.own}[cfg.Platform]+cfg.Platform {
			t.Fatalf("platform %q: state %+v, %v", cfg.Platform, st, err)
		}
	}
	for _, p := range srv.requests() {
		if strings.Contains(p, "/"+manifest.PolicyDir+"/") && !strings.HasPrefix(p, "/"+manifest.PolicyDir+"/") {
			t.Fatalf("a policy fetched below a platform: %s", p)
		}
	}
}
