package apply

// An in-process repository server for apply tests: serves files from memory
// with ETag and Last-Modified, honours Range and If-Range (http.ServeContent),
// records every request and injects faults per path. Usable by any test of
// package apply:
//
//	srv := newRepoServer(t, map[string][]byte{"a/b.bin": data})
//	srv.setFault("a/b.bin", repoFault{DropAfter: 1000, Times: 1}, repoFault{Status: 500, Times: 2})
//	... fetch from srv.URL ...
//	reqs := srv.requests("a/b.bin")

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoFault describes misbehaviour for one path. Zero fields do nothing.
type repoFault struct {
	// Times is how many requests the fault applies to; 0 means all.
	Times int

	Status     int    // answer this status with no body (e.g. 500, 429, 404)
	RetryAfter string // Retry-After header sent with Status

	DropAfter  int64         // close the connection after this many body bytes (> 0)
	StallAfter int64         // after this many body bytes (>= 0 with StallFor) ...
	StallFor   time.Duration // ... sleep this long, or until the client goes away

	FlipByte    bool  // serve the file with one byte changed (same length)
	IgnoreRange bool  // always answer 200 with the whole file
	Always416   bool  // answer 416 to any request with a Range header
	ChangeETag  bool  // new ETag and Last-Modified on every request (file "changed")
	LieLength   int64 // declare Content-Length len+LieLength (whole body, 200)
	Extra       int64 // no Content-Length; send the file then Extra more bytes (-1: endlessly)
	NoLength    bool  // no Content-Length (chunked); send the file as is

	DripAfter int64         // after this many body bytes (with Drip) ...
	Drip      time.Duration // ... send one byte every Drip (never stalling)
}

// repoRequest is one recorded request.
type repoRequest struct {
	Method, Path   string // Path without the leading "/"
	Range, IfRange string
	Status         int
	Sent           int64 // body bytes written by the handler
}

type repoServer struct {
	*httptest.Server
	t testing.TB

	mu      sync.Mutex
	files   map[string][]byte
	faults  map[string][]*repoFault // per path, a queue: the head applies
	gen     map[string]int          // ETag generation per path (ChangeETag)
	reqs    []*repoRequest
	modTime time.Time
	active  int // handlers running
}

// newRepoServer starts a server for files (repository path → content); it
// is closed when the test ends.
func newRepoServer(t testing.TB, files map[string][]byte) *repoServer {
	t.Helper()
	s := &repoServer{
		t:       t,
		files:   map[string][]byte{},
		faults:  map[string][]*repoFault{},
		gen:     map[string]int{},
		modTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	for p, d := range files {
		s.files[p] = d
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		s.CloseClientConnections()
		s.Close()
	})
	return s
}

// setFault installs faults for path p, replacing earlier ones. They apply
// in order: the first for its Times requests, then the next, and so on (a
// fault with Times 0 applies for ever); afterwards p is served normally.
func (s *repoServer) setFault(p string, faults ...repoFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[p] = nil
	for i := range faults {
		f := faults[i]
		s.faults[p] = append(s.faults[p], &f)
	}
}

// requests returns copies of the requests recorded for p ("" for all),
// once the handlers still running have ended (a client may have read a
// whole body before the handler that wrote it counted its last write), or
// after 10 s if one does not (a stalled one).
func (s *repoServer) requests(p string) []repoRequest {
	for i := 0; i < 1000; i++ {
		s.mu.Lock()
		active := s.active
		s.mu.Unlock()
		if active == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []repoRequest
	for _, r := range s.reqs {
		if p == "" || r.Path == p {
			out = append(out, *r)
		}
	}
	return out
}

// sent returns the body bytes written for p ("" for all) so far.
func (s *repoServer) sent(p string) int64 {
	var n int64
	for _, r := range s.requests(p) {
		n += r.Sent
	}
	return n
}

// takeFault returns the fault applying to this request, consuming one use.
func (s *repoServer) takeFault(p string) repoFault {
	q := s.faults[p]
	if len(q) == 0 {
		return repoFault{}
	}
	f := q[0]
	out := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			s.faults[p] = q[1:]
		}
	}
	return out
}

