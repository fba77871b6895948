package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// ckRepo is a repository published in a test: three versions of a small
// tree, signed with a fresh key.
type ckRepo struct {
	dir     string
	priv    manifest.PrivateKey
	pub     manifest.PublicKey
	pubFile []byte
	now     time.Time
	trees   map[string]string // version -> source tree

	patchesFrom int  // PublishOptions.PatchesFrom (0: the default)
	portable    bool // PublishOptions.PortableModes
}

var ckVersions = []string{"1.0.0", "1.1.0", "1.2.0"}

// ckWriteFiles writes path -> content; "x:" prefix makes an executable.
func ckWriteFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if s, ok := strings.CutPrefix(c, "x:"); ok {
			c, mode = s, 0o755
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
}

func ckTree(t testing.TB, n int, pubFile []byte) string {
	dir := t.TempDir()
	ckWriteFiles(t, dir, map[string]string{
		"bin/app":                      "x:" + strings.Repeat("ELF code block\x00\x01\x02", 400) + fmt.Sprintf("version %d", n),
		"lib/core.js":                  strings.Repeat(fmt.Sprintf("line of the app, build %d\n", n), 300),
		"README.md":                    "read me\n",
		"deltaup.json":                 `{"app":"demo","servers":["https://updates.example.com/demo/"],"pubkey":"deltaup.pub","channel":"stable"}`,
		"deltaup.pub":                  string(pubFile),
		"lib/blob.bin":                 string(ckNoise(16 << 10)),
		fmt.Sprintf("data/v%d.txt", n): fmt.Sprint(n),
	})
	return dir
}

// ckNoise returns n deterministic incompressible bytes.
func ckNoise(n int) []byte { return ckNoiseSeed(1, n) }

// ckNoiseSeed returns n deterministic incompressible bytes from seed.
func ckNoiseSeed(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 56)
	}
	return b
}

// ckNewRepo publishes ckVersions into a new repository.
func ckNewRepo(t testing.TB) *ckRepo { return ckNewRepoPatches(t, 0) }

// ckNewRepoPatches is ckNewRepo with PublishOptions.PatchesFrom set (1:
// each version only gets a patch from the one before, so 1.0.0 -> 1.2.0
// takes two hops).
func ckNewRepoPatches(t testing.TB, patchesFrom int) *ckRepo {
	t.Helper()
	r := ckEmptyRepo(t)
	r.patchesFrom = patchesFrom
	for i, v := range ckVersions {
		r.trees[v] = ckTree(t, i, r.pubFile)
		r.publish(t, v, r.trees[v])
	}
	return r
}

