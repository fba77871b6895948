package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// Download errors; every error of Get and Fetch that has one of these causes
// matches it with errors.Is. Context cancellation and deadline errors are
// wrapped too (errors.Is(err, context.Canceled) etc.).
var (
	// ErrNotFound: every mirror answered 404, 410 or 403 for the path.
	ErrNotFound = errors.New("not found on any mirror")
	// ErrHashMismatch: every mirror that had the artifact (did not answer
	// 404) served bytes whose SHA-256 differs from the manifest's.
	ErrHashMismatch = errors.New("downloaded bytes do not match the manifest's SHA-256")
	// ErrTooLarge: a server sent or announced more bytes than allowed (the
	// artifact size, or Get's max).
	ErrTooLarge = errors.New("server sent more data than expected")
	// ErrStalled: no byte arrived for StallTimeout.
	ErrStalled = errors.New("download stalled")
	// ErrTooSlow: bytes kept arriving, but slower than the rate floor
	// (Downloader.MinRate) — a slow mirror, or a slow-retrieval attack.
	ErrTooSlow = errors.New("download too slow")
	// ErrUnsafePath: the repository path could escape the mirror base
	// (absolute, "..", backslash, escapes); refused before any request.
	ErrUnsafePath = errors.New("unsafe repository path")
	// ErrServer: a mirror answered with a server error (HTTP 5xx), or
	// asked to come back later (429, 408), until the retries ran out: the
	// mirror's trouble, not the repository's (see StatusError for the
	// code).
	ErrServer = errors.New("server error")
)

// Downloader defaults, applied by validate to zero fields.
const (
	DefaultRetries      = 4
	DefaultBackoffMin   = 200 * time.Millisecond
	DefaultBackoffMax   = 10 * time.Second
	DefaultStallTimeout = 30 * time.Second
	// DefaultMinRate and DefaultMinRateWindow: the rate floor (see
	// Downloader.MinRate).
	DefaultMinRate       = 256 // bytes per second
	DefaultMinRateWindow = 60 * time.Second
)

// Suffixes of the files Fetch keeps beside dest while downloading.
const (
	PartSuffix    = ".part"      // the bytes received so far
	SidecarSuffix = ".part.json" // what they are: see fetchSidecar
)

// Downloader fetches documents and artifacts from a repository served by one
// or more mirrors. Its zero value is not usable: set Mirrors. It is safe for
// concurrent use once its fields are no longer changed.
type Downloader struct {
	// Client makes the requests; nil means http.DefaultClient. Its own
	// Timeout, if any, also bounds each attempt.
	Client *http.Client
	// Mirrors are base URLs (http or https) of identical copies of the
	// repository, tried in order: a path p is fetched from mirror + "/" + p.
	Mirrors []string
	// Retries is how many times a failed attempt is retried on one mirror
	// before moving to the next (0 means DefaultRetries, negative means no
	// retry). Network errors, 5xx, 408, 429, stalls and short bodies are
	// retried; 404, 410 and 403 move to the next mirror at once.
	Retries int
	// BackoffMin and BackoffMax bound the wait before a retry: exponential
	// from BackoffMin, capped at BackoffMax, with full jitter. A server's
	// Retry-After is honoured up to BackoffMax. Defaults DefaultBackoffMin
	// and DefaultBackoffMax.
	BackoffMin, BackoffMax time.Duration
	// StallTimeout aborts an attempt when no byte (or no response header)
	// arrives for this long; default DefaultStallTimeout.
	StallTimeout time.Duration
	// MinRate is a floor, in bytes per second averaged over each
	// MinRateWindow, under which an attempt is aborted like a stall (the
	// part is kept, the attempt retried, then the next mirror tried): it
	// stops a mirror that trickles bytes just fast enough never to stall
	// from holding the update forever (a slow-retrieval attack). 0 means
	// DefaultMinRate, negative disables it; with RateLimit set the floor is
	// at most RateLimit/4. MinRateWindow 0 means DefaultMinRateWindow.
	//
	// The floor also bounds each mirror's whole share of one Get or Fetch,
	// retries, restarts from zero and back-off included: the bytes still
	// needed (Get: its max) at MinRate, plus MinRateWindow and StallTimeout.
	// A mirror that has not finished by then is left with ErrTooSlow and the
	// next one tried, resuming the part. So one mirror holds a Fetch of n
	// bytes at most n/MinRate + MinRateWindow + 2*StallTimeout (the last
	// read may take a StallTimeout).
	MinRate       int64
	MinRateWindow time.Duration
	// Deadline bounds the whole of one Get or Fetch call, all mirrors and
	// retries included; 0 means none.
	Deadline time.Duration
	// RateLimit caps the bytes per second received by all downloads of the
	// process that use the same RateLimit value (one shared token bucket);
	// 0 means no limit.
	RateLimit int64
	// Progress, if set, receives progress reports (see Progress). It is
	// called from the goroutine running Get or Fetch and must not block.
	Progress func(Progress)

	// now is the clock of the rate floor and the mirror budgets; nil means
	// time.Now (tests set a fake one).
	now func() time.Time
}

