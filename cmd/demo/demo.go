package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/deltaup/deltaup/apply"
	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// appName is the application name in the demo's manifest.
const appName = "demoapp"

// Options of one demo run.
type Options struct {
	Rate         int64         // server throttle in bytes per second; 0 = none
	Versions     int           // how many versions to publish (>= 2)
	ShowRepair   bool          // edit an installed file: it is repaired from its archive's frame, then patched
	ShowFallback bool          // the server damages every patch: it fails verification, the archive is used
	Keep         bool          // keep the work directory
	Timeout      time.Duration // for the app's whole update; 0 = 120 s
	Out          io.Writer     // progress and summary; nil = io.Discard
	// ModuleRoot is the directory of this module's go.mod; "" = found with
	// `go env GOMOD` from the current directory.
	ModuleRoot string
	// BuildCache, when set, is a directory that keeps the app's binaries
	// (one per version) for later runs of the same process: a run reuses
	// those present and builds the rest (tests share one build so).
	BuildCache string
}

// Result of a demo run.
type Result struct {
	WorkDir   string // removed unless Keep
	Versions  []string
	Planned   []string // repository paths the planned route fetches
	Fetched   []string // artifact paths the server sent (manifest documents left out)
	Requests  []Request
	Bytes     int64 // body bytes the server sent, all requests
	FullBytes int64 // the newest version's tar.zst
	Took      time.Duration
	Pass      bool
}