// ckEmptyRepo returns a repository directory (not created yet) with a new
// signing key and no releases.
func ckEmptyRepo(t testing.TB) *ckRepo {
	t.Helper()
	pubFile, keyFile, err := manifest.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := manifest.ParsePrivateKey(keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &ckRepo{dir: filepath.Join(t.TempDir(), "repo"), priv: priv, pub: priv.Public(), pubFile: pubFile,
		now: time.Now().UTC().Truncate(time.Second), trees: map[string]string{}}
}

func (r *ckRepo) publish(t testing.TB, version, dir string) {
	t.Helper()
	_, err := releasetools.Publish(context.Background(), dir, releasetools.PublishOptions{
		Repo: r.dir, App: "demo", Version: version, Key: r.priv, Now: func() time.Time { return r.now }, PatchesFrom: r.patchesFrom, PortableModes: r.portable,
	})
	if err != nil {
		t.Fatalf("publish %s: %v", version, err)
	}
}

// manifest returns the repository's root manifest, unverified.
func (r *ckRepo) manifest(t testing.TB) *manifest.Manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(r.dir, manifest.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// install extracts version's tar.zst archive into a new directory dest.
func (r *ckRepo) install(t testing.TB, version, dest string) {
	t.Helper()
	rel, err := r.manifest(t).Release(version)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := preferredArchive(rel)
	f, err := os.Open(filepath.Join(r.dir, filepath.FromSlash(a.Path)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fallback.Extract(context.Background(), f, fallback.TarZst, dest, &fallback.ExtractOptions{Expected: rel.Files}); err != nil {
		t.Fatal(err)
	}
}

// ckServer serves a directory and records every request path.
type ckServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func ckServe(t testing.TB, dir string) *ckServer {
	s := &ckServer{}
	fsrv := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		s.mu.Unlock()
		fsrv.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// count returns how many requests asked for a path ending in suffix.
func (s *ckServer) count(suffix string) int {
	n := 0
	for _, p := range s.requests() {
		if strings.HasSuffix(p, suffix) {
			n++
		}
	}
	return n
}

func (s *ckServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.paths)
}

// ckFetcher is a minimal Fetcher over HTTP.
type ckFetcher struct{ base string }

func (f ckFetcher) Get(ctx context.Context, p string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(f.base, "/")+"/"+p, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: HTTP %d", p, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", manifest.ErrTooLarge, p, max)
	}
	return b, nil
}

// ckCopyDir copies a tree of regular files and directories.
func ckCopyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ckDigest(t testing.TB, dir string) [32]byte {
	t.Helper()
	es, err := tree.Scan(context.Background(), dir, tree.ScanOptions{Hash: true})
	if err != nil {
		t.Fatal(err)
	}
	return tree.Digest(es)
}

// ckSetup: a repository, a copy of it served over HTTP, an installed
// app directory of version installed ("" for none), and a Config.
type ckSetup struct {
	repo  *ckRepo
	serve string // served directory (a copy of repo.dir, free to damage)
	srv   *ckServer
	cfg   *Config
}

func ckNewSetup(t testing.TB, installed string) *ckSetup {
	t.Helper()
	return ckSetupFor(t, ckSharedRepo(t), installed)
}

// ckSetupFor is ckNewSetup on a given repository.
func ckSetupFor(t testing.TB, repo *ckRepo, installed string) *ckSetup {
	t.Helper()
	serve := filepath.Join(t.TempDir(), "site")
	ckCopyDir(t, repo.dir, serve)
	srv := ckServe(t, serve)
	root := t.TempDir()
	appDir := filepath.Join(root, "app")
	if installed != "" {
		repo.install(t, installed, appDir)
	} else if err := os.Mkdir(appDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{AppDir: appDir, Servers: []string{srv.URL + "/"}, PublicKey: repo.pub, App: "demo",
		Now: func() time.Time { return repo.now.Add(time.Hour) }}
	return &ckSetup{repo: repo, serve: serve, srv: srv, cfg: cfg}
}

func (s *ckSetup) fetcher() Fetcher { return ckFetcher{base: s.srv.URL} }

func TestFetchManifest(t *testing.T) {
	s := ckNewSetup(t, "")
	if err := s.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st := &State{}
	m, err := FetchManifest(context.Background(), s.cfg, s.fetcher(), st)
	if err != nil {
		t.Fatal(err)
	}
	if m.Sequence != 3 || len(m.Releases) != 3 || m.App != "demo" {
		t.Fatalf("manifest: sequence %d, %d releases, app %q", m.Sequence, len(m.Releases), m.App)
	}
	h := m.ContentHash()
	if st.App != "demo" || st.Sequence != 3 || st.ManifestHash != fmt.Sprintf("%x", h) {
		t.Errorf("state after fetch: %+v", st)
	}
	if got := s.srv.requests(); !slices.Equal(got, []string{"/manifest.json", "/manifest.json.minisig"}) {
		t.Errorf("requests: %v", got)
	}
	// The same manifest again, with the recorded sequence and hash, is fine.
	if _, err := FetchManifest(context.Background(), s.cfg, s.fetcher(), st); err != nil {
		t.Errorf("second fetch: %v", err)
	}
}

func TestFetchManifestRefusals(t *testing.T) {
	otherPub, _, err := manifest.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := manifest.ParsePublicKey(otherPub)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, s *ckSetup, st *State)
		class error
	}{
		{"tampered", func(t *testing.T, s *ckSetup, st *State) {
			// Both the root and its history copy (else the client
			// recovers the genuine history copy, see the torn test).
			for _, p := range []string{manifest.ManifestName, "manifests/3.json"} {
				p = filepath.Join(s.serve, filepath.FromSlash(p))
				b, _ := os.ReadFile(p)
				i := bytes.Index(b, []byte(`"channel":"stable"`))
				b[i+len(`"channel":"`)] = 'S'
				os.WriteFile(p, b, 0o644)
			}
		}, manifest.ErrSignature},
		{"missing signature", func(t *testing.T, s *ckSetup, st *State) {
			os.Remove(filepath.Join(s.serve, manifest.SignatureName))
		}, manifest.ErrSignature},
		{"other key", func(t *testing.T, s *ckSetup, st *State) { s.cfg.PublicKey = otherKey }, manifest.ErrSignature},
		{"expired", func(t *testing.T, s *ckSetup, st *State) {
			s.cfg.Now = func() time.Time { return s.repo.now.Add(100 * 24 * time.Hour) }
		}, manifest.ErrExpired},
		{"replayed", func(t *testing.T, s *ckSetup, st *State) { st.Sequence = 4 }, manifest.ErrRollback},
		{"same sequence other bytes", func(t *testing.T, s *ckSetup, st *State) {
			st.Sequence, st.ManifestHash = 3, strings.Repeat("ab", 32)
		}, manifest.ErrRollback},
		{"other app", func(t *testing.T, s *ckSetup, st *State) { s.cfg.App, st.App = "other", "other" }, manifest.ErrWrongApp},
		{"oversize", func(t *testing.T, s *ckSetup, st *State) {
			os.WriteFile(filepath.Join(s.serve, manifest.ManifestName), bytes.Repeat([]byte{' '}, manifest.MaxManifestSize+1), 0o644)
		}, manifest.ErrTooLarge},
		{"oversize signature", func(t *testing.T, s *ckSetup, st *State) {
			os.WriteFile(filepath.Join(s.serve, manifest.SignatureName), bytes.Repeat([]byte{'x'}, 1<<20), 0o644)
		}, manifest.ErrTooLarge},
	}
	// One repository for all cases: each gets a fresh served copy.
	base := ckNewSetup(t, "1.0.0")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := *base
			cfg := *base.cfg
			s.cfg = &cfg
			s.cfg.BackupDir = filepath.Join(t.TempDir(), "backup")
			s.serve = filepath.Join(t.TempDir(), "site")
			ckCopyDir(t, s.repo.dir, s.serve)
			s.srv = ckServe(t, s.serve)
			s.cfg.Servers = []string{s.srv.URL}
			st := &State{App: "demo", Sequence: 2, Installed: "1.0.0"}
			c.setup(t, &s, st)
			if err := st.Save(s.cfg.BackupDir); err != nil {
				t.Fatal(err)
			}
			stateBefore, _ := os.ReadFile(StatePath(s.cfg.BackupDir))
			appBefore := ckDigest(t, s.cfg.AppDir)

			_, err := Check(context.Background(), s.cfg, ckFetcher{base: s.srv.URL})
			if !errors.Is(err, ErrRefused) || !errors.Is(err, c.class) {
				t.Fatalf("got %v, want ErrRefused and %v", err, c.class)
			}
			t.Logf("%v", err)
			stateAfter, _ := os.ReadFile(StatePath(s.cfg.BackupDir))
			if !bytes.Equal(stateBefore, stateAfter) {
				t.Errorf("state file changed:\n%s\n%s", stateBefore, stateAfter)
			}
			if ckDigest(t, s.cfg.AppDir) != appBefore {
				t.Error("app directory changed")
			}
			// Only the state file and the claim (written by the directory
			// checks that run before anything is fetched).
			ents, _ := os.ReadDir(s.cfg.BackupDir)
			for _, e := range ents {
				if e.Name() != StateFileName && e.Name() != ClaimFileName {
					t.Errorf("backup dir holds %s", e.Name())
				}
			}
		})
	}
}