// validate checks d and returns a copy with the defaults applied.
func (d *Downloader) validate() (*Downloader, error) {
	c := *d
	if len(c.Mirrors) == 0 {
		return nil, errors.New("apply: Downloader has no mirrors")
	}
	for _, m := range c.Mirrors {
		if _, err := parseMirror(m); err != nil {
			return nil, err
		}
	}
	if c.Client == nil {
		c.Client = http.DefaultClient
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	} else if c.Retries < 0 {
		c.Retries = 0
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.MinRate == 0 {
		c.MinRate = DefaultMinRate
	}
	if c.RateLimit > 0 && c.MinRate > c.RateLimit/4 {
		c.MinRate = c.RateLimit / 4
	}
	if c.MinRateWindow <= 0 {
		c.MinRateWindow = DefaultMinRateWindow
	}
	if c.Deadline < 0 {
		c.Deadline = 0
	}
	if c.RateLimit < 0 {
		c.RateLimit = 0
	}
	return &c, nil
}

func parseMirror(m string) (*url.URL, error) {
	u, err := url.Parse(m)
	if err != nil {
		return nil, fmt.Errorf("apply: mirror %q: %v", m, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("apply: mirror %q: not an http(s) URL with a host", m)
	}
	return u, nil
}

// checkRepoPath refuses repository paths that could resolve outside the
// mirror base once a server decodes and cleans them.
func checkRepoPath(p string) ([]string, error) {
	bad := func(why string) ([]string, error) {
		return nil, fmt.Errorf("%w %q: %s (the manifest is hostile or corrupt; do not use this repository)", ErrUnsafePath, p, why)
	}
	if p == "" || len(p) > 4096 {
		return bad("empty or too long")
	}
	if strings.HasPrefix(p, "/") || (len(p) >= 2 && p[1] == ':') {
		return bad("absolute path")
	}
	if strings.ContainsRune(p, '\\') {
		return bad("backslash")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return bad("control character or invalid UTF-8")
		}
	}
	segs := strings.Split(p, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return bad("empty, '.' or '..' element")
		}
		if strings.ContainsRune(s, '%') {
			dec, err := url.PathUnescape(s)
			if err != nil || dec == "." || dec == ".." || strings.ContainsAny(dec, "/\\") || strings.ContainsRune(dec, '%') {
				return bad("percent escape")
			}
		}
	}
	return segs, nil
}

// joinURL builds mirror + "/" + p with each element of p escaped, so the
// result always stays under the mirror's base path.
func joinURL(mirror string, segs []string) (string, error) {
	base, err := parseMirror(mirror)
	if err != nil {
		return "", err
	}
	esc := make([]string, len(segs))
	for i, s := range segs {
		esc[i] = url.PathEscape(s)
	}
	raw := strings.TrimSuffix(base.EscapedPath(), "/") + "/" + strings.Join(esc, "/")
	u := *base
	u.Fragment, u.RawFragment = "", ""
	if u.Path, err = url.PathUnescape(raw); err != nil {
		return "", fmt.Errorf("apply: mirror %q: %v", mirror, err)
	}
	u.RawPath = raw
	return u.String(), nil
}

