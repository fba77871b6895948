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
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

func dlTestData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func dlTestArtifact(p string, data []byte) manifest.Artifact {
	return manifest.Artifact{Path: p, Size: int64(len(data)), SHA256: sha256.Sum256(data)}
}

// dlTestDownloader has tiny backoffs and a short stall timeout so fault
// tests run fast; the stall timeout stays long enough (1 s) that a loaded
// machine does not pause a healthy transfer into a stall.
func dlTestDownloader(mirrors ...string) *Downloader {
	return &Downloader{
		Mirrors:      mirrors,
		Retries:      3,
		BackoffMin:   time.Millisecond,
		BackoffMax:   5 * time.Millisecond,
		StallTimeout: time.Second,
	}
}

func dlExists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// rangeStart parses "bytes=N-".
func rangeStart(t *testing.T, h string) int64 {
	t.Helper()
	v, ok := strings.CutPrefix(h, "bytes=")
	if !ok || !strings.HasSuffix(v, "-") {
		t.Fatalf("Range header %q, want bytes=N-", h)
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(v, "-"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func statuses(reqs []repoRequest) []int {
	var out []int
	for _, r := range reqs {
		out = append(out, r.Status)
	}
	return out
}

func TestFetchFaults(t *testing.T) {
	const path = "archives/app-1.1.tar.zst"
	const size = 300_000
	data := dlTestData(size, 1)
	art := dlTestArtifact(path, data)

	type mirror struct {
		missing bool
		faults  []repoFault
	}
	tests := []struct {
		name    string
		mirrors []mirror
		retries int
		wantErr error
		maxTime time.Duration
		check   func(t *testing.T, srvs []*repoServer)
	}{
		{
			name:    "plain",
			mirrors: []mirror{{}},
			check: func(t *testing.T, s []*repoServer) {
				reqs := s[0].requests(path)
				if len(reqs) != 1 || reqs[0].Range != "" || reqs[0].Status != 200 || reqs[0].Sent != size {
					t.Fatalf("requests %+v", reqs)
				}
			},
		},
		{
			name:    "dropped connection resumes at drop point",
			mirrors: []mirror{{faults: []repoFault{{DropAfter: 100_000, Times: 1}}}},
			check: func(t *testing.T, s []*repoServer) {
				reqs := s[0].requests(path)
				if len(reqs) != 2 {
					t.Fatalf("requests %+v", reqs)
				}
				if n := rangeStart(t, reqs[1].Range); n <= 0 || n > 100_000 {
					t.Fatalf("resumed at %d, dropped at 100000", n)
				}
				if reqs[1].IfRange == "" || reqs[1].Status != 206 {
					t.Fatalf("resume request %+v", reqs[1])
				}
				if sent := s[0].sent(path); sent > size+readBufSize {
					t.Fatalf("served %d bytes for a %d-byte file", sent, size)
				}
			},
		},
		{
			name:    "range ignored restarts from zero",
			mirrors: []mirror{{faults: []repoFault{{DropAfter: 100_000, Times: 1}, {IgnoreRange: true}}}},
			check: func(t *testing.T, s []*repoServer) {
				reqs := s[0].requests(path)
				if len(reqs) != 2 || reqs[1].Range == "" || reqs[1].Status != 200 || reqs[1].Sent != size {
					t.Fatalf("requests %+v", reqs)
				}
			},
		},
		{
			name:    "etag changed gives full body",
			mirrors: []mirror{{faults: []repoFault{{DropAfter: 100_000, ChangeETag: true, Times: 1}, {ChangeETag: true}}}},
			check: func(t *testing.T, s []*repoServer) {
				reqs := s[0].requests(path)
				if len(reqs) != 2 || reqs[1].Range == "" || reqs[1].IfRange == "" || reqs[1].Status != 200 {
					t.Fatalf("requests %+v", reqs)
				}
			},
		},
		{
			name:    "416 discards the part",
			mirrors: []mirror{{faults: []repoFault{{DropAfter: 100_000, Times: 1}, {Always416: true, Times: 1}}}},
			check: func(t *testing.T, s []*repoServer) {
				reqs := s[0].requests(path)
				if got := statuses(reqs); len(got) != 3 || got[1] != 416 || got[2] != 200 || reqs[2].Range != "" {
					t.Fatalf("requests %+v", reqs)
				}
			},
		},
		{
			name:    "wrong bytes then next mirror",
			mirrors: []mirror{{faults: []repoFault{{FlipByte: true}}}, {}},
			check: func(t *testing.T, s []*repoServer) {
				if n := len(s[0].requests(path)); n != 1 {
					t.Fatalf("bad mirror got %d requests, want 1 (one full bad download, then the next mirror)", n)
				}
				if n := len(s[1].requests(path)); n != 1 {
					t.Fatalf("good mirror got %d requests", n)
				}
			},
		},
		{
			name:    "all mirrors serve wrong bytes",
			mirrors: []mirror{{faults: []repoFault{{FlipByte: true}}}, {faults: []repoFault{{FlipByte: true}}}},
			wantErr: ErrHashMismatch,
		},
		{
			name:    "5xx and 429 burst then success",
			mirrors: []mirror{{faults: []repoFault{{Status: 503, Times: 2}, {Status: 429, RetryAfter: "3600", Times: 1}}}},
			maxTime: 20 * time.Second, // Retry-After 1 h is capped at BackoffMax
			check: func(t *testing.T, s []*repoServer) {
				if got := statuses(s[0].requests(path)); len(got) != 4 || got[3] != 200 {
					t.Fatalf("statuses %v", got)
				}
			},
		},
		{
			name:    "5xx forever exhausts retries",
			mirrors: []mirror{{faults: []repoFault{{Status: 500}}}},
			retries: 2,
			wantErr: errors.New("HTTP 500"),
			check: func(t *testing.T, s []*repoServer) {
				if n := len(s[0].requests(path)); n != 3 {
					t.Fatalf("%d requests, want 3", n)
				}
			},
		},
		{
			name:    "stall then resume",
			mirrors: []mirror{{faults: []repoFault{{StallAfter: 50_000, StallFor: 60 * time.Second, Times: 1}}}},
			maxTime: 30 * time.Second,
			check: func(t *testing.T, s []*repoServer) {
				reqs := s[0].requests(path)
				if len(reqs) != 2 {
					t.Fatalf("requests %+v", reqs)
				}
				if n := rangeStart(t, reqs[1].Range); n <= 0 || n > 50_000 || reqs[1].IfRange == "" {
					t.Fatalf("resumed at %d, If-Range %q (want a resume of the kept part, guarded)", n, reqs[1].IfRange)
				}
			},
		},
		{
			name:    "stall forever",
			mirrors: []mirror{{faults: []repoFault{{StallAfter: 50_000, StallFor: 60 * time.Second}}}},
			retries: 1,
			wantErr: ErrStalled,
			maxTime: 30 * time.Second,
		},
		{
			name:    "endless data",
			mirrors: []mirror{{faults: []repoFault{{Extra: -1}}}},
			wantErr: ErrTooLarge,
			maxTime: 30 * time.Second,
			check: func(t *testing.T, s []*repoServer) {
				if n := len(s[0].requests(path)); n != 1 {
					t.Fatalf("%d requests: too large must not be retried on that mirror", n)
				}
				if sent := s[0].sent(path); sent > size+16<<20 {
					t.Fatalf("server could push %d bytes", sent)
				}
			},
		},
		{
			name:    "a few bytes more than the size",
			mirrors: []mirror{{faults: []repoFault{{Extra: 10}}}},
			wantErr: ErrTooLarge,
		},
		{
			name:    "Content-Length smaller than the body",
			mirrors: []mirror{{faults: []repoFault{{LieLength: -1000, Times: 1}}}},
			check: func(t *testing.T, s []*repoServer) {
				reqs := s[0].requests(path)
				if len(reqs) != 2 || rangeStart(t, reqs[1].Range) != size-1000 {
					t.Fatalf("requests %+v", reqs)
				}
			},
		},
		{
			name:    "Content-Length larger than the body",
			mirrors: []mirror{{faults: []repoFault{{LieLength: 1000}}}, {}},
			check: func(t *testing.T, s []*repoServer) {
				if n := len(s[0].requests(path)); n != 1 {
					t.Fatalf("lying mirror got %d requests", n)
				}
			},
		},
		{
			name:    "Content-Length larger than the body, one mirror",
			mirrors: []mirror{{faults: []repoFault{{LieLength: 1000}}}},
			wantErr: ErrTooLarge,
		},
		{
			name:    "404 then next mirror",
			mirrors: []mirror{{missing: true}, {}},
			check: func(t *testing.T, s []*repoServer) {
				if n := len(s[0].requests(path)); n != 1 {
					t.Fatalf("404 mirror got %d requests, want 1 (no retry)", n)
				}
			},
		},
		{
			name:    "404 everywhere",
			mirrors: []mirror{{missing: true}, {missing: true}},
			wantErr: ErrNotFound,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srvs []*repoServer
			var urls []string
			for _, m := range tc.mirrors {
				files := map[string][]byte{path: data}
				if m.missing {
					files = nil
				}
				s := newRepoServer(t, files)
				s.setFault(path, m.faults...)
				srvs = append(srvs, s)
				urls = append(urls, s.URL)
			}
			d := dlTestDownloader(urls...)
			if tc.retries != 0 {
				d.Retries = tc.retries
			}
			dest := filepath.Join(t.TempDir(), "app.tar.zst")
			start := time.Now()
			err := d.Fetch(context.Background(), art, dest)
			el := time.Since(start)
			if tc.maxTime > 0 && el > tc.maxTime {
				t.Errorf("took %v, want at most %v", el, tc.maxTime)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(dest)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("dest wrong (%v)", err)
				}
				if dlExists(t, dest+PartSuffix) || dlExists(t, dest+SidecarSuffix) {
					t.Fatal("part or sidecar left after success")
				}
			} else {
				if err == nil {
					t.Fatal("no error")
				}
				if errors.Is(tc.wantErr, ErrHashMismatch) || errors.Is(tc.wantErr, ErrNotFound) ||
					errors.Is(tc.wantErr, ErrTooLarge) || errors.Is(tc.wantErr, ErrStalled) {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("error %v, want %v", err, tc.wantErr)
					}
				} else if !strings.Contains(err.Error(), tc.wantErr.Error()) {
					t.Fatalf("error %v, want mention of %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), srvs[len(srvs)-1].URL) {
					t.Errorf("error %q does not name the URL", err)
				}
				if dlExists(t, dest) {
					t.Fatal("dest created despite failure")
				}
				if errors.Is(err, ErrHashMismatch) || errors.Is(err, ErrTooLarge) {
					if dlExists(t, dest+PartSuffix) || dlExists(t, dest+SidecarSuffix) {
						t.Fatal("part or sidecar left after bad data")
					}
				}
				if fi, err := os.Stat(dest + PartSuffix); err == nil && fi.Size() > size {
					t.Fatalf("part holds %d bytes > size %d", fi.Size(), size)
				}
			}
			if tc.check != nil {
				tc.check(t, srvs)
			}
		})
	}
}

func TestFetchResumeAcrossCalls(t *testing.T) {
	const path = "patches/1.0-1.1.dupb"
	const size = 400_000
	data := dlTestData(size, 2)
	art := dlTestArtifact(path, data)
	s := newRepoServer(t, map[string][]byte{path: data})
	s.setFault(path, repoFault{StallAfter: 150_000, StallFor: 10 * time.Second, Times: 1})
	d := dlTestDownloader(s.URL)
	d.StallTimeout = 10 * time.Second
	dest := filepath.Join(t.TempDir(), "p.dupb")

	ctx, cancel := context.WithCancel(context.Background())
	go func() { // cancel once the part holds the bytes sent before the stall
		for ctx.Err() == nil {
			if fi, err := os.Stat(dest + PartSuffix); err == nil && fi.Size() >= 150_000 {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	err := d.Fetch(ctx, art, dest)
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first Fetch: %v, want context.Canceled", err)
	}
	fi, err := os.Stat(dest + PartSuffix)
	if err != nil || fi.Size() != 150_000 {
		t.Fatalf("part after cancel: %v %v", fi, err)
	}
	raw, err := os.ReadFile(dest + SidecarSuffix)
	if err != nil {
		t.Fatal(err)
	}
	var sc fetchSidecar
	if err := json.Unmarshal(raw, &sc); err != nil || sc.SHA256 != hex.EncodeToString(art.SHA256[:]) || sc.Size != size || sc.ETag == "" || sc.LastModified == "" {
		t.Fatalf("sidecar %s (%v)", raw, err)
	}

	if err := d.Fetch(context.Background(), art, dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("dest wrong")
	}
	reqs := s.requests(path)
	if len(reqs) != 2 || reqs[1].Range != "bytes=150000-" || reqs[1].IfRange != sc.ETag || reqs[1].Status != 206 {
		t.Fatalf("requests %+v", reqs)
	}
	if sent := s.sent(path); sent != size {
		t.Fatalf("served %d bytes in total, want %d", sent, size)
	}
	// A third call finds dest complete and makes no request.
	if err := d.Fetch(context.Background(), art, dest); err != nil {
		t.Fatal(err)
	}
	if n := len(s.requests("")); n != 2 {
		t.Fatalf("%d requests after dest was complete", n)
	}
}

func TestFetchUntrustedPart(t *testing.T) {
	const path = "a.bin"
	data := dlTestData(100_000, 3)
	art := dlTestArtifact(path, data)
	other := dlTestArtifact(path, dlTestData(100_000, 4))
	tests := []struct {
		name    string
		sidecar any // nil: none
		part    []byte
		// wantRanges lists the Range header of each request.
		wantRanges []string
	}{
		{"no sidecar", nil, data[:5000], []string{""}},
		{"sidecar of another artifact", fetchSidecar{Size: other.Size, SHA256: hex.EncodeToString(other.SHA256[:])}, data[:5000], []string{""}},
		{"garbage sidecar", "{not json", data[:5000], []string{""}},
		{"part longer than artifact", fetchSidecar{Size: art.Size, SHA256: hex.EncodeToString(art.SHA256[:])}, append(bytes.Clone(data), 1), []string{""}},
		// Matching sidecar but corrupt bytes: resumed, mismatch, from scratch.
		{"corrupt resumed part", fetchSidecar{Size: art.Size, SHA256: hex.EncodeToString(art.SHA256[:])}, make([]byte, 5000), []string{"bytes=5000-", ""}},
		// Complete part from a run that stopped before the rename: no request.
		{"complete part", fetchSidecar{Size: art.Size, SHA256: hex.EncodeToString(art.SHA256[:])}, data, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newRepoServer(t, map[string][]byte{path: data})
			dest := filepath.Join(t.TempDir(), "a.bin")
			if err := os.WriteFile(dest+PartSuffix, tc.part, 0o644); err != nil {
				t.Fatal(err)
			}
			switch sc := tc.sidecar.(type) {
			case string:
				os.WriteFile(dest+SidecarSuffix, []byte(sc), 0o644)
			case fetchSidecar:
				raw, _ := json.Marshal(sc)
				os.WriteFile(dest+SidecarSuffix, raw, 0o644)
			}
			if err := dlTestDownloader(s.URL).Fetch(context.Background(), art, dest); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
				t.Fatal("dest wrong")
			}
			var ranges []string
			for _, r := range s.requests(path) {
				ranges = append(ranges, r.Range)
			}
			if strings.Join(ranges, "|") != strings.Join(tc.wantRanges, "|") || len(ranges) != len(tc.wantRanges) {
				t.Fatalf("ranges %q, want %q", ranges, tc.wantRanges)
			}
		})
	}
}

func TestFetchDeadline(t *testing.T) {
	data := dlTestData(100_000, 5)
	s := newRepoServer(t, map[string][]byte{"x": data})
	s.setFault("x", repoFault{StallAfter: 10_000, StallFor: 10 * time.Second})
	d := dlTestDownloader(s.URL)
	d.StallTimeout = 10 * time.Second
	d.Deadline = 200 * time.Millisecond
	dest := filepath.Join(t.TempDir(), "x")
	start := time.Now()
	err := d.Fetch(context.Background(), dlTestArtifact("x", data), dest)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 30*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	if !dlExists(t, dest+PartSuffix) || !dlExists(t, dest+SidecarSuffix) {
		t.Fatal("part and sidecar must be kept after a deadline")
	}
}

func TestFetchGetPathTraversal(t *testing.T) {
	s := newRepoServer(t, map[string][]byte{"x": []byte("x")})
	d := dlTestDownloader(s.URL + "/repo")
	for _, p := range []string{
		"../x", "a/../../x", "%2e%2e/x", "%2E%2e/x", "a/%2e%2e/%2e%2e/x", "a%2f..%2fx", "%5c..", "/abs", "//host/x",
		`a\b`, `..\x`, "C:/x", "a//b", "./x", "a/.", "", "a\x00b", "a\nb",
	} {
		art := manifest.Artifact{Path: p, Size: 1, SHA256: sha256.Sum256([]byte("x"))}
		if err := d.Fetch(context.Background(), art, filepath.Join(t.TempDir(), "o")); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Fetch(%q): %v, want ErrUnsafePath", p, err)
		}
		if _, err := d.Get(context.Background(), p, 100); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Get(%q): %v, want ErrUnsafePath", p, err)
		}
	}
	if n := len(s.requests("")); n != 0 {
		t.Fatalf("%d requests made for unsafe paths", n)
	}
}

