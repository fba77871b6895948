package releasetools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

func testKey(t testing.TB) (manifest.PrivateKey, manifest.PublicKey, []byte) {
	t.Helper()
	pubFile, keyFile, err := manifest.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := manifest.ParsePrivateKey(keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return priv, priv.Public(), pubFile
}

// writeTree creates a tree from a table: path -> content; a content of
// "->target" makes a symlink, a path ending in "/" an empty directory, and
// a leading "x:" an executable file.
func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(c, "->"):
			if err := os.Symlink(c[2:], full); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(c, "x:"):
			if err := os.WriteFile(full, []byte(c[2:]), 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func versionTree(t testing.TB, n int) string {
	dir := t.TempDir()
	body := strings.Repeat(fmt.Sprintf("line of the app, build %d\n", n), 200)
	writeTree(t, dir, map[string]string{
		"bin/app":                      "x:" + strings.Repeat("ELF code block\x00\x01\x02", 300) + fmt.Sprintf("version %d", n),
		"lib/core.js":                  body,
		"README.md":                    "read me\n",
		"bin/app-link":                 "->app",
		"share/empty/":                 "",
		fmt.Sprintf("data/v%d.txt", n): fmt.Sprint(n),
	})
	return dir
}

func publish(t testing.TB, repo, version string, dir string, key manifest.PrivateKey, now time.Time) *PublishResult {
	t.Helper()
	res, err := Publish(context.Background(), dir, PublishOptions{
		Repo: repo, App: "demo", Version: version, Key: key, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("publish %s: %v", version, err)
	}
	return res
}

func TestPublishAndVerify(t *testing.T) {
	priv, pub, pubFile := testKey(t)
	repo := filepath.Join(t.TempDir(), "repo")
	now := time.Now().UTC()
	trees := map[string]string{}
	for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.10.0", "2.0.0-rc.1"} {
		trees[v] = versionTree(t, i)
		res := publish(t, repo, v, trees[v], priv, now)
		if res.Sequence != uint64(i+1) || res.Unchanged {
			t.Fatalf("publish %s: sequence %d unchanged %v", v, res.Sequence, res.Unchanged)
		}
		wantPatches := min(i, DefaultPatchesFrom)
		if i == 4 {
			wantPatches++ // position 4: a milestone patch from position 0
		}
		if len(res.Release.Patches) != wantPatches || len(res.Release.Archives) != 2 {
			t.Fatalf("publish %s: %d patches, %d archives", v, len(res.Release.Patches), len(res.Release.Archives))
		}
	}
	// Patches into 1.10.0 come from the closest three below it by semver.
	rel := publish(t, repo, "1.10.0", trees["1.10.0"], priv, now).Release
	var froms []string
	for _, p := range rel.Patches {
		froms = append(froms, p.From)
	}
	if strings.Join(froms, ",") != "1.0.0,1.1.0,1.2.0" {
		t.Errorf("1.10.0 patched from %v", froms)
	}

	// Republishing: identical tree is a no-op, another tree is refused.
	if res := publish(t, repo, "1.1.0", trees["1.1.0"], priv, now); !res.Unchanged || res.Sequence != 5 {
		t.Errorf("identical republish: %+v", res)
	}
	_, err := Publish(context.Background(), trees["1.2.0"], PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: priv})
	if !errors.Is(err, ErrVersionExists) {
		t.Errorf("republish with another tree: %v, want ErrVersionExists", err)
	}
	// Another app's repository is refused.
	_, err = Publish(context.Background(), trees["1.2.0"], PublishOptions{Repo: repo, App: "other", Version: "3.0.0", Key: priv})
	if !errors.Is(err, ErrRepo) {
		t.Errorf("publish of another app: %v, want ErrRepo", err)
	}

	rep, err := Verify(context.Background(), repo, pub, VerifyOptions{App: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Releases != 5 || rep.Archives != 10 || rep.Patches != 10 || len(rep.Orphans) != 0 {
		t.Fatalf("verify: %+v", rep)
	}
	// The stock minisign CLI verifies the manifest.
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Log("minisign not installed (apt-get install minisign): skipping the CLI check")
	} else {
		pubPath := filepath.Join(t.TempDir(), "k.pub")
		os.WriteFile(pubPath, pubFile, 0o644)
		out, err := exec.Command("minisign", "-V", "-m", filepath.Join(repo, "manifest.json"), "-p", pubPath).CombinedOutput()
		if err != nil {
			t.Errorf("minisign -V: %v\n%s", err, out)
		}
	}

	// Damage: one byte of an archive, one of a patch.
	m := mustManifest(t, repo)
	r, _ := m.Release("1.2.0")
	flip(t, filepath.Join(repo, r.Archives[0].Path))
	flip(t, filepath.Join(repo, r.Patches[0].Path))
	rep, err = Verify(context.Background(), repo, pub, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range rep.Faults {
		got[f.Path] = true
	}
	// The tar.zst is the framed one here (a small tree: one frame), so its
	// frame index fails too.
	idx, _ := manifest.FrameIndexPath(r)
	if len(rep.Faults) != 3 || !got[r.Archives[0].Path] || !got[r.Patches[0].Path] || !got[idx] {
		t.Errorf("faults after damage: %v", rep.Faults)
	}
	// An expired manifest is a fault; another key cannot even read it.
	rep, _ = Verify(context.Background(), repo, pub, VerifyOptions{Now: func() time.Time { return now.Add(DefaultValidity + time.Hour) }})
	if rep == nil || !strings.Contains(fmt.Sprint(rep.Faults), "expired") {
		t.Errorf("expired manifest not reported: %+v", rep)
	}
	_, other, _ := testKey(t)
	if _, err := Verify(context.Background(), repo, other, VerifyOptions{}); !errors.Is(err, ErrRepo) {
		t.Errorf("verify with another key: %v", err)
	}
}

func mustManifest(t testing.TB, repo string) *manifest.Manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, manifest.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func flip(t testing.TB, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// cancelAfter is a Log writer that cancels the publish when a line with
// the given prefix is written: a crash at that step.
type cancelAfter struct {
	prefix string
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte(c.prefix)) {
		c.cancel()
	}
	return len(p), nil
}

// TestPublishInterrupted stops a publish after each step and checks that the
// previous manifest stays in force and the repository verifies.
func TestPublishInterrupted(t *testing.T) {
	priv, pub, _ := testKey(t)
	now := time.Now().UTC()
	for _, step := range []string{"archive", "patch"} {
		t.Run(step, func(t *testing.T) {
			repo := filepath.Join(t.TempDir(), "repo")
			publish(t, repo, "1.0.0", versionTree(t, 0), priv, now)
			before, _ := os.ReadFile(filepath.Join(repo, manifest.ManifestName))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := Publish(ctx, versionTree(t, 1), PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: priv, Log: &cancelAfter{step, cancel}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted publish: %v", err)
			}
			after, _ := os.ReadFile(filepath.Join(repo, manifest.ManifestName))
			if !bytes.Equal(before, after) {
				t.Fatal("the manifest changed")
			}
			rep, err := Verify(context.Background(), repo, pub, VerifyOptions{})
			if err != nil || !rep.OK() {
				t.Fatalf("verify after interruption: %v %+v", err, rep)
			}
			if len(rep.Orphans) == 0 {
				t.Error("no orphans listed after an interrupted publish")
			}
			// Publishing again completes.
			publish(t, repo, "1.1.0", versionTree(t, 1), priv, now)
		})
	}
}

// TestRecover: a publish that stopped after writing the root signature but
// before the root manifest is completed by the next Publish or Recover.
func TestRecover(t *testing.T) {
	priv, pub, _ := testKey(t)
	now := time.Now().UTC()
	repo := filepath.Join(t.TempDir(), "repo")
	publish(t, repo, "1.0.0", versionTree(t, 0), priv, now)
	old, _ := os.ReadFile(filepath.Join(repo, manifest.ManifestName))
	publish(t, repo, "1.1.0", versionTree(t, 1), priv, now)
	// Roll the root manifest back to the old one: the state after a crash
	// between the signature's rename and the manifest's.
	if err := os.WriteFile(filepath.Join(repo, manifest.ManifestName), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), repo, pub, VerifyOptions{}); !errors.Is(err, ErrRepo) {
		t.Fatalf("verify of a torn pair: %v", err)
	}
	changed, err := Recover(repo, pub)
	if err != nil || !changed {
		t.Fatalf("Recover: %v %v", changed, err)
	}
	rep, err := Verify(context.Background(), repo, pub, VerifyOptions{})
	if err != nil || !rep.OK() || rep.Sequence != 2 {
		t.Fatalf("after Recover: %v %+v", err, rep)
	}
	if changed, err := Recover(repo, pub); err != nil || changed {
		t.Errorf("second Recover: %v %v", changed, err)
	}
}

func TestPatchBases(t *testing.T) {
	lower := func(n int) []*manifest.Release {
		var rs []*manifest.Release
		for i := range n {
			rs = append(rs, &manifest.Release{Version: fmt.Sprintf("1.0.%d", i)})
		}
		return rs
	}
	versions := func(rs []*manifest.Release) string {
		var vs []string
		for _, r := range rs {
			vs = append(vs, strings.TrimPrefix(r.Version, "1.0."))
		}
		return strings.Join(vs, ",")
	}
	tests := []struct {
		pos, n     int
		milestones bool
		want       string // positions of the bases, oldest first
	}{
		{0, 3, true, ""},
		{1, 3, true, "0"},
		{3, 3, true, "0,1,2"},
		{4, 3, true, "0,1,2,3"},   // 0 = 4-4 is a milestone
		{5, 3, true, "2,3,4"},     // 5 is no multiple of 4
		{8, 3, true, "0,4,5,6,7"}, // 8-8, 8-4, then the closest
		{12, 3, true, "8,9,10,11"},
		{16, 3, true, "0,8,12,13,14,15"},
		{16, 3, false, "13,14,15"},
		{16, 0, true, "0,8,12"},
		{8, 5, true, "0,3,4,5,6,7"}, // distance 4 is among the closest 5
		{2, 10, true, "0,1"},
	}
	for _, tc := range tests {
		got := versions(PatchBases(lower(tc.pos), tc.n, tc.milestones))
		if got != tc.want {
			t.Errorf("position %d, %d closest, milestones %v: bases %s, want %s", tc.pos, tc.n, tc.milestones, got, tc.want)
		}
	}
}

// TestMilestoneHops: with milestone patches, the planner's route from the
// first of 64 releases to the last takes log-many hops, not 63/3.
func TestMilestoneHops(t *testing.T) {
	const n = 64
	m := &manifest.Manifest{}
	var lower []*manifest.Release
	for i := range n {
		r := &manifest.Release{Version: fmt.Sprintf("1.0.%d", i)}
		for _, b := range PatchBases(lower, DefaultPatchesFrom, true) {
			r.Patches = append(r.Patches, manifest.Patch{From: b.Version, To: r.Version})
		}
		lower = append(lower, r)
		m.Releases = append(m.Releases, *r)
	}
	// Breadth-first search over the patch edges: fewest hops 0 -> n-1.
	next := map[string][]string{}
	for _, r := range m.Releases {
		for _, p := range r.Patches {
			next[p.From] = append(next[p.From], p.To)
		}
	}
	for _, from := range []int{0, 1, 5, 17, 33} {
		dist := map[string]int{fmt.Sprintf("1.0.%d", from): 0}
		queue := []string{fmt.Sprintf("1.0.%d", from)}
		for len(queue) > 0 {
			v := queue[0]
			queue = queue[1:]
			for _, w := range next[v] {
				if _, ok := dist[w]; !ok {
					dist[w] = dist[v] + 1
					queue = append(queue, w)
				}
			}
		}
		hops, ok := dist[fmt.Sprintf("1.0.%d", n-1)]
		if !ok || hops > 2*6 {
			t.Errorf("from 1.0.%d: %d hops (reachable %v), want at most %d", from, hops, ok, 2*6)
		}
		t.Logf("from 1.0.%d to 1.0.%d: %d hops", from, n-1, hops)
	}
}