func TestFetchManifestTornPublish(t *testing.T) {
	s := ckNewSetup(t, "")
	// A publish of sequence 3 interrupted between its last two renames:
	// the new signature beside the old manifest.
	old, err := os.ReadFile(filepath.Join(s.serve, "manifests", "2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.serve, manifest.ManifestName), old, 0o644); err != nil {
		t.Fatal(err)
	}
	st := &State{Sequence: 2}
	m, err := FetchManifest(context.Background(), s.cfg, s.fetcher(), st)
	if err != nil {
		t.Fatal(err)
	}
	if m.Sequence != 3 || st.Sequence != 3 {
		t.Errorf("got sequence %d (state %d), want 3", m.Sequence, st.Sequence)
	}
	if got := s.srv.requests(); !slices.Contains(got, "/manifests/3.json") {
		t.Errorf("requests %v: no /manifests/3.json", got)
	}
	// When the history copy is missing too, the refusal stands.
	os.Remove(filepath.Join(s.serve, "manifests", "3.json"))
	st2 := &State{Sequence: 2}
	if _, err := FetchManifest(context.Background(), s.cfg, s.fetcher(), st2); !errors.Is(err, ErrRefused) || !errors.Is(err, manifest.ErrSignature) {
		t.Errorf("without manifests/3.json: %v", err)
	}
	if st2.Sequence != 2 {
		t.Errorf("state changed on refusal: %+v", st2)
	}
}

func TestCommentSequence(t *testing.T) {
	for _, c := range []struct {
		sig  string
		want uint64
		ok   bool
	}{
		{"untrusted comment: x\nRWQ\ntrusted comment: deltaup manifest app:demo sequence:7 issued:2026-01-01T00:00:00Z sha256:ab\nsig\n", 7, true},
		{"untrusted comment: x\r\nRWQ\r\ntrusted comment: deltaup manifest app:demo sequence:12 issued:x\r\n", 12, true},
		{"trusted comment: deltaup manifest app:other sequence:7 issued:x\n", 0, false},
		{"trusted comment: timestamp:1 file:manifest.json\n", 0, false},
		{"trusted comment: deltaup manifest app:demo sequence:0 issued:x\n", 0, false},
		{"trusted comment: deltaup manifest app:demo sequence:99999999999999999999 issued:x\n", 0, false},
		{"", 0, false},
	} {
		got, ok := commentSequence([]byte(c.sig), "demo")
		if got != c.want || ok != c.ok {
			t.Errorf("%q: %d %v, want %d %v", c.sig, got, ok, c.want, c.ok)
		}
	}
}

func TestDetectVersion(t *testing.T) {
	repo := ckNewRepo(t)
	m := repo.manifest(t)
	for _, v := range ckVersions {
		app := filepath.Join(t.TempDir(), "app")
		repo.install(t, v, app)
		got, err := DetectVersion(context.Background(), app, m, nil)
		if err != nil || got != v {
			t.Errorf("installed %s: detected %q, %v", v, got, err)
		}
	}
	app := filepath.Join(t.TempDir(), "app")
	repo.install(t, "1.1.0", app)
	if err := os.WriteFile(filepath.Join(app, "README.md"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := DetectVersion(context.Background(), app, m, nil); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("modified tree: %q, %v; want ErrUnknownVersion", got, err)
	}
}

func TestCheckUpdate(t *testing.T) {
	s := ckNewSetup(t, "1.0.0")
	m := s.repo.manifest(t)
	rel12, _ := m.Release("1.2.0")
	arch, _ := preferredArchive(rel12)
	p, ok := rel12.PatchFrom("1.0.0")
	if !ok {
		t.Fatal("no patch 1.0.0 -> 1.2.0")
	}

	// Installed 1.0.0 (detected): update to 1.2.0 ready.
	res, err := Check(context.Background(), s.cfg, s.fetcher())
	if err != nil {
		t.Fatal(err)
	}
	if res.Current != "1.0.0" || !res.Detected || res.Target != "1.2.0" || res.UpToDate || res.Route == nil {
		t.Fatalf("result: %+v", res)
	}
	r := res.Route
	if r.FullBytes != arch.Size || r.Bytes > arch.Size || r.Saving != r.FullBytes-r.Bytes || len(r.Steps) == 0 || r.Steps[len(r.Steps)-1].To != "1.2.0" {
		t.Errorf("route: %+v", r)
	}
	if r.Bytes > p.Size {
		t.Errorf("route costs %d bytes, the direct patch %d", r.Bytes, p.Size)
	}
	t.Logf("route %+v", r)
	st, err := LoadState(s.cfg.BackupDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sequence != 3 || st.Installed != "1.0.0" || st.App != "demo" {
		t.Errorf("saved state: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(s.cfg.AppDir, StateFileName)); err == nil {
		t.Error("state file inside the app directory")
	}

	// 1.2.0 marked bad: 1.1.0 is offered.
	st.MarkBad("1.2.0")
	if err := st.Save(s.cfg.BackupDir); err != nil {
		t.Fatal(err)
	}
	res, err = Check(context.Background(), s.cfg, s.fetcher())
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "1.1.0" || !slices.Equal(res.Skipped, []string{"1.2.0"}) || res.Route == nil {
		t.Errorf("with 1.2.0 bad: %+v", res)
	}
	// Explicitly requested, a bad version is offered.
	cfg := *s.cfg
	cfg.To = "1.2.0"
	if res, err = Check(context.Background(), &cfg, s.fetcher()); err != nil || res.Target != "1.2.0" || res.Route == nil {
		t.Errorf("explicit To of a bad version: %+v, %v", res, err)
	}

	// Installed 1.2.0: up to date.
	s2 := *s
	cfg2 := *s.cfg
	cfg2.AppDir, cfg2.BackupDir = filepath.Join(t.TempDir(), "app"), ""
	s.repo.install(t, "1.2.0", cfg2.AppDir)
	res, err = Check(context.Background(), &cfg2, s2.fetcher())
	if err != nil || !res.UpToDate || res.Current != "1.2.0" || res.Route != nil {
		t.Errorf("installed 1.2.0: %+v, %v", res, err)
	}
	// Current given explicitly: not detected, but its tree is checked
	// before its patches are planned. 1.1.0's tree: its patch.
	cfgC := *s.cfg
	cfgC.AppDir, cfgC.BackupDir, cfgC.Current = filepath.Join(t.TempDir(), "app"), "", "1.1.0"
	s.repo.install(t, "1.1.0", cfgC.AppDir)
	if res, err = Check(context.Background(), &cfgC, s2.fetcher()); err != nil || res.UpToDate || res.Detected || res.Closest != "" || res.Reason != "" || res.Route.Bytes != mustPatch(t, m, "1.1.0", "1.2.0") {
		t.Errorf("current 1.1.0 given: %+v, %v", res, err)
	}
	// 1.1.0 given for 1.2.0's tree: what differs from 1.1.0 is named and
	// the route is not 1.1.0's patch (it would fail on these files).
	cfg2.Current = "1.1.0"
	if res, err = Check(context.Background(), &cfg2, s2.fetcher()); err != nil || res.UpToDate || res.Detected || res.Closest != "1.1.0" || len(res.Modified) == 0 ||
		!strings.Contains(res.Reason, "the app directory is 1.1.0 except for") || res.Route.Bytes == mustPatch(t, m, "1.1.0", "1.2.0") {
		t.Errorf("current 1.1.0 given for 1.2.0's tree: %+v, %v", res, err)
	}

	// A modified tree: unknown version, only the archive; the closest
	// release and what differs are reported.
	cfg3 := *s.cfg
	cfg3.AppDir, cfg3.BackupDir = filepath.Join(t.TempDir(), "app"), ""
	s.repo.install(t, "1.1.0", cfg3.AppDir)
	os.WriteFile(filepath.Join(cfg3.AppDir, "README.md"), []byte("edited\n"), 0o644)
	os.WriteFile(filepath.Join(cfg3.AppDir, "extra.txt"), []byte("x"), 0o644)
	res, err = Check(context.Background(), &cfg3, s.fetcher())
	if err != nil || res.Current != "" || res.Route == nil || len(res.Route.Steps) != 1 || res.Route.Steps[0].Kind != StepArchive || res.Route.Saving != 0 ||
		res.Closest != "1.1.0" || !slices.Equal(res.Modified, []string{"README.md"}) || !slices.Equal(res.Extra, []string{"extra.txt"}) {
		t.Errorf("modified tree: %+v %v", res, err)
	}

	// A file of the user's added to an installed release: still that
	// release (the patch route), the file reported as extra.
	cfg4 := *s.cfg
	cfg4.AppDir, cfg4.BackupDir = filepath.Join(t.TempDir(), "app"), ""
	s.repo.install(t, "1.1.0", cfg4.AppDir)
	os.WriteFile(filepath.Join(cfg4.AppDir, "extra.txt"), []byte("x"), 0o644)
	res, err = Check(context.Background(), &cfg4, s.fetcher())
	if err != nil || res.Current != "1.1.0" || !res.Detected || !slices.Equal(res.Extra, []string{"extra.txt"}) || res.Route == nil || res.Route.Steps[0].Kind != StepPatch {
		t.Errorf("a user's file added: %+v %v", res, err)
	}
}

func mustPatch(t *testing.T, m *manifest.Manifest, from, to string) int64 {
	t.Helper()
	r, err := m.Release(to)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := r.PatchFrom(from)
	if !ok {
		t.Fatalf("no patch %s -> %s", from, to)
	}
	return p.Size
}

// Fetch failures that are not refusals: no manifest on the server, and a
// state file of another application.
func TestCheckFetchErrors(t *testing.T) {
	s := ckNewSetup(t, "1.0.0")
	os.Remove(filepath.Join(s.serve, manifest.ManifestName))
	_, err := Check(context.Background(), s.cfg, s.fetcher())
	if err == nil || errors.Is(err, ErrRefused) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no manifest.json: %v", err)
	}
	if _, err := os.Stat(StatePath(s.cfg.BackupDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file written after a failed check: %v", err)
	}
	if err := (&State{App: "other"}).Save(s.cfg.BackupDir); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(context.Background(), s.cfg, s.fetcher()); !errors.Is(err, ErrState) {
		t.Errorf("state of another app: %v", err)
	}
}

// The package's Downloader is a Fetcher: its not-found and too-large
// errors are understood.
func TestCheckWithDownloader(t *testing.T) {
	s := ckNewSetup(t, "1.0.0")
	d := &Downloader{Mirrors: s.cfg.Servers, Retries: -1}
	res, err := Check(context.Background(), s.cfg, d)
	if err != nil || res.Target != "1.2.0" || res.Route == nil {
		t.Fatalf("check: %+v, %v", res, err)
	}
	os.Remove(filepath.Join(s.serve, manifest.SignatureName))
	if _, err := Check(context.Background(), s.cfg, d); !errors.Is(err, ErrRefused) || !errors.Is(err, manifest.ErrSignature) {
		t.Errorf("missing signature: %v", err)
	}
	os.WriteFile(filepath.Join(s.serve, manifest.ManifestName), bytes.Repeat([]byte{' '}, manifest.MaxManifestSize+2), 0o644)
	if _, err := Check(context.Background(), s.cfg, d); !errors.Is(err, ErrRefused) || !errors.Is(err, manifest.ErrTooLarge) {
		t.Errorf("oversize: %v", err)
	}
}
