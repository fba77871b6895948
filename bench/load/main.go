// Command load is a bounded load test of a deltaup repository served by
// nginx on loopback: it publishes a synthetic application of -releases
// versions (releasetools.Publish, default settings), starts nginx on a
// random 127.0.0.1 port, and for -duration runs -pollers clients that poll
// (GET manifest.json and its signature, as `deltaup check` does; half of
// them with If-None-Match, as a client that keeps the ETag would) and
// -updaters clients that update (plan the cheapest route from a random
// older release to the newest with apply.Plan, then GET every artifact of
// it). It reports bytes on the wire per poll and per update, requests per
// second and latency percentiles, and what a release costs in CDN egress
// for 10 million installs; it stops by itself after -duration (and a hard
// limit of twice that), and dials only 127.0.0.1.
//
// Usage (from the module root):
//
//	go run ./bench/load [-releases 100] [-pollers 1000] [-updaters 100] [-duration 20s] [-write]
//
// With -write the report replaces the load-test section of
// bench/RESULTS-e2e.md (from the line "<!-- load-test -->" to the end).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deltaup/deltaup/apply"
	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// Marker starts the load-test section of bench/RESULTS-e2e.md.
const Marker = "<!-- load-test -->"

func main() {
	releases := flag.Int("releases", 100, "releases in the repository")
	pollers := flag.Int("pollers", 1000, "clients polling at once")
	updaters := flag.Int("updaters", 100, "clients updating at once")
	duration := flag.Duration("duration", 20*time.Second, "how long the clients run")
	appMB := flag.Int("app-mb", 4, "size of the synthetic application, MiB")
	nginxBin := flag.String("nginx", "", "nginx binary (default: PATH, then /usr/sbin/nginx)")
	write := flag.Bool("write", false, "replace the load-test section of bench/RESULTS-e2e.md")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	if *releases < 2 || *pollers < 1 || *updaters < 0 || *duration <= 0 || *duration > 10*time.Minute || *appMB < 1 || *appMB > 256 {
		fmt.Fprintln(os.Stderr, "load: need -releases >= 2, -pollers >= 1, -updaters >= 0, 0 < -duration <= 10m, 1 <= -app-mb <= 256")
		os.Exit(2)
	}
	if err := run(*releases, *pollers, *updaters, *duration, *appMB, *nginxBin, *write, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(releases, pollers, updaters int, duration time.Duration, appMB int, nginxBin string, write, keep bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*duration+30*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "deltaup-load-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	os.Chmod(work, 0o755) // nginx workers may run as another user
	repo := filepath.Join(work, "repo")
	_, keyFile, err := manifest.GenerateKey(nil)
	if err != nil {
		return err
	}
	key, err := manifest.ParsePrivateKey(keyFile, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := publishAll(ctx, work, repo, key, releases, appMB); err != nil {
		return err
	}
	pubTook := time.Since(start)
	m, err := readManifest(repo)
	if err != nil {
		return err
	}
	base, stop, err := startNginx(work, repo, nginxBin, pollers+updaters)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("repository: %d releases in %s, served at %s\n", releases, pubTook.Round(time.Second), base)

	res, err := drive(ctx, base, m, pollers, updaters, duration)
	if err != nil {
		return err
	}
	full := fullArchiveSize(m)
	report := res.markdown(m, releases, pollers, updaters, duration, appMB, full)
	fmt.Print(report)
	if write {
		return writeSection("bench/RESULTS-e2e.md", report)
	}
	return nil
}

// publishAll publishes n releases of a synthetic application of appMB MiB:
// four binaries and 50 small files; every release changes 256 runs of 32
// bytes in each binary and one small file, as a patch release does.
func publishAll(ctx context.Context, work, repo string, key manifest.PrivateKey, n, appMB int) error {
	app := filepath.Join(work, "app")
	rng := mrand.New(mrand.NewPCG(100, 1))
	bins := make([][]byte, 4)
	for i := range bins {
		bins[i] = make([]byte, appMB<<20/4)
		// Half random, half a compressible pattern: like code and data.
		rand.Read(bins[i][:len(bins[i])/2])
		for j := len(bins[i]) / 2; j < len(bins[i]); j++ {
			bins[i][j] = byte(j / 7 % 61)
		}
	}
	for r := range n {
		for i, b := range bins {
			for range 256 {
				off := rng.IntN(len(b) - 64)
				for k := range 32 {
					b[off+k] ^= byte(1 + rng.IntN(255))
				}
			}
			if err := writeFileAll(filepath.Join(app, "bin", fmt.Sprintf("part%d", i)), b); err != nil {
				return err
			}
		}
		for f := range 50 {
			body := fmt.Sprintf("module %d of the app\n%s", f, strings.Repeat(fmt.Sprintf("line %d\n", f), 40))
			if f == r%50 {
				body += fmt.Sprintf("changed in release %d\n", r)
			}
			if err := writeFileAll(filepath.Join(app, "lib", fmt.Sprintf("mod%02d.js", f)), []byte(body)); err != nil {
				return err
			}
		}
		v := fmt.Sprintf("1.%d.0", r)
		if _, err := releasetools.Publish(ctx, app, releasetools.PublishOptions{Repo: repo, App: "loadapp", Version: v, Key: key}); err != nil {
			return fmt.Errorf("publishing %s: %w", v, err)
		}
		if (r+1)%10 == 0 {
			fmt.Printf("published %d/%d\n", r+1, n)
		}
	}
	return nil
}

func writeFileAll(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

func readManifest(repo string) (*manifest.Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(repo, manifest.ManifestName))
	if err != nil {
		return nil, err
	}
	return manifest.ParseUnverified(raw)
}

func fullArchiveSize(m *manifest.Manifest) int64 {
	rs := m.Sorted("")
	for _, a := range rs[len(rs)-1].Archives {
		if a.Format == manifest.FormatTarZst {
			return a.Size
		}
	}
	return 0
}

// startNginx serves repo on a random loopback port, gzip on for JSON (as
// CDNs compress it), ETags on (nginx's default).
func startNginx(work, repo, bin string, clients int) (string, func(), error) {
	if bin == "" {
		if p, err := exec.LookPath("nginx"); err == nil {
			bin = p
		} else if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			bin = "/usr/sbin/nginx"
		} else {
			return "", nil, errors.New("nginx not found (apt-get install nginx-light, or -nginx PATH)")
		}
	}
	ngx := filepath.Join(work, "nginx")
	if err := os.MkdirAll(filepath.Join(ngx, "tmp"), 0o755); err != nil {
		return "", nil, err
	}
	user := ""
	if os.Getuid() == 0 {
		user = "user root root;"
	}
	for range 20 {
		port := 20000 + mrand.IntN(40000)
		conf := fmt.Sprintf(`%s
worker_processes %d;
worker_rlimit_nofile %d;
daemon on;
pid %[4]s/nginx.pid;
error_log %[4]s/error.log warn;
events { worker_connections %[5]d; }
http {
  types { application/json json; application/zstd zst; application/gzip gz; }
  default_type application/octet-stream;
  client_body_temp_path %[4]s/tmp/body;
  proxy_temp_path %[4]s/tmp/proxy;
  fastcgi_temp_path %[4]s/tmp/fastcgi;
  uwsgi_temp_path %[4]s/tmp/uwsgi;
  scgi_temp_path %[4]s/tmp/scgi;
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  gzip on;
  gzip_types application/json;
  gzip_min_length 256;
  open_file_cache max=1000;
  server {
    listen 127.0.0.1:%[6]d backlog=4096;
    root %[7]s;
  }
}
`, user, runtime.NumCPU(), 4*clients+256, ngx, 2*clients+64, port, repo)
		cf := filepath.Join(ngx, "nginx.conf")
		if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
			return "", nil, err
		}
		if out, err := exec.Command(bin, "-p", ngx, "-c", cf, "-e", filepath.Join(ngx, "error.log")).CombinedOutput(); err != nil {
			if strings.Contains(string(out), "Address already in use") {
				continue
			}
			return "", nil, fmt.Errorf("nginx: %v: %s", err, out)
		}
		stop := func() {
			b, err := os.ReadFile(filepath.Join(ngx, "nginx.pid"))
			if err != nil {
				return
			}
			var pid int
			fmt.Sscan(string(b), &pid)
			if p, err := os.FindProcess(pid); err == nil && pid > 0 {
				p.Signal(os.Interrupt)
			}
			for range 50 {
				if _, err := os.Stat(filepath.Join(ngx, "nginx.pid")); err != nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		for range 50 {
			if r, err := http.Get(base + "/" + manifest.SignatureName); err == nil {
				r.Body.Close()
				return base, stop, nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		stop()
		return "", nil, errors.New("nginx did not answer")
	}
	return "", nil, errors.New("nginx did not start on any of 20 loopback ports")
}

// countingConn counts the bytes read from the server: what the CDN sends.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// client is one simulated client with its own connection, counting the
// bytes it receives.
type client struct {
	http *http.Client
	rx   atomic.Int64
}

func newClient() *client {
	c := &client{}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c.http = &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, err := net.SplitHostPort(addr)
				if err != nil || host != "127.0.0.1" {
					return nil, fmt.Errorf("load: refusing to dial %s: loopback only", addr)
				}
				conn, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return countingConn{conn, &c.rx}, nil
			},
			MaxIdleConnsPerHost: 2,
		},
	}
	return c
}

// get fetches url (with an ETag when etag is set) and returns the status,
// the ETag, and the bytes received on the wire (headers included).
func (c *client) get(ctx context.Context, url, etag string) (int, string, int64, error) {
	before := c.rx.Load()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", 0, err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp.StatusCode, resp.Header.Get("ETag"), c.rx.Load() - before, err
}

// results of a run.
type results struct {
	mu                        sync.Mutex
	pollLat, condLat, artLat  []time.Duration
	polls, condPolls, updates int64
	pollBytes, condBytes      int64
	updateBytes, updatePlan   int64
	notModified               int64
	requests                  int64
	errs                      int64
	firstErr                  error
	elapsed                   time.Duration
	routeSteps                map[int]int64
}

func (r *results) fail(err error) {
	r.mu.Lock()
	r.errs++
	if r.firstErr == nil {
		r.firstErr = err
	}
	r.mu.Unlock()
}

func drive(ctx context.Context, base string, m *manifest.Manifest, pollers, updaters int, duration time.Duration) (*results, error) {
	res := &results{routeSteps: map[int]int64{}}
	rs := m.Sorted("")
	newest := rs[len(rs)-1].Version
	runCtx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range pollers {
		conditional := i%2 == 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			defer c.http.CloseIdleConnections()
			etags := map[string]string{}
			first := true
			var firstLat []time.Duration
			var firstBytes int64
			var lat []time.Duration
			var n, bytes, nm, reqs int64
			for runCtx.Err() == nil {
				t := time.Now()
				var got int64
				ok := true
				for _, name := range []string{manifest.ManifestName, manifest.SignatureName} {
					et := ""
					if conditional {
						et = etags[name]
					}
					code, etag, b, err := c.get(runCtx, base+"/"+name, et)
					reqs++
					if err != nil {
						if runCtx.Err() == nil {
							res.fail(err)
						}
						ok = false
						break
					}
					if code == http.StatusNotModified {
						nm++
					}
					etags[name] = etag
					got += b
				}
				if !ok {
					continue
				}
				if conditional && first {
					// The first poll has no ETag yet: a plain one.
					first = false
					firstLat = append(firstLat, time.Since(t))
					firstBytes += got
					continue
				}
				lat = append(lat, time.Since(t))
				n++
				bytes += got
			}
			res.mu.Lock()
			defer res.mu.Unlock()
			res.requests += reqs
			res.pollLat = append(res.pollLat, firstLat...)
			res.polls += int64(len(firstLat))
			res.pollBytes += firstBytes
			if conditional {
				res.condLat = append(res.condLat, lat...)
				res.condPolls += n
				res.condBytes += bytes
				res.notModified += nm
			} else {
				res.pollLat = append(res.pollLat, lat...)
				res.polls += n
				res.pollBytes += bytes
			}
		}()
	}
	for i := range updaters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			defer c.http.CloseIdleConnections()
			rng := mrand.New(mrand.NewPCG(uint64(i), 7))
			var lat []time.Duration
			var n, bytes, plan, reqs int64
			steps := map[int]int64{}
			for runCtx.Err() == nil {
				from := rs[rng.IntN(len(rs)-1)].Version
				route, err := apply.Plan(m, from, newest, nil)
				if err != nil {
					res.fail(err)
					return
				}
				var got int64
				ok := true
				for _, s := range route.Steps {
					t := time.Now()
					_, _, b, err := c.get(runCtx, base+"/"+s.Artifact.Path, "")
					reqs++
					if err != nil {
						if runCtx.Err() == nil {
							res.fail(err)
						}
						ok = false
						break
					}
					lat = append(lat, time.Since(t))
					got += b
				}
				if !ok {
					continue
				}
				n++
				bytes += got
				plan += route.Bytes
				steps[len(route.Steps)]++
			}
			res.mu.Lock()
			defer res.mu.Unlock()
			res.requests += reqs
			res.artLat = append(res.artLat, lat...)
			res.updates += n
			res.updateBytes += bytes
			res.updatePlan += plan
			for k, v := range steps {
				res.routeSteps[k] += v
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if res.errs > 0 {
		return nil, fmt.Errorf("%d requests failed; first: %v", res.errs, res.firstErr)
	}
	if res.polls == 0 || (updaters > 0 && res.updates == 0) {
		return nil, errors.New("no poll or no update completed")
	}
	return res, nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[max(i, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func human(b float64) string {
	switch {
	case b >= 1e12:
		return fmt.Sprintf("%.2f TB", b/1e12)
	case b >= 1e9:
		return fmt.Sprintf("%.2f GB", b/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%.2f MB", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.1f kB", b/1e3)
	}
	return fmt.Sprintf("%.0f B", b)
}

func (r *results) markdown(m *manifest.Manifest, releases, pollers, updaters int, duration time.Duration, appMB int, full int64) string {
	var b strings.Builder
	secs := r.elapsed.Seconds()
	perPoll := float64(r.pollBytes) / float64(r.polls)
	perCond := perPoll
	if r.condPolls > 0 {
		perCond = float64(r.condBytes) / float64(r.condPolls)
	}
	perUpdate := float64(r.updateBytes) / float64(max(r.updates, 1))
	raw, _ := os.ReadFile("/proc/cpuinfo")
	cpu := "unknown CPU"
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
			cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			break
		}
	}
	fmt.Fprintf(&b, "%s\n\n## Load test: one repository, %d clients polling and %d updating at once\n\n", Marker, pollers, updaters)
	fmt.Fprintf(&b, "Written by `go run ./bench/load -write` on %s; machine: %s, %d CPUs, %s, shared with other work.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpu, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&b, "nginx on loopback (%d workers, gzip on for JSON, ETags on) serves a repository of %d releases of a\n"+
		"synthetic %d MiB application (4 binaries with 256 runs of 32 bytes changed per release, 50 small\n"+
		"files, one changed per release), published with the defaults (patches from the 3 closest versions and\n"+
		"milestones). manifest.json is %s (%d releases listed). For %s, %d clients poll in a closed loop\n"+
		"(GET manifest.json and manifest.json.minisig, as `deltaup check` does: half plain, half with\n"+
		"If-None-Match after their first poll, as a client keeping ETags would) and %d update in a closed loop from a random older\n"+
		"release to the newest (the route of apply.Plan, every artifact fetched). Bytes are what the\n"+
		"clients read from their sockets: bodies and headers, after gzip.\n\n",
		runtime.NumCPU(), releases, appMB, human(float64(manifestSize(m))), len(m.Releases), duration, pollers, updaters)
	fmt.Fprintf(&b, "| figure | value |\n|---|---:|\n")
	fmt.Fprintf(&b, "| requests per second (all clients) | %.0f |\n", float64(r.requests)/secs)
	fmt.Fprintf(&b, "| polls per second | %.0f |\n", float64(r.polls+r.condPolls)/secs)
	fmt.Fprintf(&b, "| bytes per poll, plain GET (gzip) | %s |\n", human(perPoll))
	fmt.Fprintf(&b, "| bytes per poll, If-None-Match (304, after a client's first poll) | %s |\n", human(perCond))
	fmt.Fprintf(&b, "| poll latency p50 / p99 (both requests), plain | %s / %s |\n", ms(pct(r.pollLat, 50)), ms(pct(r.pollLat, 99)))
	fmt.Fprintf(&b, "| poll latency p50 / p99, If-None-Match | %s / %s |\n", ms(pct(r.condLat, 50)), ms(pct(r.condLat, 99)))
	fmt.Fprintf(&b, "| updates completed | %d (%.1f per second) |\n", r.updates, float64(r.updates)/secs)
	fmt.Fprintf(&b, "| bytes per update (mean over random starting releases) | %s (plan %s; full tar.zst %s) |\n",
		human(perUpdate), human(float64(r.updatePlan)/float64(max(r.updates, 1))), human(float64(full)))
	fmt.Fprintf(&b, "| artifact request latency p50 / p99 | %s / %s |\n", ms(pct(r.artLat, 50)), ms(pct(r.artLat, 99)))
	var hops []string
	for k := range 20 {
		if n := r.routeSteps[k]; n > 0 {
			hops = append(hops, fmt.Sprintf("%d: %d", k, n))
		}
	}
	fmt.Fprintf(&b, "| updates by number of downloads | %s |\n\n", strings.Join(hops, ", "))

	// The cost of one release for 10 million installs.
	const installs = 10e6
	fmt.Fprintf(&b, "### What one release costs in CDN egress, 10 million installs\n\n")
	fmt.Fprintf(&b, "From the figures above: every install polls (4 polls a day over the 7 days a release is\n"+
		"newest, say) and updates once. Polls cost the same whatever the update route; the update is the\n"+
		"mean measured route above (this synthetic app) or its full archive. For a real app, put its own\n"+
		"update bytes in (esbuild 0.25.0 → 0.25.12: the patch chain of the first table).\n\n")
	pollsPer := 4.0 * 7
	fmt.Fprintf(&b, "| item | per install | 10 million installs |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| %0.f plain polls × %s | %s | %s |\n", pollsPer, human(perPoll), human(pollsPer*perPoll), human(installs*pollsPer*perPoll))
	fmt.Fprintf(&b, "| %0.f polls with If-None-Match, one 200 then 304s | %s | %s |\n", pollsPer, human(perPoll+(pollsPer-1)*perCond), human(installs*(perPoll+(pollsPer-1)*perCond)))
	fmt.Fprintf(&b, "| update by patches (measured mean, %d MiB app) | %s | %s |\n", appMB, human(perUpdate), human(installs*perUpdate))
	fmt.Fprintf(&b, "| update by full archive (same app) | %s | %s |\n", human(float64(full)), human(installs*float64(full)))
	fmt.Fprintf(&b, "| **release total: plain polls + patches** | %s | **%s** |\n", human(pollsPer*perPoll+perUpdate), human(installs*(pollsPer*perPoll+perUpdate)))
	fmt.Fprintf(&b, "| **release total: conditional polls + patches** | %s | **%s** |\n\n", human(perPoll+(pollsPer-1)*perCond+perUpdate), human(installs*(perPoll+(pollsPer-1)*perCond+perUpdate)))
	fmt.Fprintf(&b, "At a list price of $0.085 per GB (the first CDN tier of the large clouds), the plain-poll total is\n"+
		"$%.0f per release, the conditional one $%.0f; full archives for everyone would be $%.0f.\n",
		installs*(pollsPer*perPoll+perUpdate)/1e9*0.085, installs*(perPoll+(pollsPer-1)*perCond+perUpdate)/1e9*0.085,
		installs*(pollsPer*perPoll+float64(full))/1e9*0.085)
	return b.String()
}

func manifestSize(m *manifest.Manifest) int {
	raw, err := manifest.Marshal(m)
	if err != nil {
		return 0
	}
	return len(raw)
}

// writeSection replaces the part of file from Marker to the end with s
// (appends it when the file has no marker).
func writeSection(file, s string) error {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := string(old)
	if i := strings.Index(text, Marker); i >= 0 {
		text = text[:i]
	} else if text != "" && !strings.HasSuffix(text, "\n\n") {
		text = strings.TrimRight(text, "\n") + "\n\n"
	}
	return os.WriteFile(file, []byte(text+s), 0o644)
}
