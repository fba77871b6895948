package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/manifest"
)

// ckRemoveFrameIndexes deletes the frame indexes (and framed copies) of a
// repository directory: a repository published before they existed.
func ckRemoveFrameIndexes(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "archives"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if n := e.Name(); strings.Contains(n, ".index.json") || strings.HasSuffix(n, ".frames.tar.zst") {
			if err := os.Remove(filepath.Join(dir, "archives", n)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// rpTreeDocs is version n of a tree with a large file of its own frame
// (lib/big.bin, 300 KiB), a binary, and docs small text files grouped in
// frames; each version changes a few bytes of each large file and one
// small file, so its patches are small.
func rpTreeDocs(t testing.TB, n int, pubFile []byte, docs int) string {
	dir := t.TempDir()
	big := ckNoiseSeed(11, 300<<10)
	copy(big[1000+n*4096:], fmt.Sprintf("version %d", n))
	app := ckNoiseSeed(12, 120<<10)
	copy(app[50000:], fmt.Sprintf("build %d", n))
	files := map[string]string{
		"bin/app":      "x:" + string(app),
		"lib/big.bin":  string(big),
		"deltaup.json": `{"app":"demo"}`,
		"deltaup.pub":  string(pubFile),
	}
	for i := range docs {
		files[fmt.Sprintf("share/doc%02d.txt", i)] = strings.Repeat(fmt.Sprintf("document %d, a line of text; ", i), 40+i*5)
	}
	files["share/doc05.txt"] += fmt.Sprintf("edited in version %d\n", n)
	ckWriteFiles(t, dir, files)
	return dir
}

// rpSetup publishes three versions of rpTree, serves the repository from
// memory (Range requests, per-request byte counts, faults), installs
// version installed and returns the setup and an Updater on it.
func rpSetup(t *testing.T, installed string, edit func(repoDir string)) (*ckSetup, *repoServer, *Updater) {
	return rpSetupDocs(t, installed, edit, 30)
}

// rpSetupDocs is rpSetup with trees of docs small files.
func rpSetupDocs(t *testing.T, installed string, edit func(repoDir string), docs int) (*ckSetup, *repoServer, *Updater) {
	t.Helper()
	repo := rpSharedRepo(t, docs)
	serve := filepath.Join(t.TempDir(), "site")
	ckCopyDir(t, repo.dir, serve)
	if edit != nil {
		edit(serve)
	}
	files := map[string][]byte{}
	filepath.WalkDir(serve, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(serve, p)
			files[filepath.ToSlash(rel)], _ = os.ReadFile(p)
		}
		return err
	})
	srv := newRepoServer(t, files)
	appDir := filepath.Join(t.TempDir(), "app")
	repo.install(t, installed, appDir)
	cfg := &Config{AppDir: appDir, Servers: []string{srv.URL}, PublicKey: repo.pub, App: "demo",
		Now: func() time.Time { return repo.now.Add(time.Hour) }}
	return &ckSetup{repo: repo, serve: serve, cfg: cfg}, srv, &Updater{Config: *cfg}
}

// rpShared holds the published repositories of rpTreeDocs by number of
// docs, built once per test binary beside ckSharedRepo's (shared.mu guards
// it) and read only: each setup serves a copy.
var rpShared = map[int]*ckRepo{}

func rpSharedRepo(t *testing.T, docs int) *ckRepo {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if r := rpShared[docs]; r != nil {
		return r
	}
	if shared.dir == "" {
		d, err := os.MkdirTemp("", "deltaup-apply-repo-")
		if err != nil {
			t.Fatal(err)
		}
		shared.dir, shared.repos = d, map[int]*ckRepo{}
	}
	p := persistTB{t}
	repo := ckEmptyRepo(p)
	for i, v := range ckVersions {
		repo.trees[v] = rpTreeDocs(p, i, repo.pubFile, docs)
		repo.publish(p, v, repo.trees[v])
	}
	rpShared[docs] = repo
	return repo
}

// rpSent sums the body bytes the server sent, by kind of path.
func rpSent(srv *repoServer) (frames, patches, archives, docs int64) {
	for _, r := range srv.requests("") {
		switch {
		case strings.HasSuffix(r.Path, ".tar.zst") && r.Range != "":
			frames += r.Sent
		case strings.HasPrefix(r.Path, "patches/"):
			patches += r.Sent
		case strings.HasPrefix(r.Path, "archives/") && !strings.Contains(r.Path, ".index.json"):
			archives += r.Sent
		default:
			docs += r.Sent
		}
	}
	return
}

// rpInstallAndCheck installs the prepared update and checks the app
// directory is exactly version want plus the user's files given.
func rpInstallAndCheck(t *testing.T, s *ckSetup, u *Updater, want string, user map[string]string) {
	t.Helper()
	if in, err := u.Install(context.Background()); err != nil || !in.Confirmed {
		t.Fatalf("Install: %+v %v", in, err)
	}
	for p, c := range user {
		b, err := os.ReadFile(filepath.Join(s.cfg.AppDir, filepath.FromSlash(p)))
		if err != nil || string(b) != c {
			t.Errorf("the user's %s: %q %v", p, b, err)
		}
		os.Remove(filepath.Join(s.cfg.AppDir, filepath.FromSlash(p)))
	}
	if got, wantS := hzSnapshot(t, s.cfg.AppDir), hzSnapshot(t, s.repo.trees[want]); got != wantS {
		t.Fatalf("the app directory is not %s:\n%s", want, hzDiff(wantS, got))
	}
}

// TestRepairRoute (issue 11, item 2): a tree with a few damaged files of
// its release takes "repair, then patch": only the frames holding the
// damaged files are fetched from the release's framed archive (Range), the
// rest comes from the app directory, and the chain's patches; the result
// is exactly the target and says what was repaired and why.
func TestRepairRoute(t *testing.T) {
	cases := []struct {
		name      string
		installed string
		damage    func(t *testing.T, app string)
		user      map[string]string // the user's own files, added
		files     []RepairedFile
		frames    int
		patches   bool // a patch chain follows the repair
		reason    string
		big       string // the damaged file of the target "≤ 1.1 times its compressed size" ("": "≤ 64 KiB")
		current   bool   // Config.Current names the installed version (as a Go app's does)
	}{
		{"one modified large file", "1.1.0", func(t *testing.T, app string) {
			rpFlip(t, filepath.Join(app, "lib/big.bin"))
		}, nil, []RepairedFile{{Path: "lib/big.bin", Why: "modified", Frame: 0}}, 1, true, "except for 1 modified file (lib/big.bin): repairing from 1.1.0's archive", "lib/big.bin", false},
		{"one missing small file", "1.1.0", func(t *testing.T, app string) {
			os.Remove(filepath.Join(app, "share/doc17.txt"))
		}, nil, []RepairedFile{{Path: "share/doc17.txt", Why: "missing", Frame: 0}}, 1, true, "1 missing file (share/doc17.txt)", "", false},
		{"modified, missing and the user's file", "1.0.0", func(t *testing.T, app string) {
			rpFlip(t, filepath.Join(app, "bin/app"))
			os.Remove(filepath.Join(app, "share/doc03.txt"))
		}, map[string]string{"settings.ini": "mine\n"}, []RepairedFile{{Path: "bin/app", Why: "modified", Frame: 0}, {Path: "share/doc03.txt", Why: "missing", Frame: 1}}, 2, true, "1 modified file (bin/app) and 1 missing file (share/doc03.txt)", "bin/app", false},
		{"permission bits only: nothing fetched", "1.1.0", func(t *testing.T, app string) {
			os.Chmod(filepath.Join(app, "share/doc09.txt"), 0o600)
		}, nil, []RepairedFile{{Path: "share/doc09.txt", Why: "mode", Frame: -1}}, 0, true, "1 file with other permission bits (share/doc09.txt)", "", false},
		{"the damaged release is the newest", "1.2.0", func(t *testing.T, app string) {
			rpFlip(t, filepath.Join(app, "lib/big.bin"))
		}, nil, []RepairedFile{{Path: "lib/big.bin", Why: "modified", Frame: 0}}, 1, false, "repairing from 1.2.0's archive", "lib/big.bin", false},
		// --current given: the patches from it would fail on the changed
		// files (before, the route fell back to the full archive).
		{"current given: one modified large file", "1.1.0", func(t *testing.T, app string) {
			rpFlip(t, filepath.Join(app, "lib/big.bin"))
		}, nil, []RepairedFile{{Path: "lib/big.bin", Why: "modified", Frame: 0}}, 1, true, "except for 1 modified file (lib/big.bin): repairing from 1.1.0's archive", "lib/big.bin", true},
		{"current given: modified, missing and the user's file", "1.0.0", func(t *testing.T, app string) {
			rpFlip(t, filepath.Join(app, "bin/app"))
			os.Remove(filepath.Join(app, "share/doc03.txt"))
		}, map[string]string{"settings.ini": "mine\n"}, []RepairedFile{{Path: "bin/app", Why: "modified", Frame: 0}, {Path: "share/doc03.txt", Why: "missing", Frame: 1}}, 2, true, "1 modified file (bin/app) and 1 missing file (share/doc03.txt)", "bin/app", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, srv, u := rpSetup(t, c.installed, nil)
			current := ""
			if c.current {
				current = c.installed
				s.cfg.Current, u.Config.Current = current, current
			}
			c.damage(t, s.cfg.AppDir)
			ckWriteFiles(t, s.cfg.AppDir, c.user)
			before := hzSnapshot(t, s.cfg.AppDir)
			p, err := u.Prepare(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			res, st := p.Check, p.Stage
			t.Logf("check: %s\nroute: %v (%d bytes, full %d)\nstage: %s", res.Reason, res.Route.Steps, res.Route.Bytes, res.Route.FullBytes, st.Repair)
			if res.Current != current || res.Closest != c.installed || res.Target != ckVersionsLast() {
				t.Fatalf("current %q closest %q target %q", res.Current, res.Closest, res.Target)
			}
			steps := res.Route.Steps
			if steps[0].Kind != StepRepair || steps[0].To != c.installed || (len(steps) > 1) != c.patches || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("route %v, reason %q", steps, res.Reason)
			}
			if st.Route != "repair" || st.Fallback != "" || !slices.Equal(st.Repaired, c.files) || !strings.HasPrefix(st.Repair, "repaired ") {
				t.Fatalf("stage: route %s, fallback %q, repaired %+v, %q", st.Route, st.Fallback, st.Repaired, st.Repair)
			}
			rp := steps[0].Repair
			if len(rp.Frames) != c.frames {
				t.Errorf("%d frames, want %d", len(rp.Frames), c.frames)
			}
			// Exactly the frames and the patches were fetched: the bytes
			// the route was priced at, nothing of the full archive.
			frames, patches, archives, docs := rpSent(srv)
			var patchBytes int64
			for _, st := range steps[1:] {
				patchBytes += st.Artifact.Size
			}
			if frames != rp.Bytes || patches != patchBytes || archives != 0 || res.Route.Bytes != rp.Bytes+patchBytes {
				t.Errorf("sent frames %d (planned %d), patches %d (planned %d), archives %d; route bytes %d", frames, rp.Bytes, patches, patchBytes, archives, res.Route.Bytes)
			}
			if c.frames == 0 && len(srv.requests("archives/demo-"+c.installed+".index.json")) != 0 {
				t.Error("the frame index was fetched for a repair that needs no bytes")
			}
			t.Logf("bytes: frames %d + patches %d (+ documents %d, of which frame index %d) vs full archive %d", frames, patches, docs, rp.IndexBytes, res.Route.FullBytes)
			// The targets: beyond the patch route, a large file costs at
			// most 1.1 times its compressed size (frame index included),
			// a small one at most 64 KiB.
			limit := int64(64 << 10)
			if c.big != "" {
				b, _ := os.ReadFile(filepath.Join(s.repo.trees[c.installed], c.big))
				limit = int64(len(rpZstd(t, b))) * 11 / 10
			}
			if extra := frames + rp.IndexBytes; extra > limit {
				t.Errorf("the repair costs %d bytes beyond the patch route, over %d", extra, limit)
			}
			if hzSnapshot(t, s.cfg.AppDir) != before {
				t.Fatal("Prepare changed the app directory")
			}
			rpInstallAndCheck(t, s, u, ckVersionsLast(), c.user)
		})
	}
}