// Run is the whole demo.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	start := time.Now()
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	if o.Versions < 2 {
		return nil, fmt.Errorf("--versions %d: need at least 2", o.Versions)
	}
	if o.Timeout <= 0 {
		o.Timeout = 120 * time.Second
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	root := o.ModuleRoot
	if root == "" {
		if root, err = moduleRoot(ctx); err != nil {
			return nil, err
		}
	}
	work, err := os.MkdirTemp("", "deltaup-demo-")
	if err != nil {
		return nil, err
	}
	res = &Result{WorkDir: work}
	defer func() {
		if !o.Keep {
			os.RemoveAll(work)
		}
	}()
	var (
		srcDir    = filepath.Join(work, "src")
		relDir    = filepath.Join(work, "releases")
		repo      = filepath.Join(work, "repo")
		appDir    = filepath.Join(work, "app")
		backupDir = appDir + apply.BackupSuffix
	)
	for i := range o.Versions {
		res.Versions = append(res.Versions, fmt.Sprintf("1.%d.0", i))
	}
	oldest, newest := res.Versions[0], res.Versions[len(res.Versions)-1]

	// The server's address goes into every tree's deltaup.json.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	serverURL := "http://" + ln.Addr().String()

	// 1. Sources and builds.
	say("== deltaup demo: %d versions (%s … %s), server %s, rate %s", o.Versions, oldest, newest, serverURL, rateString(o.Rate))
	say("work dir: %s", work)
	pubFile, keyFile, err := manifest.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	key, err := manifest.ParsePrivateKey(keyFile, nil)
	if err != nil {
		return nil, err
	}
	if err := writeAppModule(root, srcDir); err != nil {
		return nil, err
	}
	t0 := time.Now()
	say("-- building the app at %d versions (go build, offline)", o.Versions)
	if err := buildAll(ctx, srcDir, relDir, o.BuildCache, res.Versions); err != nil {
		return nil, err
	}
	for _, v := range res.Versions {
		if err := writeTree(filepath.Join(relDir, v), v, res.Versions, serverURL, pubFile); err != nil {
			return nil, err
		}
	}
	say("   built in %v", time.Since(t0).Round(time.Millisecond))

	// 2. Publish.
	say("-- publishing into %s", repo)
	t0 = time.Now()
	for _, v := range res.Versions {
		pr, err := releasetools.Publish(ctx, filepath.Join(relDir, v), releasetools.PublishOptions{Repo: repo, App: appName, Version: v, Key: key,
			PortableModes: runtime.GOOS == "windows"}) // Windows keeps no permission bits
		if err != nil {
			return nil, fmt.Errorf("publishing %s: %w", v, err)
		}
		var parts []string
		for _, a := range pr.Release.Archives {
			parts = append(parts, fmt.Sprintf("%s %d B", a.Format, a.Size))
		}
		for _, p := range pr.Release.Patches {
			parts = append(parts, fmt.Sprintf("patch from %s %d B", p.From, p.Size))
		}
		say("   %s: %s", v, strings.Join(parts, ", "))
	}
	say("   published in %v", time.Since(t0).Round(time.Millisecond))
	m, err := openManifest(repo, pubFile)
	if err != nil {
		return nil, err
	}
	first, err := m.Release(oldest)
	if err != nil {
		return nil, err
	}
	last, err := m.Release(newest)
	if err != nil {
		return nil, err
	}
	route, err := apply.Plan(m, oldest, newest, nil)
	if err != nil {
		return nil, err
	}
	if o.ShowRepair && len(route.Steps) > 0 && route.Steps[0].Kind == apply.StepPatch {
		// The edited file comes from its frame of the installed release's
		// archive, found through the release's frame index.
		frames, err := framesArchive(repo, pubFile, first)
		if err != nil {
			return nil, err
		}
		res.Planned = append(res.Planned, frames)
	}
	for _, s := range route.Steps {
		res.Planned = append(res.Planned, s.Artifact.Path)
	}
	if o.ShowFallback && len(route.Steps) > 0 && route.Steps[0].Kind == apply.StepPatch {
		for _, a := range last.Archives {
			if a.Format == manifest.FormatTarZst {
				res.Planned = append(res.Planned, a.Path)
			}
		}
	}
	for _, a := range last.Archives {
		if a.Format == manifest.FormatTarZst {
			res.FullBytes = a.Size
		}
	}
	say("   planned route %s → %s: %s", oldest, newest, strings.Join(res.Planned, ", "))

	// 3. Serve.
	rt, err := os.OpenRoot(repo)
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	lw := &lockedWriter{w: out}
	srv := &repoServer{root: rt, b: newBucket(o.Rate), log: lw}
	if o.ShowFallback {
		srv.damage = func(p string) bool { return strings.HasPrefix(p, releasetools.PatchesDir+"/") }
		say("   --show-fallback: the server sends every patch with one byte flipped, so it fails its SHA-256 and the full archive is used")
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()

	// 4. Install the oldest version.
	say("-- installing %s into %s", oldest, appDir)
	if err := installRelease(ctx, repo, first, appDir); err != nil {
		return nil, err
	}
	if o.ShowRepair {
		p := filepath.Join(appDir, "README.txt")
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, err
		}
		_, err = f.WriteString("a local edit the patches do not expect\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		say("   --show-repair: modified %s; the patches apply to %s's exact files, so that one file comes back from its frame of %s's archive first", p, oldest, oldest)
	}

	// 5. Run the app.
	say("-- starting %s", filepath.Join(appDir, "bin", "app"))
	t0 = time.Now()
	output, runErr := runApp(ctx, appDir, o.Timeout, lw)
	appTook := time.Since(t0)
	hs.Close()

	// 6. Summary.
	res.Requests = srv.requests()
	for _, r := range res.Requests {
		res.Bytes += r.Bytes
		if r.Bytes > 0 && !isDocument(r.Path) {
			if n := len(res.Fetched); n == 0 || res.Fetched[n-1] != r.Path {
				res.Fetched = append(res.Fetched, r.Path)
			}
		}
	}
	res.Took = time.Since(start)
	var problems []string
	if runErr != nil {
		problems = append(problems, runErr.Error())
	}
	wantLine := fmt.Sprintf("app %s: ", newest)
	if !strings.Contains(output, wantLine) || !strings.Contains(output, "confirmed") {
		problems = append(problems, fmt.Sprintf("the relaunched app never said %q … confirmed", wantLine))
	}
	digestOK := false
	if es, err := tree.Scan(ctx, appDir, tree.ScanOptions{Hash: true}); err != nil {
		problems = append(problems, "scanning the app dir: "+err.Error())
	} else if d := tree.Digest(es); d != last.TreeDigest {
		problems = append(problems, fmt.Sprintf("the app dir's tree digest %x is not %s's %x", d[:8], newest, last.TreeDigest[:8]))
	} else {
		digestOK = true
	}
	if !equalStrings(res.Fetched, res.Planned) {
		problems = append(problems, fmt.Sprintf("fetched %v, planned %v", res.Fetched, res.Planned))
	}
	res.Pass = len(problems) == 0

	say("")
	say("== summary")
	say("chain fetched:   %s", strings.Join(res.Fetched, " → "))
	say("chain planned:   %s", strings.Join(res.Planned, " → "))
	pct := 0.0
	if res.FullBytes > 0 {
		pct = 100 * float64(res.Bytes) / float64(res.FullBytes)
	}
	say("downloaded:      %d bytes in %d requests (manifest included) = %.1f%% of the full %s archive (%d bytes)", res.Bytes, len(res.Requests), pct, newest, res.FullBytes)
	say("wall time:       %v total, %v for the app's update (rate %s)", res.Took.Round(time.Millisecond), appTook.Round(time.Millisecond), rateString(o.Rate))
	if o.Rate > 0 {
		say("                 (the full archive alone takes %.1f s at this rate)", float64(res.FullBytes)/float64(o.Rate))
	}
	say("app dir:         %s (tree digest matches %s: %v)", appDir, newest, digestOK)
	say("backup dir:      %s", backupDir)
	say("repository:      %s", repo)
	if !o.Keep {
		say("                 (all under %s, removed now; --keep keeps it)", work)
	}
	for _, p := range problems {
		say("problem:         %s", p)
	}
	if res.Pass {
		say("PASS: %s updated itself from %s to %s", appName, oldest, newest)
	} else {
		say("FAIL")
	}
	return res, nil
}

// isDocument tells the repository's signed documents (the manifest, file
// lists, frame indexes and their signatures) from the artifacts a route
// fetches.
func isDocument(p string) bool {
	p = strings.TrimSuffix(p, manifest.FrameIndexSigSuffix)
	return p == manifest.ManifestName || p == manifest.SignatureName || strings.HasPrefix(p, "manifests/") ||
		strings.HasPrefix(p, releasetools.FileListsDir+"/") || strings.HasSuffix(p, ".index.json")
}

// framesArchive returns the path of r's framed archive, from its frame
// index in repo.
func framesArchive(repo string, pubFile []byte, r *manifest.Release) (string, error) {
	p, ok := manifest.FrameIndexPath(r)
	if !ok {
		return "", fmt.Errorf("release %s has no frame index", r.Version)
	}
	raw, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(p)))
	if err != nil {
		return "", err
	}
	sig, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(p+manifest.FrameIndexSigSuffix)))
	if err != nil {
		return "", err
	}
	pub, err := manifest.ParsePublicKey(pubFile)
	if err != nil {
		return "", err
	}
	var doc []byte
	if r.FileList != nil {
		if doc, err = os.ReadFile(filepath.Join(repo, filepath.FromSlash(r.FileList.Path))); err != nil {
			return "", err
		}
	}
	es, err := r.Entries(doc)
	if err != nil {
		return "", err
	}
	x, err := manifest.OpenFrameIndex(raw, sig, pub, appName, r, len(es))
	if err != nil {
		return "", err
	}
	return x.Archive.Path, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func rateString(r int64) string {
	if r <= 0 {
		return "unthrottled"
	}
	return fmt.Sprintf("%d B/s (%.2f Mbit/s)", r, float64(r)*8/1e6)
}