func (d *Downloader) urls(p string) ([]string, error) {
	segs, err := checkRepoPath(p)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(d.Mirrors))
	for i, m := range d.Mirrors {
		if out[i], err = joinURL(m, segs); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// attemptError classifies the failure of one attempt.
type attemptError struct {
	url        string
	err        error
	retry      bool          // worth retrying on this mirror
	retryAfter time.Duration // server-requested wait, 0 if none
	noBackoff  bool          // retry at once (restart from 0 after a bad resume)
	local      bool          // a local file-system failure: no other mirror can help
}

// Error names the URL once: an error that already names it (most do, to
// read well on their own) is not prefixed with it again.
func (e *attemptError) Error() string {
	msg := e.err.Error()
	if strings.Contains(msg, e.url) {
		return msg
	}
	return e.url + ": " + msg
}

func (e *attemptError) Unwrap() error { return e.err }

// StatusError is an HTTP status a mirror answered that is not the
// expected one. It matches ErrNotFound for 404, 410 and 403, and ErrServer
// for 5xx, 429 and 408 (errors.Is).
type StatusError struct {
	URL  string
	Code int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d %s", e.URL, e.Code, http.StatusText(e.Code))
}

func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return isNotFound(e.Code)
	case ErrServer:
		return isServerError(e.Code)
	}
	return false
}

func isNotFound(status int) bool {
	return status == http.StatusNotFound || status == http.StatusGone || status == http.StatusForbidden
}

// isServerError: the statuses that are worth retrying later.
func isServerError(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

func classifyStatus(u string, resp *http.Response, max time.Duration) *attemptError {
	st := resp.StatusCode
	e := &attemptError{url: u, err: &StatusError{URL: u, Code: st}}
	if isServerError(st) {
		e.retry = true
		e.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), max)
	}
	return e
}

func parseRetryAfter(v string, max time.Duration) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	if d < 0 {
		d = 0
	}
	if d > max {
		d = max
	}
	return d
}

