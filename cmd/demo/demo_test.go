package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer collects the demo's output (server log and app output come
// from several goroutines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runDemo(t *testing.T, showFallback bool) {
	if testing.Short() {
		t.Skip("builds a Go app 3 times and publishes it (about 10 s): skipped with -short")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out syncBuffer
	res, err := Run(ctx, Options{Rate: 50_000_000, Versions: 3, ShowFallback: showFallback, Timeout: 60 * time.Second, Out: &out})
	defer func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Pass {
		t.Fatalf("demo failed")
	}
	want := []string{"patches/demoapp-1.0.0-to-1.2.0.dupb"}
	if showFallback {
		want = append(want, "archives/demoapp-1.2.0.tar.zst")
	}
	if !slices.Equal(res.Planned, want) {
		t.Errorf("planned %v, want %v", res.Planned, want)
	}
	if !slices.Equal(res.Fetched, res.Planned) {
		t.Errorf("fetched %v, planned %v", res.Fetched, res.Planned)
	}
	if !showFallback && res.Bytes*10 > res.FullBytes {
		t.Errorf("downloaded %d bytes, more than a tenth of the full archive (%d)", res.Bytes, res.FullBytes)
	}
	for _, s := range []string{"app 1.0.0: Hello", "app 1.2.0: ", "confirmed", "PASS"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

func TestDemoPatch(t *testing.T)    { runDemo(t, false) }
func TestDemoFallback(t *testing.T) { runDemo(t, true) }