// moduleRoot finds this module's root with `go env GOMOD`.
func moduleRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (run the demo from inside the deltaup module)", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a module: run the demo from the deltaup module (go run ./cmd/demo)")
	}
	raw, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	if !bytes.Contains(raw, []byte("module github.com/deltaup/deltaup\n")) {
		return "", fmt.Errorf("%s is not the github.com/deltaup/deltaup module: run the demo from its root", gomod)
	}
	return filepath.Dir(gomod), nil
}

// writeAppModule writes the app's module: go.mod requiring this module
// through a replace directive (plus this module's own requirements, so the
// build needs no resolution), go.sum copied, main.go.
func writeAppModule(root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mainMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("module deltaupdemo/app\n")
	for _, line := range strings.SplitAfter(string(mainMod), "\n") {
		if strings.HasPrefix(line, "module ") {
			continue
		}
		b.WriteString(line)
	}
	fmt.Fprintf(&b, "\nrequire github.com/deltaup/deltaup v0.0.0\n\nreplace github.com/deltaup/deltaup => %s\n", strings.ReplaceAll(root, `\`, `/`))
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "main.go"), []byte(appSource), 0o644)
}

// buildAll builds bin/app of every version into relDir/V: the first alone
// (it may settle go.mod), the rest in parallel (linking only).
func buildAll(ctx context.Context, srcDir, relDir, cache string, versions []string) error {
	exe := "app"
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	if cache != "" {
		// Reuse what an earlier run built; build the rest, then keep it.
		buildCacheMu.Lock()
		defer buildCacheMu.Unlock()
		var missing []string
		for _, v := range versions {
			if err := copyExecutable(filepath.Join(cache, v, exe), filepath.Join(relDir, v, "bin", exe)); errors.Is(err, fs.ErrNotExist) {
				missing = append(missing, v)
			} else if err != nil {
				return err
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if err := buildAll(ctx, srcDir, relDir, "", missing); err != nil {
			return err
		}
		for _, v := range missing {
			if err := copyExecutable(filepath.Join(relDir, v, "bin", exe), filepath.Join(cache, v, exe)); err != nil {
				return err
			}
		}
		return nil
	}
	build := func(v string) error {
		outFile := filepath.Join(relDir, v, "bin", exe)
		ld := fmt.Sprintf("-s -w -X main.version=%s -X 'main.banner=%s'", v, banner(v))
		// Plain flags (no -trimpath, default cgo setting) so the packages
		// compiled for this module's own builds and tests are reused.
		cmd := exec.CommandContext(ctx, "go", "build", "-mod=mod", "-ldflags", ld, "-o", outFile, ".")
		cmd.Dir = srcDir
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the app %s: %v\n%s", v, err, b)
		}
		return nil
	}
	if err := build(versions[0]); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(versions))
	for i, v := range versions[1:] {
		wg.Go(func() { errs[i+1] = build(v) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// buildCacheMu serializes runs sharing a build cache (Options.BuildCache).
var buildCacheMu sync.Mutex

// copyExecutable copies the program src to dst (0755, directories made).
func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// banner is the visible change of each version.
func banner(v string) string {
	banners := []string{"Hello from the first release", "Now with a changelog viewer", "Faster, smaller, shinier", "Dark mode arrives", "Plugins!"}
	var minor int
	fmt.Sscanf(v, "1.%d.0", &minor)
	return fmt.Sprintf("%s (release %s)", banners[minor%len(banners)], v)
}

// writeTree completes relDir/V: deltaup.json, the public key, README.txt
// with the banner, CHANGELOG.txt and notes/W.txt for every W <= V.
func writeTree(dir, v string, all []string, serverURL string, pubFile []byte) error {
	cfg, err := json.MarshalIndent(apply.FileConfig{App: appName, Servers: []string{serverURL}, PubKey: "release.pub"}, "", "  ")
	if err != nil {
		return err
	}
	files := map[string]string{
		apply.ConfigFileName: string(cfg) + "\n",
		"release.pub":        string(pubFile),
		"README.txt":         "Demo app for deltaup.\n\n" + banner(v) + "\n",
	}
	var log strings.Builder
	for _, w := range all {
		log.WriteString(w + ": " + banner(w) + "\n")
		files["notes/"+w+".txt"] = "Release notes of " + w + ": " + banner(w) + "\n"
		if w == v {
			break
		}
	}
	files["CHANGELOG.txt"] = log.String()
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func openManifest(repo string, pubFile []byte) (*manifest.Manifest, error) {
	pub, err := manifest.ParsePublicKey(pubFile)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(repo, manifest.ManifestName))
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(repo, manifest.SignatureName))
	if err != nil {
		return nil, err
	}
	return manifest.Open(raw, sig, pub, manifest.OpenOptions{App: appName})
}

// installRelease extracts r's tar.zst archive into dest, checked against
// its signed file list.
func installRelease(ctx context.Context, repo string, r *manifest.Release, dest string) error {
	if r.FileList != nil {
		return errors.New("the demo's trees are small enough for an inline file list")
	}
	for _, a := range r.Archives {
		if a.Format != manifest.FormatTarZst {
			continue
		}
		f, err := os.Open(filepath.Join(repo, filepath.FromSlash(a.Path)))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = fallback.Extract(ctx, f, fallback.TarZst, dest, &fallback.ExtractOptions{Expected: r.Files})
		return err
	}
	return fmt.Errorf("release %s has no tar.zst archive", r.Version)
}

// runApp starts appDir/bin/app and streams its output (and that of every
// process that inherits it: the re-executed copy, the relaunched new
// version) to w, prefixed, until all of them have closed it.
func runApp(ctx context.Context, appDir string, timeout time.Duration, w io.Writer) (string, error) {
	exe := filepath.Join(appDir, "bin", "app")
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(exe)
	cmd.Dir = appDir
	cmd.Stdout, cmd.Stderr = pw, pw
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DELTAUP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return "", err
	}
	pw.Close()
	var all strings.Builder
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			fmt.Fprintf(w, "  | %s\n", sc.Text())
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var exitErr error
	select {
	case exitErr = <-exited:
	case <-timer.C:
		cmd.Process.Kill()
		pr.Close()
		<-readDone
		return all.String(), fmt.Errorf("the app did not finish its update within %v (killed it)", timeout)
	case <-ctx.Done():
		cmd.Process.Kill()
		pr.Close()
		<-readDone
		return all.String(), ctx.Err()
	}
	// The relaunched version may still be writing.
	select {
	case <-readDone:
	case <-timer.C:
		pr.Close()
		<-readDone
		return all.String(), fmt.Errorf("the relaunched app did not exit within %v", timeout)
	case <-ctx.Done():
		pr.Close()
		<-readDone
		return all.String(), ctx.Err()
	}
	pr.Close()
	if exitErr != nil {
		return all.String(), fmt.Errorf("the app failed: %w", exitErr)
	}
	return all.String(), nil
}

// lockedWriter serialises the server log and the app's output.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