// backoff returns the wait before retry number n (0-based): full jitter
// over an exponential ceiling.
func (d *Downloader) backoff(n int) time.Duration {
	ceil := d.BackoffMin
	for i := 0; i < n && ceil < d.BackoffMax; i++ {
		ceil *= 2
	}
	if ceil > d.BackoffMax {
		ceil = d.BackoffMax
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

func sleepCtx(ctx context.Context, dur time.Duration) error {
	if dur <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stallGuard cancels an attempt's context when no progress is reported for
// the stall timeout.
type stallGuard struct {
	timer   *time.Timer
	timeout time.Duration
	stalled atomic.Bool
}

func newStallGuard(timeout time.Duration, cancel context.CancelFunc) *stallGuard {
	g := &stallGuard{timeout: timeout}
	g.timer = time.AfterFunc(timeout, func() {
		g.stalled.Store(true)
		cancel()
	})
	return g
}

func (g *stallGuard) alive() { g.timer.Reset(g.timeout) }
func (g *stallGuard) pause() { g.timer.Stop() }
func (g *stallGuard) stop()  { g.timer.Stop() }

// translate turns the error of an aborted read or request into ErrStalled or
// the caller's context error where that is the real cause.
func (g *stallGuard) translate(ctx context.Context, u string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if g.stalled.Load() {
		return fmt.Errorf("%w: nothing received from %s for %v (check the network or try another mirror)", ErrStalled, u, g.timeout)
	}
	return err
}

// mirrorsError reports the failure of every mirror. It unwraps to the most
// telling of them: ErrNotFound only if every mirror said so, ErrHashMismatch
// only if every mirror that had the file served it wrong, otherwise the last
// mirror's error that is not a 404. what says what was being done
// ("fetching manifest.json"); document marks a document (Get), of which
// nothing partial is kept.
type mirrorsError struct {
	what     string
	errs     []error
	primary  error
	document bool
}

func (e *mirrorsError) Error() string {
	var b strings.Builder
	b.WriteString(e.what)
	if len(e.errs) > 1 {
		fmt.Fprintf(&b, ": all %d mirrors failed", len(e.errs))
	}
	for i, err := range e.errs {
		if i == 0 && len(e.errs) == 1 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	kept := "; the bytes received are kept for the next run"
	if e.document {
		kept = ""
	}
	switch {
	case errors.Is(e.primary, ErrNotFound) && e.document:
		b.WriteString(" (the repository does not have this file: check the server URL)")
	case errors.Is(e.primary, ErrNotFound):
		b.WriteString(" (the repository does not have this file: check the mirror URLs or refresh the manifest)")
	case errors.Is(e.primary, ErrHashMismatch):
		b.WriteString(" (the mirrors serve corrupt or tampered data: report it to the publisher)")
	case errors.Is(e.primary, ErrServer):
		b.WriteString(" (the server reports an error: retry later" + kept + ")")
	default:
		b.WriteString(" (check the network and retry later" + kept + ")")
	}
	return b.String()
}

func (e *mirrorsError) Unwrap() error { return e.primary }

func newMirrorsError(what string, errs []error) error {
	if len(errs) == 1 {
		return &mirrorsError{what: what, errs: errs, primary: errs[0]}
	}
	var primary error
	allNotFound, allHash := true, true
	for _, err := range errs {
		nf := errors.Is(err, ErrNotFound)
		allNotFound = allNotFound && nf
		if !nf {
			allHash = allHash && errors.Is(err, ErrHashMismatch)
			primary = err // the last mirror that did not just lack the file
		}
	}
	switch {
	case allNotFound:
		primary = errs[len(errs)-1] // matches ErrNotFound, keeps its status
	case allHash:
		primary = ErrHashMismatch
	}
	return &mirrorsError{what: what, errs: errs, primary: primary}
}

func (d *Downloader) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.Deadline > 0 {
		return context.WithTimeout(ctx, d.Deadline)
	}
	return context.WithCancel(ctx)
}

func ctxError(what string, err error) error {
	return fmt.Errorf("%s: %w (stopped; run again to continue)", what, err)
}

// readBufSize is the largest single read of a response body.
const readBufSize = 32 << 10

// Get fetches a small document (manifest, signature, file list) at the
// repository path p, refusing more than max bytes whatever the server
// announces. It tries the mirrors in order with retries.
func (d *Downloader) Get(ctx context.Context, p string, max int64) ([]byte, error) {
	return d.get(ctx, p, max, nil)
}

func (d *Downloader) get(ctx context.Context, p string, max int64, cond *conditional) ([]byte, error) {
	dd, err := d.validate()
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, fmt.Errorf("apply: Get %s: max must be positive", p)
	}
	urls, err := dd.urls(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := dd.withDeadline(ctx)
	defer cancel()
	var data []byte
	err = dd.tryMirrors(ctx, "fetching "+p, urls, max, func(u string, b *mirrorBudget) *attemptError {
		var aerr *attemptError
		data, aerr = dd.getOnce(ctx, u, p, max, b, cond)
		return aerr
	}, nil)
	if me, ok := err.(*mirrorsError); ok {
		me.document = true
	}
	if err != nil {
		return nil, err
	}
	return data, nil
}

// getOnce makes one request for a document of at most max bytes from u.
func (d *Downloader) getOnce(ctx context.Context, u, p string, max int64, b *mirrorBudget, cond *conditional) ([]byte, *attemptError) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := newStallGuard(d.StallTimeout, cancel)
	defer g.stop()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &attemptError{url: u, err: err}
	}
	cond.set(req)
	resp, err := d.Client.Do(req)
	if err != nil {
		return nil, &attemptError{url: u, err: g.translate(ctx, u, err), retry: true}
	}
	defer resp.Body.Close()
	if cond.notModified(resp) {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, classifyStatus(u, resp, d.BackoffMax)
	}
	cond.record(resp)
	tooLarge := func() *attemptError {
		return &attemptError{url: u, err: fmt.Errorf("%w: %s is larger than %d bytes (the mirror serves a wrong file; try another mirror)", ErrTooLarge, u, max)}
	}
	if resp.ContentLength > max {
		return nil, tooLarge()
	}
	total := resp.ContentLength
	if total < 0 {
		total = 0
	}
	rep := newProgressReporter(d.Progress, PhaseManifest, p, total)
	lim := sharedLimiter(d.RateLimit)
	var buf bytes.Buffer
	chunk := make([]byte, lim.chunk(readBufSize))
	body := io.LimitReader(resp.Body, max+1)
	floor := d.newRateFloor(b, 0, total)
	for {
		n, rerr := body.Read(chunk)
		if n > 0 {
			g.alive()
			buf.Write(chunk[:n])
			if int64(buf.Len()) > max {
				return nil, tooLarge()
			}
			if aerr := floor.check(int64(buf.Len())); aerr != nil {
				return nil, aerr
			}
			rep.update(int64(buf.Len()))
			g.pause()
			if err := lim.wait(actx, n); err != nil {
				return nil, &attemptError{url: u, err: g.translate(ctx, u, err), retry: true}
			}
			g.alive()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, &attemptError{url: u, err: g.translate(ctx, u, rerr), retry: true}
		}
	}
	if resp.ContentLength >= 0 && int64(buf.Len()) != resp.ContentLength {
		return nil, &attemptError{url: u, err: fmt.Errorf("%s: short body: %d of %d bytes", u, buf.Len(), resp.ContentLength), retry: true}
	}
	if rep.total == 0 {
		rep.total = int64(buf.Len())
	}
	rep.done(int64(buf.Len()))
	return buf.Bytes(), nil
}

// fetchSidecar describes the bytes in a .part file, so that a later run
// resumes only the same artifact and asks the server for the same version.
type fetchSidecar struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"`
}

