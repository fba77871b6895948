package apply

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/manifest"
)

// TestFetchErrorMessages: a failed fetch of a document or an artifact
// names each mirror's URL exactly once, says what was being fetched once,
// promises a kept partial download only for artifacts, and classes the
// failure (ErrNotFound for 404, ErrServer and a *StatusError with the code
// for 5xx).
func TestFetchErrorMessages(t *testing.T) {
	const art = "patches/a.bin"
	data := dlTestData(4096, 7)
	tests := []struct {
		name     string
		status   int
		mirrors  int
		artifact bool // Fetch an artifact, else FetchManifest
		is       error
		status1  string   // the status line, once per mirror
		want     []string // substrings, each exactly once
		not      []string
	}{
		{name: "manifest 404", status: 404, mirrors: 1, is: ErrNotFound,
			status1: "HTTP 404 Not Found", want: []string{"apply: fetching manifest.json: ", "check the server URL"},
			not: []string{"get manifest.json", "kept", "mirror(s)", "refresh the manifest"}},
		{name: "manifest 404 on two mirrors", status: 404, mirrors: 2, is: ErrNotFound,
			status1: "HTTP 404 Not Found", want: []string{"fetching manifest.json: all 2 mirrors failed; "},
			not: []string{"kept"}},
		{name: "manifest 503", status: 503, mirrors: 1, is: ErrServer,
			status1: "HTTP 503 Service Unavailable", want: []string{"the server reports an error: retry later)"},
			not: []string{"kept", "check the network"}},
		{name: "artifact 404", status: 404, mirrors: 1, artifact: true, is: ErrNotFound,
			status1: "HTTP 404 Not Found", want: []string{"downloading " + art + ": ", "refresh the manifest"}},
		{name: "artifact 500", status: 500, mirrors: 2, artifact: true, is: ErrServer,
			status1: "HTTP 500 Internal Server Error", want: []string{"downloading " + art + ": all 2 mirrors failed; ", "the bytes received are kept for the next run"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var urls []string
			for range tc.mirrors {
				s := newRepoServer(t, map[string][]byte{art: data, manifest.ManifestName: []byte("{}")})
				for _, p := range []string{art, manifest.ManifestName} {
					s.setFault(p, repoFault{Status: tc.status})
				}
				urls = append(urls, s.URL)
			}
			d := dlTestDownloader(urls...)
			d.Retries = -1
			var err error
			if tc.artifact {
				err = d.Fetch(context.Background(), dlTestArtifact(art, data), t.TempDir()+"/a.bin")
			} else {
				// fetchManifestFrom: FetchManifest would try the mirrors
				// one by one and report the first one's error.
				_, err = fetchManifestFrom(context.Background(), &Config{App: "demo"}, d, nil)
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Log(msg)
			if !errors.Is(err, tc.is) {
				t.Errorf("error does not match %v", tc.is)
			}
			for _, u := range urls {
				p := manifest.ManifestName
				if tc.artifact {
					p = art
				}
				if n := strings.Count(msg, u+"/"+p); n != 1 {
					t.Errorf("URL %s/%s is named %d times, want once", u, p, n)
				}
			}
			if n := strings.Count(msg, tc.status1); n != tc.mirrors {
				t.Errorf("%q appears %d times, want %d", tc.status1, n, tc.mirrors)
			}
			for _, w := range tc.want {
				if n := strings.Count(msg, w); n != 1 {
					t.Errorf("%q appears %d times, want once", w, n)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(msg, w) {
					t.Errorf("message says %q", w)
				}
			}
			if se, ok := errors.AsType[*StatusError](err); !ok || se.Code != tc.status {
				t.Errorf("StatusError: %+v %v, want code %d", se, ok, tc.status)
			}
		})
	}
}