func (s *repoServer) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	rec := &repoRequest{Method: r.Method, Path: p, Range: r.Header.Get("Range"), IfRange: r.Header.Get("If-Range")}
	s.mu.Lock()
	s.active++
	defer func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}()
	s.reqs = append(s.reqs, rec)
	data, ok := s.files[p]
	var f repoFault
	if ok {
		f = s.takeFault(p)
	}
	gen := s.gen[p]
	if f.ChangeETag {
		gen++
		s.gen[p] = gen
	}
	s.mu.Unlock()

	cw := &repoCountingWriter{w: w, rec: rec, srv: s, ctx: r.Context(), f: f}
	if !ok {
		cw.WriteHeader(http.StatusNotFound)
		return
	}
	if f.Status != 0 {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		cw.WriteHeader(f.Status)
		return
	}
	if f.FlipByte {
		data = bytes.Clone(data)
		data[len(data)/2] ^= 0x55
	}
	sum := sha256.Sum256(data)
	etag := fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(sum[:8]), gen)
	mod := s.modTime.Add(time.Duration(gen) * time.Hour)
	w.Header().Set("ETag", etag)
	w.Header().Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Type", "application/octet-stream")

	switch {
	case f.Always416 && r.Header.Get("Range") != "":
		w.Header().Set("Content-Range", "bytes */"+strconv.Itoa(len(data)))
		cw.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	case f.LieLength != 0:
		w.Header().Set("Content-Length", strconv.FormatInt(int64(len(data))+f.LieLength, 10))
		cw.WriteHeader(http.StatusOK)
		// net/http refuses writes past the declared length, and closes the
		// connection early when the handler writes less.
		n := min(int64(len(data)), int64(len(data))+f.LieLength)
		if _, err := cw.Write(data[:max(n, 0)]); err == nil {
			cw.Write(data[max(n, 0):])
		}
		return
	case f.Extra != 0 || f.NoLength:
		cw.WriteHeader(http.StatusOK)
		if _, err := cw.Write(data); err != nil {
			return
		}
		junk := bytes.Repeat([]byte{0xA5}, 16<<10)
		for left := f.Extra; left != 0; {
			chunk := junk
			if left > 0 && left < int64(len(chunk)) {
				chunk = chunk[:left]
			}
			if _, err := cw.Write(chunk); err != nil {
				return
			}
			if left > 0 {
				left -= int64(len(chunk))
			}
			if r.Context().Err() != nil {
				return
			}
		}
		return
	}
	if f.IgnoreRange {
		r.Header.Del("Range")
	}
	http.ServeContent(cw, r, p, mod, bytes.NewReader(data))
}

// repoCountingWriter records status and body bytes and applies the drop and
// stall faults as the body is written.
type repoCountingWriter struct {
	w       http.ResponseWriter
	rec     *repoRequest
	srv     *repoServer
	ctx     context.Context // the request's: a stall ends when the client leaves
	f       repoFault
	n       int64
	wrote   bool
	stalled bool
}

func (c *repoCountingWriter) Header() http.Header { return c.w.Header() }

func (c *repoCountingWriter) WriteHeader(status int) {
	if c.wrote {
		return
	}
	c.wrote = true
	c.srv.mu.Lock()
	c.rec.Status = status
	c.srv.mu.Unlock()
	c.w.WriteHeader(status)
}

func (c *repoCountingWriter) Write(p []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	total := 0
	for len(p) > 0 {
		chunk := p
		if c.f.Drip > 0 && c.n >= c.f.DripAfter {
			k, err := c.w.Write(p[:1])
			c.add(int64(k))
			total += k
			p = p[k:]
			if err != nil {
				return total, err
			}
			c.Flush()
			if err := c.wait(c.f.Drip); err != nil {
				return total, err
			}
			continue
		}
		if c.f.Drip > 0 {
			chunk = chunk[:min(int64(len(chunk)), c.f.DripAfter-c.n)]
		}
		if c.f.DropAfter > 0 {
			if left := c.f.DropAfter - c.n; left < int64(len(chunk)) {
				chunk = chunk[:max(left, 0)]
			}
		}
		if c.f.StallFor > 0 && !c.stalled {
			if left := c.f.StallAfter - c.n; left < int64(len(chunk)) {
				chunk = chunk[:max(left, 0)]
			}
		}
		if len(chunk) > 0 {
			k, err := c.w.Write(chunk)
			c.add(int64(k))
			total += k
			p = p[k:]
			if err != nil {
				return total, err
			}
			continue
		}
		// At a fault point.
		if f, ok := c.w.(http.Flusher); ok {
			f.Flush()
		}
		if c.f.DropAfter > 0 && c.n >= c.f.DropAfter {
			panic(http.ErrAbortHandler) // the server closes the connection
		}
		c.stalled = true
		if err := c.wait(c.f.StallFor); err != nil {
			return total, err
		}
	}
	return total, nil
}

// wait sleeps for d, or until the client goes away (then it returns the
// request context's error: send nothing more).
func (c *repoCountingWriter) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.ctx.Done():
	}
	return c.ctx.Err()
}

func (c *repoCountingWriter) add(k int64) {
	c.n += k
	c.srv.mu.Lock()
	c.rec.Sent += k
	c.srv.mu.Unlock()
}

func (c *repoCountingWriter) Flush() {
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
}

var _ io.Writer = (*repoCountingWriter)(nil)