// fetchState is one Fetch call's view of its files.
type fetchState struct {
	d          *Downloader
	art        manifest.Artifact
	dest, part string
	side       string
	sum        string
}

// Fetch downloads art into dest, resumably: bytes go to dest+PartSuffix,
// described by dest+SidecarSuffix, and a later call (also after a process
// restart) continues from where the part ends with a Range request guarded by
// If-Range. Nothing is trusted until the whole file's SHA-256 matches
// art.SHA256; then it is synced and renamed to dest. If dest already holds
// the artifact, Fetch makes no request. On cancellation the part and its
// sidecar are kept; on a hash mismatch they are deleted. Two Fetch calls
// must not share a dest at the same time (the caller holds its lock).
func (d *Downloader) Fetch(ctx context.Context, art manifest.Artifact, dest string) error {
	dd, err := d.validate()
	if err != nil {
		return err
	}
	if art.Size <= 0 {
		return fmt.Errorf("apply: fetch %s: artifact size %d is not positive", art.Path, art.Size)
	}
	urls, err := dd.urls(art.Path)
	if err != nil {
		return err
	}
	if ok, err := fileMatches(dest, art); err != nil {
		return err
	} else if ok {
		return nil
	}
	ctx, cancel := dd.withDeadline(ctx)
	defer cancel()
	fs := &fetchState{d: dd, art: art, dest: dest, part: dest + PartSuffix, side: dest + SidecarSuffix, sum: hex.EncodeToString(art.SHA256[:])}
	what := "downloading " + art.Path
	// Each attempt sizes its mirror's budget by the bytes the part lacks.
	return dd.tryMirrors(ctx, what, urls, 0, func(u string, b *mirrorBudget) *attemptError {
		return fs.attempt(ctx, u, b)
	}, func(err error) error {
		return fmt.Errorf("%s: %w", what, localIO(err, filepath.Dir(dest)))
	})
}

// fileMatches reports whether name holds exactly art (size and SHA-256).
func fileMatches(name string, art manifest.Artifact) (bool, error) {
	fi, err := os.Stat(name)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() || fi.Size() != art.Size {
		return false, nil
	}
	sum, err := hashFile(name, nil)
	if err != nil {
		return false, err
	}
	return sum == art.SHA256, nil
}