func TestDownloadJoinURL(t *testing.T) {
	for _, tc := range []struct{ mirror, path, want string }{
		{"https://h/repo", "a/b.bin", "https://h/repo/a/b.bin"},
		{"https://h/repo/", "a b/c#d?.bin", "https://h/repo/a%20b/c%23d%3F.bin"},
		{"http://h", "manifest.json", "http://h/manifest.json"},
		{"http://h/r%20x/", "f", "http://h/r%20x/f"},
		{"http://h/s3?sig=1", "f", "http://h/s3/f?sig=1"},
	} {
		segs, err := checkRepoPath(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := joinURL(tc.mirror, segs)
		if err != nil || got != tc.want {
			t.Errorf("joinURL(%q, %q) = %q, %v; want %q", tc.mirror, tc.path, got, err, tc.want)
		}
	}
}

func TestDownloaderValidate(t *testing.T) {
	d, err := (&Downloader{Mirrors: []string{"https://example.org/r"}}).validate()
	if err != nil {
		t.Fatal(err)
	}
	if d.Retries != DefaultRetries || d.BackoffMin != DefaultBackoffMin || d.BackoffMax != DefaultBackoffMax ||
		d.StallTimeout != DefaultStallTimeout || d.Client == nil {
		t.Fatalf("defaults not applied: %+v", d)
	}
	for _, m := range [][]string{nil, {"ftp://x/"}, {"relative/path"}, {"http://"}} {
		if _, err := (&Downloader{Mirrors: m}).validate(); err == nil {
			t.Errorf("mirrors %q accepted", m)
		}
	}
	if d, _ := (&Downloader{Mirrors: []string{"http://h"}, Retries: -1}).validate(); d.Retries != 0 {
		t.Errorf("Retries -1 gave %d", d.Retries)
	}
}

func TestGet(t *testing.T) {
	doc := []byte(strings.Repeat("manifest ", 1000)) // 9000 bytes
	const p = "manifest.json"
	type mirror = dlMirror // paced on the fake clock; the rate floor is 1000 B/s over 200 ms
	tests := []struct {
		name    string
		mirrors []mirror
		max     int64
		wantErr error
		wantReq []int // requests per mirror
	}{
		{"plain", []mirror{{}}, 10000, nil, []int{1}},
		{"exact cap", []mirror{{}}, int64(len(doc)), nil, []int{1}},
		{"cap with Content-Length", []mirror{{}}, 5000, ErrTooLarge, []int{1}},
		{"cap without Content-Length", []mirror{{faults: []repoFault{{NoLength: true}}}}, 5000, ErrTooLarge, []int{1}},
		{"no Content-Length within cap", []mirror{{faults: []repoFault{{NoLength: true}}}}, 10000, nil, []int{1}},
		{"endless without Content-Length", []mirror{{faults: []repoFault{{Extra: -1}}}}, 10000, ErrTooLarge, []int{1}},
		{"Content-Length larger than body", []mirror{{faults: []repoFault{{LieLength: 100, Times: 1}}}}, 10000, nil, []int{2}},
		{"404 then next mirror", []mirror{{missing: true}, {}}, 10000, nil, []int{1, 1}},
		{"404 everywhere", []mirror{{missing: true}, {missing: true}}, 10000, ErrNotFound, []int{1, 1}},
		{"403 then next mirror", []mirror{{faults: []repoFault{{Status: 403}}}, {}}, 10000, nil, []int{1, 1}},
		{"500 burst", []mirror{{faults: []repoFault{{Status: 500, Times: 2}}}}, 10000, nil, []int{3}},
		{"500 forever then next mirror", []mirror{{faults: []repoFault{{Status: 502}}}, {}}, 10000, nil, []int{4, 1}},
		{"drop then retry", []mirror{{faults: []repoFault{{DropAfter: 100, Times: 1}}}}, 10000, nil, []int{2}},
		// A manifest trickled at 25 B/s (never a stall): the rate floor
		// ends each attempt, then the next mirror serves it.
		{"trickle then next mirror", []mirror{{pace: &dlPace{Fast: 10, Rate: 25, Step: 1}}, {}}, 10000, nil, []int{4, 1}},
		{"trickle everywhere", []mirror{{pace: &dlPace{Fast: 10, Rate: 25, Step: 1}}}, 10000, ErrTooSlow, []int{4}},
		// Above the floor (1100 B/s) but cut 1000 bytes short every time,
		// each retry starting from zero: the mirror's budget (the 10000-byte
		// cap at the floor + window + stall timeout = 11.2 s) ends it during
		// the second attempt instead of after four.
		{"above the floor, cut short every time: budget then next mirror", []mirror{{faults: []repoFault{{DropAfter: 8000}}, pace: &dlPace{Rate: 1100, Step: 100}}, {}}, 10000, nil, []int{2, 1}},
		{"above the floor, cut short every time, one mirror", []mirror{{faults: []repoFault{{DropAfter: 8000}}, pace: &dlPace{Rate: 1100, Step: 100}}}, 10000, ErrTooSlow, []int{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, srvs := newDLPacedTransport().startMirrors(t, p, doc, tc.mirrors)
			d.MinRate, d.MinRateWindow = 1000, 200*time.Millisecond
			got, err := d.Get(context.Background(), p, tc.max)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
			} else if err != nil || !bytes.Equal(got, doc) {
				t.Fatalf("got %d bytes, %v", len(got), err)
			}
			for i, s := range srvs {
				if n := len(s.requests(p)); n != tc.wantReq[i] {
					t.Errorf("mirror %d: %d requests, want %d", i, n, tc.wantReq[i])
				}
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	data := dlTestData(200_000, 6)
	s := newRepoServer(t, map[string][]byte{"r": data})
	d := dlTestDownloader(s.URL)
	d.RateLimit = 100_000 // only this test uses this rate, so its bucket is its own
	var mu sync.Mutex
	var events []Progress
	d.Progress = func(p Progress) {
		mu.Lock()
		events = append(events, p)
		mu.Unlock()
	}
	start := time.Now()
	if err := d.Fetch(context.Background(), dlTestArtifact("r", data), filepath.Join(t.TempDir(), "r")); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if el < 1500*time.Millisecond || el > 30*time.Second { // the upper bound is a safety net
		t.Fatalf("200 KB at 100 KB/s took %v", el)
	}
	var downloads int
	var lastRate float64
	for _, e := range events {
		if e.Phase == PhaseDownload {
			downloads++
			lastRate = e.Rate
		}
	}
	// About ten reports a second, plus the final one.
	if max := int(el.Seconds()*10) + 3; downloads > max || downloads < 5 {
		t.Fatalf("%d download reports in %v", downloads, el)
	}
	if lastRate < 10_000 || lastRate > 200_000 { // a loaded machine may read slower, never faster
		t.Fatalf("smoothed rate %v, want at most about 100000", lastRate)
	}
}

func TestRateLimiterContext(t *testing.T) {
	l := newRateLimiter(1000)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.wait(ctx, 100_000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait: %v", err)
	}
	if time.Since(start) > 20*time.Second { // 100 s without the context
		t.Fatal("wait ignored the context")
	}
	var nilL *rateLimiter
	if err := nilL.wait(context.Background(), 1<<30); err != nil {
		t.Fatal(err)
	}
}

func TestProgress(t *testing.T) {
	data := dlTestData(500_000, 7)
	s := newRepoServer(t, map[string][]byte{"p": data, "m": data[:2000]})
	s.setFault("p", repoFault{DropAfter: 200_000, Times: 1}) // a resume keeps Bytes monotonic
	d := dlTestDownloader(s.URL)
	var events []Progress
	d.Progress = func(p Progress) { events = append(events, p) }
	if err := d.Fetch(context.Background(), dlTestArtifact("p", data), filepath.Join(t.TempDir(), "p")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(context.Background(), "m", 1<<20); err != nil {
		t.Fatal(err)
	}
	last := map[string]Progress{}
	for _, e := range events {
		if prev, ok := last[e.Phase]; ok && e.Bytes < prev.Bytes {
			t.Fatalf("%s went back: %d after %d", e.Phase, e.Bytes, prev.Bytes)
		}
		if e.Total > 0 && e.Bytes > e.Total || e.Rate < 0 || e.ETA < 0 {
			t.Fatalf("bad report %+v", e)
		}
		last[e.Phase] = e
	}
	for phase, total := range map[string]int64{PhaseDownload: 500_000, PhaseVerify: 500_000, PhaseManifest: 2000} {
		e, ok := last[phase]
		if !ok || e.Bytes != total || e.Total != total {
			t.Errorf("final %s report %+v, want Bytes == Total == %d", phase, e, total)
		}
	}
	if events[len(events)-1].Path != "m" || events[0].Path != "p" {
		t.Errorf("paths: first %q, last %q", events[0].Path, events[len(events)-1].Path)
	}
}

func TestDownloadRetryAfterAndBackoff(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"3", 3 * time.Second}, {"100", 10 * time.Second}, {"-1", 0}, {"soon", 0},
		{time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0},
		{time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), 10 * time.Second},
	} {
		if got := parseRetryAfter(tc.v, 10*time.Second); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
	d, _ := (&Downloader{Mirrors: []string{"http://h"}, BackoffMin: 10 * time.Millisecond, BackoffMax: 80 * time.Millisecond}).validate()
	for n := 0; n < 10; n++ {
		ceil := min(10*time.Millisecond<<n, 80*time.Millisecond)
		for i := 0; i < 50; i++ {
			if b := d.backoff(n); b < 0 || b > ceil {
				t.Fatalf("backoff(%d) = %v, ceiling %v", n, b, ceil)
			}
		}
	}
}

func TestFetchRetryAfterHonoured(t *testing.T) {
	data := dlTestData(1000, 8)
	s := newRepoServer(t, map[string][]byte{"x": data})
	s.setFault("x", repoFault{Status: 503, RetryAfter: "3600", Times: 1})
	d := dlTestDownloader(s.URL)
	d.BackoffMax = 300 * time.Millisecond // caps the server's hour
	start := time.Now()
	if err := d.Fetch(context.Background(), dlTestArtifact("x", data), filepath.Join(t.TempDir(), "x")); err != nil {
		t.Fatal(err)
	}
	// At least the capped wait; the upper bound is a safety net far below the hour.
	if el := time.Since(start); el < 250*time.Millisecond || el > 30*time.Second {
		t.Fatalf("took %v, want about BackoffMax (300ms)", el)
	}
}

func TestRateLimitShared(t *testing.T) {
	// Two Downloaders with the same RateLimit share one process-wide bucket.
	a, b := dlTestData(150_000, 9), dlTestData(150_000, 10)
	s := newRepoServer(t, map[string][]byte{"a": a, "b": b})
	dir := t.TempDir()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, data := range [][]byte{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := dlTestDownloader(s.URL)
			d.RateLimit = 150_000 // only this test uses this rate
			p := []string{"a", "b"}[i]
			errs[i] = d.Fetch(context.Background(), dlTestArtifact(p, data), filepath.Join(dir, p))
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if el := time.Since(start); el < 1500*time.Millisecond || el > 30*time.Second { // upper bound: a safety net
		t.Fatalf("300 KB at a shared 150 KB/s took %v", el)
	}
}

// TestFetchLocalError: a failure to write locally (here the sidecar's
// temporary name is taken by a directory, or the part file's) is not the
// mirror's fault: Fetch stops at once with ErrLocalIO-class advice instead
// of retrying or trying the next mirror, and says what to fix.
func TestFetchLocalError(t *testing.T) {
	const path = "a.bin"
	data := dlTestData(50_000, 5)
	art := dlTestArtifact(path, data)
	for _, blocked := range []string{SidecarSuffix + ".tmp", PartSuffix} {
		t.Run(blocked, func(t *testing.T) {
			s1 := newRepoServer(t, map[string][]byte{path: data})
			s2 := newRepoServer(t, map[string][]byte{path: data})
			dest := filepath.Join(t.TempDir(), "a.bin")
			if err := os.MkdirAll(filepath.Join(dest+blocked, "x"), 0o755); err != nil {
				t.Fatal(err)
			}
			d := dlTestDownloader(s1.URL, s2.URL)
			err := d.Fetch(context.Background(), art, dest)
			if err == nil {
				t.Fatal("Fetch succeeded through a blocked local path")
			}
			if strings.Contains(err.Error(), "mirrors failed") || strings.Contains(err.Error(), "check the network") {
				t.Errorf("a local failure is reported as a mirror failure: %v", err)
			}
			if n1, n2 := len(s1.requests(path)), len(s2.requests(path)); n1 > 1 || n2 != 0 {
				t.Errorf("requests: first mirror %d, second %d; want at most 1 and 0", n1, n2)
			}
			if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dest exists after a failed Fetch: %v", err)
			}
		})
	}
}

// dlFakeClock is a Downloader clock that moves only when a paced body is
// read (see dlPacedTransport): rate floors and mirror budgets are then judged
// on the bytes a mirror delivers, not on how a loaded machine schedules the
// test.
type dlFakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *dlFakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *dlFakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// dlPace slows one mirror's responses on the fake clock. Each request first
// costs Latency; then the first Fast body bytes of each response take no
// time and every later byte 1/Rate s, read at most Step bytes at a time. It
// applies to the mirror's first Responses responses (0: all).
type dlPace struct {
	Latency   time.Duration
	Fast      int64
	Rate      float64
	Step      int
	Responses int
}

// dlPacedTransport is an http.RoundTripper that paces the bodies of chosen
// mirrors on its fake clock and records the body bytes the client read from
// each response.
type dlPacedTransport struct {
	clk  *dlFakeClock
	mu   sync.Mutex
	pace map[string]dlPace   // by host
	read map[string][]*int64 // by host, per response in order
}

func newDLPacedTransport() *dlPacedTransport {
	return &dlPacedTransport{
		clk:  &dlFakeClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		pace: map[string]dlPace{},
		read: map[string][]*int64{},
	}
}

func (tr *dlPacedTransport) setPace(mirror string, p dlPace) {
	tr.pace[strings.TrimPrefix(mirror, "http://")] = p
}

// use makes d request through tr and read tr's clock.
func (tr *dlPacedTransport) use(d *Downloader) {
	d.Client = &http.Client{Transport: tr}
	d.now = tr.clk.now
}

// dlMirror describes a test mirror serving one file.
type dlMirror struct {
	missing bool // the file is not there (404)
	faults  []repoFault
	pace    *dlPace // read at this pace on tr's fake clock
}

// startMirrors starts a repoServer per mirror, serving data at path, and
// returns a dlTestDownloader for them that requests through tr.
func (tr *dlPacedTransport) startMirrors(t *testing.T, path string, data []byte, ms []dlMirror) (*Downloader, []*repoServer) {
	var srvs []*repoServer
	var urls []string
	for _, m := range ms {
		files := map[string][]byte{path: data}
		if m.missing {
			files = nil
		}
		s := newRepoServer(t, files)
		s.setFault(path, m.faults...)
		if m.pace != nil {
			tr.setPace(s.URL, *m.pace)
		}
		srvs = append(srvs, s)
		urls = append(urls, s.URL)
	}
	d := dlTestDownloader(urls...)
	tr.use(d)
	return d, srvs
}

// bodyBytes returns the body bytes the client read from each response of
// mirror, in order.
func (tr *dlPacedTransport) bodyBytes(mirror string) []int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []int64
	for _, n := range tr.read[strings.TrimPrefix(mirror, "http://")] {
		out = append(out, *n)
	}
	return out
}

func (tr *dlPacedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	tr.mu.Lock()
	p, paced := tr.pace[host]
	paced = paced && (p.Responses == 0 || len(tr.read[host]) < p.Responses)
	n := new(int64)
	tr.read[host] = append(tr.read[host], n)
	tr.mu.Unlock()
	if paced {
		tr.clk.advance(p.Latency)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &dlPacedBody{ReadCloser: resp.Body, tr: tr, n: n, pace: p, paced: paced}
	return resp, nil
}

type dlPacedBody struct {
	io.ReadCloser
	tr    *dlPacedTransport
	n     *int64
	pace  dlPace
	paced bool
	off   int64
}

func (b *dlPacedBody) Read(p []byte) (int, error) {
	slow := b.paced && b.off >= b.pace.Fast
	switch {
	case slow && len(p) > b.pace.Step:
		p = p[:b.pace.Step]
	case b.paced && !slow && int64(len(p)) > b.pace.Fast-b.off:
		p = p[:b.pace.Fast-b.off]
	}
	k, err := b.ReadCloser.Read(p)
	if slow && k > 0 {
		b.tr.clk.advance(time.Duration(float64(k) / b.pace.Rate * float64(time.Second)))
	}
	b.off += int64(k)
	b.tr.mu.Lock()
	*b.n += int64(k)
	b.tr.mu.Unlock()
	return k, err
}

func dlSum(ns []int64) int64 {
	var s int64
	for _, n := range ns {
		s += n
	}
	return s
}

// TestFetchSlowMirror: slow-retrieval attacks, judged on a fake clock that
// only the slow mirror's bytes move (the outcome does not depend on the
// machine's load). The floor is 100 B/s over 10 s windows with a 10 s stall
// timeout, so a mirror's budget for the 30000-byte artifact is 300 s + 20 s.
func TestFetchSlowMirror(t *testing.T) {
	const path = "archives/app-1.2.tar.zst"
	const size = 30_000
	const window = 10 * time.Second
	const budget = 320 * time.Second
	data := dlTestData(size, 12)
	art := dlTestArtifact(path, data)

	type mirror = dlMirror
	// check gets the servers and, per mirror, the body bytes the client
	// read from each response.
	type checkFn func(t *testing.T, s []*repoServer, read [][]int64)
	// resumedAt checks that request i of reqs resumed at want with a Range
	// guarded by If-Range.
	resumedAt := func(t *testing.T, who string, r repoRequest, want int64) {
		t.Helper()
		if r.Range != fmt.Sprintf("bytes=%d-", want) {
			t.Errorf("%s: Range %q, want a resume at the %d bytes kept", who, r.Range, want)
		}
	}
	// nextMirrorResumes checks that the good mirror (1) was asked once,
	// for exactly the bytes the slow mirror (0) had not delivered.
	nextMirrorResumes := func(t *testing.T, s []*repoServer, read [][]int64, kept int64) {
		t.Helper()
		r1 := s[1].requests(path)
		if len(r1) != 1 {
			t.Fatalf("good mirror: %d requests, want 1", len(r1))
		}
		resumedAt(t, "good mirror", r1[0], kept)
		if kept == 0 || r1[0].Sent != size-kept {
			t.Errorf("good mirror served %d bytes after the slow one delivered %d: want exactly the %d missing", r1[0].Sent, kept, size-kept)
		}
	}
	tests := []struct {
		name    string
		mirrors []mirror
		retries int
		wantErr error
		maxFake time.Duration // fake time the Fetch may take at most
		check   checkFn
	}{
		{
			// Each response: a 2000-byte burst, then 1 B/s. The burst carries
			// the first window; the second ends the attempt; the retry resumes
			// the part, and then the next mirror does.
			name:    "trickle under the rate floor then next mirror",
			mirrors: []mirror{{pace: &dlPace{Fast: 2000, Rate: 1, Step: 1}}, {}},
			retries: 1,
			maxFake: 2*2*window + 2*time.Second,
			check: func(t *testing.T, s []*repoServer, read [][]int64) {
				r0 := s[0].requests(path)
				if len(r0) != 2 {
					t.Fatalf("slow mirror: %d requests, want 2", len(r0))
				}
				resumedAt(t, "slow mirror's retry", r0[1], read[0][0])
				if r0[1].IfRange == "" || r0[1].Status != http.StatusPartialContent {
					t.Errorf("slow mirror's retry: If-Range %q, status %d; want a guarded 206", r0[1].IfRange, r0[1].Status)
				}
				nextMirrorResumes(t, s, read, dlSum(read[0]))
			},
		},
		{
			name:    "trickle on every mirror",
			mirrors: []mirror{{pace: &dlPace{Fast: 1000, Rate: 1, Step: 1}}},
			retries: -1,
			wantErr: ErrTooSlow,
			maxFake: 2*window + time.Second,
		},
		{
			// A 25000-byte burst is worth 250 s at the floor, but it carries
			// only the window it arrived in: the next window at 1 B/s ends
			// the attempt (an average since the start would last 250 s).
			name:    "burst then trickle is cut window after window",
			mirrors: []mirror{{pace: &dlPace{Fast: 25_000, Rate: 1, Step: 1}}},
			retries: -1,
			wantErr: ErrTooSlow,
			maxFake: 2*window + time.Second,
			check: func(t *testing.T, s []*repoServer, read [][]int64) {
				if n := dlSum(read[0]); n > 25_000+25 {
					t.Errorf("read %d bytes: the trickle went on after the burst", n)
				}
			},
		},
		{
			// Each response: 500 bytes, then 1 B/s: every attempt ends at its
			// first window with ~510 bytes (51 B/s on average, under the
			// floor). Retries alone (1000) would let it finish the file; the
			// budget leaves it after 320 s, every retry having resumed the
			// part, and the next mirror resumes it too.
			name:    "too slow on average: budget spent, next mirror resumes",
			mirrors: []mirror{{pace: &dlPace{Fast: 500, Rate: 1, Step: 1}}, {}},
			retries: 1000,
			maxFake: budget + time.Second,
			check: func(t *testing.T, s []*repoServer, read [][]int64) {
				r0 := s[0].requests(path)
				if len(r0) < 2 || len(r0) > int(budget/window)+1 {
					t.Fatalf("slow mirror: %d requests, want 2..%d (its budget over %v windows)", len(r0), int(budget/window)+1, window)
				}
				for i := 1; i < len(r0); i++ {
					resumedAt(t, fmt.Sprintf("slow mirror's request %d", i), r0[i], dlSum(read[0][:i]))
				}
				nextMirrorResumes(t, s, read, dlSum(read[0]))
			},
		},
		{
			// 120 B/s, above the floor, but the connection drops 1000 bytes
			// short and Range is ignored, so each retry starts from zero
			// (241 s each). The budget ends the second attempt at 320 s; the
			// next mirror resumes what that attempt received.
			name:    "restart from zero each time above the floor: budget then next mirror",
			mirrors: []mirror{{faults: []repoFault{{IgnoreRange: true, DropAfter: size - 1000}}, pace: &dlPace{Rate: 120, Step: 60}}, {}},
			retries: 3,
			maxFake: budget + time.Second,
			check: func(t *testing.T, s []*repoServer, read [][]int64) {
				r0 := s[0].requests(path)
				if len(r0) != 2 || r0[1].Status != http.StatusOK {
					t.Fatalf("slow mirror: requests %+v, want 2 (the second restarting from zero), not 4", r0)
				}
				nextMirrorResumes(t, s, read, read[0][1])
			},
		},
		{
			name:    "restart from zero each time, one mirror",
			mirrors: []mirror{{faults: []repoFault{{IgnoreRange: true, DropAfter: size - 1000}}, pace: &dlPace{Rate: 120, Step: 60}}},
			retries: 3,
			wantErr: ErrTooSlow,
			maxFake: budget + time.Second,
		},
		{
			// A mirror answering 503 after 10 s, for ever: without a budget
			// 1001 requests (2.8 h); with it, 32.
			name:    "slow 5xx forever: budget",
			mirrors: []mirror{{faults: []repoFault{{Status: 503}}, pace: &dlPace{Latency: window}}},
			retries: 1000,
			wantErr: ErrTooSlow,
			maxFake: budget + window,
			check: func(t *testing.T, s []*repoServer, read [][]int64) {
				if n := len(s[0].requests(path)); n != int(budget/window) {
					t.Errorf("%d requests, want %d", n, int(budget/window))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newDLPacedTransport()
			d, srvs := tr.startMirrors(t, path, data, tc.mirrors)
			urls := d.Mirrors
			d.Retries = tc.retries
			d.MinRate, d.MinRateWindow, d.StallTimeout = 100, window, 10*time.Second
			dest := filepath.Join(t.TempDir(), "app.tar.zst")
			start := tr.clk.now()
			err := d.Fetch(context.Background(), art, dest)
			if el := tr.clk.now().Sub(start); el > tc.maxFake {
				t.Errorf("took %v on the fake clock, want at most %v", el, tc.maxFake)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("dest wrong (%v)", err)
				}
			} else {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), srvs[0].URL) || dlExists(t, dest) {
					t.Fatalf("error %q does not name the mirror, or dest exists", err)
				}
			}
			var read [][]int64
			for _, u := range urls {
				read = append(read, tr.bodyBytes(u))
			}
			if err != nil && dlSum(read[0]) > 0 {
				if fi, err := os.Stat(dest + PartSuffix); err != nil || fi.Size() == 0 || fi.Size() > size {
					t.Errorf("part after a slow mirror: %v %v, want the bytes received kept", fi, err)
				}
			}
			if tc.check != nil {
				tc.check(t, srvs, read)
			}
		})
	}
}

// TestDownloadBudget: a mirror's time budget is the bytes needed at the
// floor plus the slack, without overflow; with the defaults a 10 MiB
// artifact gets 40960 s + 90 s from each mirror.
func TestDownloadBudget(t *testing.T) {
	for _, tc := range []struct {
		need, rate int64
		slack      time.Duration
		want       time.Duration
	}{
		{10 << 20, DefaultMinRate, DefaultMinRateWindow + DefaultStallTimeout, 41050 * time.Second},
		{4<<20 + 1, DefaultMinRate, 0, 16384*time.Second + time.Second/256},
		{1000, 300, 0, 3333333333},
		{0, 100, 2 * time.Second, 2 * time.Second},
		{-5, 100, 2 * time.Second, 2 * time.Second},
		{1 << 62, 1, time.Second, maxDuration},
		{math.MaxInt64, math.MaxInt64, 0, time.Second},
		{100, 0, 0, maxDuration},
		{100, 1, maxDuration, maxDuration},
	} {
		if got := budgetFor(tc.need, tc.rate, tc.slack); got != tc.want {
			t.Errorf("budgetFor(%d, %d, %v) = %v, want %v", tc.need, tc.rate, tc.slack, got, tc.want)
		}
	}
	d, err := (&Downloader{Mirrors: []string{"http://h"}}).validate()
	if err != nil {
		t.Fatal(err)
	}
	if b := d.newMirrorBudget("http://h/a", 10<<20); b.allowed != 41050*time.Second {
		t.Errorf("default budget for 10 MiB: %v, want 41050s", b.allowed)
	}
	d.MinRate = -1
	if b := d.newMirrorBudget("http://h/a", 10<<20); b.spent() != nil || b.left() != maxDuration {
		t.Error("a disabled rate floor still bounds the mirror")
	}
}

// TestRateFloor drives one attempt's checks on a fake clock: a burst carries
// only its own window, a complete transfer is never cut, a window under the
// floor is retried on the mirror, a spent budget is not.
func TestRateFloor(t *testing.T) {
	type step struct {
		after time.Duration // fake time since the previous step
		pos   int64         // bytes held
	}
	tests := []struct {
		name      string
		want      int64 // complete size (0: unknown)
		steps     []step
		wantErr   int  // index of the step that fails (-1: none)
		wantRetry bool // the failure is retried on the same mirror
	}{
		{"steady at the floor", 0, []step{{10 * time.Second, 1000}, {10 * time.Second, 2000}, {10 * time.Second, 3000}}, -1, false},
		{"nothing counted inside a window", 0, []step{{9 * time.Second, 1}}, -1, false},
		{"burst then trickle", 0, []step{{0, 50_000}, {10 * time.Second, 50_000}, {10 * time.Second, 50_010}}, 2, true},
		{"trickle", 0, []step{{10 * time.Second, 10}}, 0, true},
		{"complete after a pause", 5000, []step{{0, 10}, {100 * time.Second, 5000}}, -1, false},
		{"budget spent while above the floor", 0, []step{{60 * time.Second, 6000}, {50 * time.Second, 11_000}, {15 * time.Second, 12_500}}, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newDLPacedTransport()
			d := &Downloader{MinRate: 100, MinRateWindow: 10 * time.Second, StallTimeout: 10 * time.Second, now: tr.clk.now}
			// budget: 10000 bytes at 100 B/s + 20 s = 120 s
			f := d.newRateFloor(d.newMirrorBudget("http://m/a", 10_000), 0, tc.want)
			failed := -1
			for i, s := range tc.steps {
				tr.clk.advance(s.after)
				if aerr := f.check(s.pos); aerr != nil {
					if !errors.Is(aerr, ErrTooSlow) || aerr.retry != tc.wantRetry || aerr.url != "http://m/a" {
						t.Fatalf("step %d: %v (retry %v), want ErrTooSlow, retry %v", i, aerr, aerr.retry, tc.wantRetry)
					}
					failed = i
					break
				}
			}
			if failed != tc.wantErr {
				t.Fatalf("failed at step %d, want %d", failed, tc.wantErr)
			}
		})
	}
}
