package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"
)

// bucket is a token bucket of bytes shared by every response.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate int64) *bucket {
	if rate <= 0 {
		return nil
	}
	burst := float64(rate) / 20
	if burst < 2048 {
		burst = 2048
	}
	return &bucket{rate: float64(rate), burst: burst, tokens: burst, last: time.Now()}
}

// take reserves n bytes and sleeps until they are paid for.
func (b *bucket) take(n int) {
	b.mu.Lock()
	now := time.Now()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
	b.tokens -= float64(n)
	var wait time.Duration
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	time.Sleep(wait)
}

// throttledWriter passes a response through the bucket in small chunks.
type throttledWriter struct {
	http.ResponseWriter
	b      *bucket
	status int
	n      int64
}

func (w *throttledWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *throttledWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	total := 0
	for len(p) > 0 {
		c := len(p)
		if w.b != nil && c > int(w.b.burst) {
			c = int(w.b.burst)
		}
		if w.b != nil {
			w.b.take(c)
		}
		n, err := w.ResponseWriter.Write(p[:c])
		total += n
		w.n += int64(n)
		if err != nil {
			return total, err
		}
		p = p[c:]
	}
	return total, nil
}

// Request is one logged request of the repository server.
type Request struct {
	Method, Path, Range string
	Status              int
	Bytes               int64 // body bytes sent
}

// repoServer serves a repository directory, throttled, logging requests.
type repoServer struct {
	root *os.Root
	b    *bucket
	log  io.Writer
	// damage, when set, picks the paths sent with one byte flipped (the
	// middle one), as a faulty mirror or proxy would send them.
	damage func(p string) bool

	mu   sync.Mutex
	reqs []Request
}

func (s *repoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &throttledWriter{ResponseWriter: w, b: s.b}
	p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	defer func() {
		req := Request{Method: r.Method, Path: p, Range: r.Header.Get("Range"), Status: tw.status, Bytes: tw.n}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		s.mu.Unlock()
		rg := ""
		if req.Range != "" {
			rg = " (" + req.Range + ")"
		}
		fmt.Fprintf(s.log, "  server: %s /%s%s -> %d, %d bytes\n", req.Method, req.Path, rg, req.Status, req.Bytes)
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(tw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, err := s.root.Open(p)
	if err != nil {
		http.NotFound(tw, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(tw, r)
		return
	}
	if s.damage != nil && s.damage(p) {
		b, err := io.ReadAll(io.LimitReader(f, 64<<20))
		if err != nil || len(b) == 0 {
			http.NotFound(tw, r)
			return
		}
		b[len(b)/2] ^= 0x55
		http.ServeContent(tw, r, path.Base(p), fi.ModTime(), bytes.NewReader(b))
		return
	}
	http.ServeContent(tw, r, path.Base(p), fi.ModTime(), f)
}

func (s *repoServer) requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}