func hashFile(name string, rep *progressReporter) ([32]byte, error) {
	var sum [32]byte
	f, err := openNoFollow(name, os.O_RDONLY, 0)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := f.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
			rep.update(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, err
		}
	}
	rep.done(n)
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// discard removes the part and its sidecar (sidecar first: a part without
// sidecar is never trusted).
func (fs *fetchState) discard() error {
	os.Remove(fs.side + ".tmp") // left by a crash while writing the sidecar
	if err := os.Remove(fs.side); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(fs.part); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// resumable returns the sidecar and part length to resume from, or nil
// after discarding a part that cannot be trusted.
func (fs *fetchState) resumable() (*fetchSidecar, int64, error) {
	// Neither file is followed if it is a link (a link planted in the
	// backup directory): such a part is discarded, the link removed.
	data, err := readFileNoFollow(fs.side, 64<<10)
	var sc fetchSidecar
	if err == nil && json.Unmarshal(data, &sc) == nil &&
		sc.Size == fs.art.Size && sc.SHA256 == fs.sum {
		if fi, err := os.Lstat(fs.part); err == nil && fi.Mode().IsRegular() && fi.Size() <= fs.art.Size {
			return &sc, fi.Size(), nil
		}
	}
	return nil, 0, fs.discard()
}

func (fs *fetchState) writeSidecar(sc *fetchSidecar) error {
	data, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	tmp := fs.side + ".tmp"
	f, err := openNoFollow(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, fs.side); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ifRangeValidator picks the If-Range value: a strong ETag, else the
// Last-Modified date.
func ifRangeValidator(sc *fetchSidecar) string {
	if sc.ETag != "" && !strings.HasPrefix(sc.ETag, "W/") {
		return sc.ETag
	}
	return sc.LastModified
}

// parseContentRange parses "bytes first-last/total".
func parseContentRange(v string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(a, 10, 64)
	last, err2 = strconv.ParseInt(b, 10, 64)
	total, err3 = strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || total <= last {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// attempt makes one request for the artifact from u, within the mirror's
// budget b, and, if the file is then complete, verifies and installs it.
func (fs *fetchState) attempt(ctx context.Context, u string, b *mirrorBudget) *attemptError {
	d, art := fs.d, fs.art
	fail := func(err error, retry bool) *attemptError { return &attemptError{url: u, err: err, retry: retry} }
	local := func(err error) *attemptError { return &attemptError{url: u, err: err, local: true} }
	sc, have, err := fs.resumable()
	if err != nil {
		return local(err)
	}
	resumed := have > 0
	if have == art.Size {
		return fs.finish(u, resumed)
	}
	b.grow(art.Size - have)

	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := newStallGuard(d.StallTimeout, cancel)
	defer g.stop()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err, false)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		if v := ifRangeValidator(sc); v != "" && sc.URL == u {
			req.Header.Set("If-Range", v)
		}
	}
	resp, err := d.Client.Do(req)
	if err != nil {
		return fail(g.translate(ctx, u, err), true)
	}
	defer resp.Body.Close()

	restart := func(why string) *attemptError {
		if err := fs.discard(); err != nil {
			return local(err)
		}
		return &attemptError{url: u, err: fmt.Errorf("%s: %s; restarting from the beginning", u, why), retry: true, noBackoff: true}
	}
	tooLarge := func(what string) *attemptError {
		return fail(fmt.Errorf("%w: %s %s, but the artifact is %d bytes (the mirror serves a different file; try another mirror)", ErrTooLarge, u, what, art.Size), false)
	}
	var start int64
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if have == 0 {
			return fail(fmt.Errorf("%s: 206 to a request without Range", u), true)
		}
		first, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || first != have || total != art.Size {
			return restart(fmt.Sprintf("unexpected Content-Range %q for a resume at %d of %d", resp.Header.Get("Content-Range"), have, art.Size))
		}
		start = have
	case http.StatusOK:
		start = 0
	case http.StatusRequestedRangeNotSatisfiable:
		return restart("416 Range Not Satisfiable for the kept part")
	default:
		return classifyStatus(u, resp, d.BackoffMax)
	}
	b.grow(art.Size - start) // a restart from zero: the whole size, once
	if resp.ContentLength > art.Size-start {
		if start > 0 {
			return restart(fmt.Sprintf("Content-Length %d exceeds the %d bytes left", resp.ContentLength, art.Size-start))
		}
		return tooLarge(fmt.Sprintf("announces Content-Length %d", resp.ContentLength))
	}

	// Record what the bytes will be before writing any of them.
	newSC := &fetchSidecar{URL: u, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), Size: art.Size, SHA256: fs.sum}
	if start == 0 {
		if err := fs.discard(); err != nil {
			return local(err)
		}
		resumed = false
	}
	if err := fs.writeSidecar(newSC); err != nil {
		return local(fmt.Errorf("writing %s: %w", fs.side, err))
	}
	f, err := openNoFollow(fs.part, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return local(err)
	}
	defer f.Close()
	if start == 0 {
		err = f.Truncate(0)
	}
	if err == nil {
		_, err = f.Seek(start, io.SeekStart)
	}
	if err != nil {
		return local(err)
	}

	rep := newProgressReporter(d.Progress, PhaseDownload, art.Path, art.Size)
	lim := sharedLimiter(d.RateLimit)
	buf := make([]byte, lim.chunk(readBufSize))
	pos := start
	rep.update(pos)
	body := io.LimitReader(resp.Body, art.Size-start+1)
	floor := d.newRateFloor(b, start, art.Size)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			g.alive()
			if pos+int64(n) > art.Size {
				f.Close()
				if err := fs.discard(); err != nil {
					return local(err)
				}
				return tooLarge("sent more data than that")
			}
			if _, err := f.Write(buf[:n]); err != nil {
				return local(fmt.Errorf("writing %s after %d of %d bytes: %w", fs.part, pos, art.Size, err))
			}
			pos += int64(n)
			rep.update(pos)
			if aerr := floor.check(pos); aerr != nil {
				return aerr
			}
			g.pause()
			if err := lim.wait(actx, n); err != nil {
				return fail(g.translate(ctx, u, err), true)
			}
			g.alive()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fail(fmt.Errorf("%s: after %d of %d bytes: %w", u, pos, art.Size, g.translate(ctx, u, rerr)), true)
		}
	}
	g.stop()
	rep.done(pos)
	if err := f.Close(); err != nil {
		return local(fmt.Errorf("writing %s: %w", fs.part, err))
	}
	if pos < art.Size {
		return fail(fmt.Errorf("%s: body ended after %d of %d bytes; resuming", u, pos, art.Size), true)
	}
	return fs.finish(u, resumed)
}

