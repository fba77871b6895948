package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/testtmp"
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

// demoBuilds keeps the app's binaries between the demo runs of this test
// binary (Options.BuildCache), so the app is built once.
var demoBuilds = sync.OnceValue(func() string {
	d, err := os.MkdirTemp("", "deltaup-demo-builds-")
	if err != nil {
		panic(err)
	}
	return d
})

func TestMain(m *testing.M) {
	code := testtmp.Wrap(m).Run()
	if d := demoBuilds(); d != "" {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// TestDemo runs the demo as `go run ./cmd/demo` does, then with each way
// it shows a route other than the patch chain: --show-repair (one
// installed file edited: its frame of the installed release's archive is
// fetched, then the patch applies) and --show-fallback (the server damages
// the patch: the full archive is used).
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go app 3 times and publishes it (about 10 s): skipped with -short")
	}
	// The default run has 3 versions, as `go run ./cmd/demo`; the other
	// two routes need only 2 (a publish less each).
	patch, patch2 := "patches/demoapp-1.0.0-to-1.2.0.dupb", "patches/demoapp-1.0.0-to-1.1.0.dupb"
	cases := []struct {
		name                string
		versions            int
		repair, fallback    bool
		planned             []string
		inOutput, notOutput []string
	}{
		{"patch", 3, false, false, []string{patch}, []string{"via patches;"}, []string{"fallback", "--show-repair"}},
		{"show-repair", 2, true, false, []string{"archives/demoapp-1.0.0.tar.zst", patch2}, []string{"--show-repair: modified", "via repair;", "bytes=0-"}, []string{"fallback"}},
		{"show-fallback", 2, false, true, []string{patch2, "archives/demoapp-1.1.0.tar.zst"}, []string{"--show-fallback: the server sends", "via archive (fallback: ", "do not match the manifest's SHA-256"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var out syncBuffer
			res, err := Run(ctx, Options{Rate: 50_000_000, Versions: c.versions, ShowRepair: c.repair, ShowFallback: c.fallback,
				Timeout: 60 * time.Second, Out: &out, BuildCache: demoBuilds()})
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
			if !slices.Equal(res.Planned, c.planned) {
				t.Errorf("planned %v, want %v", res.Planned, c.planned)
			}
			if !slices.Equal(res.Fetched, res.Planned) {
				t.Errorf("fetched %v, planned %v", res.Fetched, res.Planned)
			}
			if !c.fallback && res.Bytes*10 > res.FullBytes {
				t.Errorf("downloaded %d bytes, more than a tenth of the full archive (%d)", res.Bytes, res.FullBytes)
			}
			last := fmt.Sprintf("app 1.%d.0: ", c.versions-1)
			for _, s := range append([]string{"app 1.0.0: Hello", last, "confirmed", "PASS"}, c.inOutput...) {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q", s)
				}
			}
			for _, s := range c.notOutput {
				if strings.Contains(out.String(), s) {
					t.Errorf("output has %q", s)
				}
			}
		})
	}
}