// TestRepairFileList: a release whose tree is in a file-list document
// (over 200 entries) is repaired the same way; the check keeps the
// closest release's file list for the repair instead of fetching it again.
func TestRepairFileList(t *testing.T) {
	s, srv, u := rpSetupDocs(t, "1.1.0", nil, 230)
	m := s.repo.manifest(t)
	rel, _ := m.Release("1.1.0")
	if rel.FileList == nil {
		t.Fatal("1.1.0 has no file-list document")
	}
	os.Remove(filepath.Join(s.cfg.AppDir, "share/doc123.txt"))
	cfg := *s.cfg
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	res, err := CheckUpdate(context.Background(), &cfg, &Downloader{Mirrors: cfg.Servers}, &State{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Route.usesRepair() || !strings.Contains(res.Reason, "1 missing file (share/doc123.txt)") {
		t.Fatalf("route %v, reason %q", res.Route.Steps, res.Reason)
	}
	if n := len(srv.requests(rel.FileList.Path)); n != 1 {
		t.Errorf("the check fetched 1.1.0's file list %d times", n)
	}
	p, err := u.Prepare(context.Background())
	if err != nil || p.Stage.Route != "repair" || !slices.Equal(p.Stage.Repaired, []RepairedFile{{Path: "share/doc123.txt", Why: "missing", Frame: 0}}) {
		t.Fatalf("prepare: %+v %v", p.Stage, err)
	}
	rpInstallAndCheck(t, s, u, ckVersionsLast(), nil)
}

// rpZstd compresses b alone as Write's frames are.
func rpZstd(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(fallback.ZstdWindow), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// rpFlip changes one byte in the middle of a file (same size).
func rpFlip(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRepairFallsBack: when a repair cannot be planned or fails, the full
// archive is used, the reason says why, and the result is exact.
func TestRepairFallsBack(t *testing.T) {
	frameOf := func(t *testing.T, dir, version string) (string, manifest.FrameSpan) {
		raw, _ := os.ReadFile(filepath.Join(dir, "archives/demo-"+version+".index.json"))
		x, err := manifest.ParseFrameIndex(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range x.Spans() {
			if s.Size > 200<<10 { // lib/big.bin's
				return x.Archive.Path, s
			}
		}
		t.Fatal("no large frame")
		return "", manifest.FrameSpan{}
	}
	cases := []struct {
		name   string
		edit   func(t *testing.T, dir string) // the served repository
		fault  func(srv *repoServer, dir string)
		damage func(t *testing.T, app string)
		plan   bool   // the repair is planned (it fails while staging)
		why    string // in the check's reason, or the stage's fallback
	}{
		{name: "no frame index", edit: func(t *testing.T, dir string) { ckRemoveFrameIndexes(t, dir) },
			why: "1.1.0's archive has no frame index"},
		{name: "frame index signed by another key", edit: func(t *testing.T, dir string) {
			_, key, _ := manifest.GenerateKey(nil)
			priv, _ := manifest.ParsePrivateKey(key, nil)
			p := filepath.Join(dir, "archives/demo-1.1.0.index.json")
			raw, _ := os.ReadFile(p)
			sig, _ := manifest.SignFrameIndex(priv, raw)
			os.WriteFile(p+".minisig", sig, 0o644)
		}, why: "1.1.0's frame index was refused (frame index of 1.1.0: manifest: signature check failed"},
		{name: "frame index of another release", edit: func(t *testing.T, dir string) {
			for _, suffix := range []string{"", ".minisig"} {
				b, _ := os.ReadFile(filepath.Join(dir, "archives/demo-1.0.0.index.json"+suffix))
				os.WriteFile(filepath.Join(dir, "archives/demo-1.1.0.index.json"+suffix), b, 0o644)
			}
		}, why: "the frame index describes 1.0.0"},
		{name: "damaged frame on the mirror", edit: func(t *testing.T, dir string) {
			p, s := frameOf(t, dir, "1.1.0")
			b, _ := os.ReadFile(filepath.Join(dir, p))
			b[s.Offset+s.Size/2] ^= 1
			os.WriteFile(filepath.Join(dir, p), b, 0o644)
		}, plan: true, why: "do not match the manifest's SHA-256"},
		{name: "mirror ignores Range", fault: func(srv *repoServer, dir string) {
			p, _ := frameOf(srv.t.(*testing.T), dir, "1.1.0")
			srv.setFault(p, repoFault{IgnoreRange: true})
		}, plan: true, why: "does not serve byte ranges"},
		{name: "repair dearer than the archive", damage: func(t *testing.T, app string) {
			for _, p := range []string{"lib/big.bin", "bin/app"} {
				rpFlip(t, filepath.Join(app, p))
			}
			for i := range 30 {
				os.Remove(filepath.Join(app, fmt.Sprintf("share/doc%02d.txt", i)))
			}
		}, why: "would cost more"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var edit func(string)
			if c.edit != nil {
				edit = func(dir string) { c.edit(t, dir) }
			}
			s, srv, u := rpSetup(t, "1.1.0", edit)
			if c.fault != nil {
				c.fault(srv, s.serve)
			}
			damage := c.damage
			if damage == nil {
				damage = func(t *testing.T, app string) { rpFlip(t, filepath.Join(app, "lib/big.bin")) }
			}
			damage(t, s.cfg.AppDir)
			p, err := u.Prepare(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			res, st := p.Check, p.Stage
			t.Logf("check: %s\nstage fallback: %s", res.Reason, st.Fallback)
			planned := res.Route.Steps[0].Kind == StepRepair
			if planned != c.plan {
				t.Fatalf("repair planned %v, want %v: %v", planned, c.plan, res.Route.Steps)
			}
			if st.Route != "archive" || len(st.Repaired) != 0 || st.Repair != "" {
				t.Fatalf("stage route %s, repaired %v %q", st.Route, st.Repaired, st.Repair)
			}
			where := res.Reason
			if c.plan {
				where = st.Fallback
			} else if !strings.Contains(res.Reason, "installing the full archive of 1.2.0") {
				t.Errorf("reason without the route: %q", res.Reason)
			}
			if !strings.Contains(where, c.why) {
				t.Errorf("reason %q does not say %q", where, c.why)
			}
			rpInstallAndCheck(t, s, u, ckVersionsLast(), nil)
		})
	}
}

// TestRepairReasonNoClosest: a tree that is no release and close to none
// still gets a reason.
func TestRepairReasonNoClosest(t *testing.T) {
	res := &CheckResult{Manifest: &manifest.Manifest{App: "demo"}, Target: "1.2.0", Route: &Route{FullBytes: 8_700_000}}
	if err := res.planRepair(context.Background(), &Config{}, nil, nil); err != nil || res.Reason != "the app directory matches no release of demo: installing the full archive of 1.2.0 (8.7 MB)" {
		t.Errorf("%q %v", res.Reason, err)
	}
}

// TestFetchRange: a byte range is fetched with one Range request, checked
// and installed; resumed after a cut; refused from a mirror that ignores
// Range or serves other bytes, with the next mirror tried.
func TestFetchRange(t *testing.T) {
	data := ckNoiseSeed(5, 200<<10)
	const off, size = 60 << 10, 80 << 10 // covers the middle (FlipByte)
	sum := sha256.Sum256(data[off : off+size])
	cases := []struct {
		name   string
		faults [][]repoFault // per mirror
		err    error
		sent   int64 // body bytes from the last mirror, 0: not checked
	}{
		{"clean", [][]repoFault{nil}, nil, size},
		{"cut and resumed", [][]repoFault{{{DropAfter: 30 << 10, Times: 1}}}, nil, size},
		{"flipped byte", [][]repoFault{{{FlipByte: true}}}, ErrHashMismatch, 0},
		{"ignores Range", [][]repoFault{{{IgnoreRange: true}}}, ErrNoRange, 0},
		{"416", [][]repoFault{{{Always416: true}}}, ErrNoRange, 0},
		{"not found", [][]repoFault{{{Status: 404}}}, ErrNotFound, 0},
		{"first mirror tampered, second good", [][]repoFault{{{FlipByte: true}}, nil}, nil, size},
		{"first mirror ignores Range, second good", [][]repoFault{{{IgnoreRange: true}}, nil}, nil, size},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mirrors []string
			var srvs []*repoServer
			for _, fs := range c.faults {
				srv := newRepoServer(t, map[string][]byte{"archives/a-1.0.0.tar.zst": data})
				srv.setFault("archives/a-1.0.0.tar.zst", fs...)
				mirrors, srvs = append(mirrors, srv.URL), append(srvs, srv)
			}
			d := &Downloader{Mirrors: mirrors, Retries: 2, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond}
			dest := filepath.Join(t.TempDir(), "frame")
			err := d.FetchRange(context.Background(), "archives/a-1.0.0.tar.zst", off, size, sum, dest)
			if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
				t.Fatalf("got %v, want %v", err, c.err)
			}
			if err != nil {
				t.Logf("%v", err)
				if _, serr := os.Stat(dest); serr == nil {
					t.Error("dest created after a failure")
				}
				return
			}
			if b, _ := os.ReadFile(dest); !bytes.Equal(b, data[off:off+size]) {
				t.Fatal("dest does not hold the range")
			}
			last := srvs[len(srvs)-1]
			if got := last.sent(""); c.sent > 0 && got != c.sent {
				t.Errorf("the mirror sent %d bytes for a %d-byte range", got, c.sent)
			}
			for _, r := range last.requests("") {
				if !strings.HasPrefix(r.Range, "bytes=") || !strings.HasSuffix(r.Range, fmt.Sprint(off+size-1)) {
					t.Errorf("request with Range %q", r.Range)
				}
			}
			// Held already: no request.
			n := len(last.requests(""))
			if err := d.FetchRange(context.Background(), "archives/a-1.0.0.tar.zst", off, size, sum, dest); err != nil || len(last.requests("")) != n {
				t.Errorf("second fetch: %v, %d requests", err, len(last.requests(""))-n)
			}
		})
	}
	// Not a range, or an unsafe path: refused before any request.
	d := &Downloader{Mirrors: []string{"http://127.0.0.1:1"}}
	for _, c := range []struct {
		p         string
		off, size int64
	}{{"a.tar.zst", -1, 10}, {"a.tar.zst", 0, 0}, {"a.tar.zst", 1 << 62, 1 << 62}, {"../a.tar.zst", 0, 10}} {
		if err := d.FetchRange(context.Background(), c.p, c.off, c.size, sum, filepath.Join(t.TempDir(), "x")); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