// finish verifies the complete part and installs it as dest. resumed tells
// whether some of its bytes came from an earlier request: a mismatch then
// is retried from scratch on the same mirror, otherwise the mirror is given up.
func (fs *fetchState) finish(u string, resumed bool) *attemptError {
	rep := newProgressReporter(fs.d.Progress, PhaseVerify, fs.art.Path, fs.art.Size)
	sum, err := hashFile(fs.part, rep)
	if err != nil {
		return &attemptError{url: u, err: err, local: true}
	}
	if sum != fs.art.SHA256 {
		if err := fs.discard(); err != nil {
			return &attemptError{url: u, err: err, local: true}
		}
		return &attemptError{url: u, retry: resumed, noBackoff: resumed, err: fmt.Errorf(
			"%w: %s: got sha256 %x, manifest says %s (the mirror serves corrupt or tampered data)", ErrHashMismatch, u, sum, fs.sum)}
	}
	if err := syncFile(fs.part); err != nil {
		return &attemptError{url: u, err: err, local: true}
	}
	if err := os.Rename(fs.part, fs.dest); err != nil {
		return &attemptError{url: u, err: fmt.Errorf("installing %s: %w", fs.dest, err), local: true}
	}
	if err := os.Remove(fs.side); err != nil && !errors.Is(err, os.ErrNotExist) {
		return &attemptError{url: u, err: err, local: true}
	}
	syncDir(filepath.Dir(fs.dest))
	return nil
}

func syncFile(name string) error {
	f, err := openNoFollow(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes a rename durable; best effort (Windows cannot sync
// directories, and NTFS journals renames itself).
func syncDir(dir string) {
	if runtime.GOOS == "windows" {
		return
	}
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}
