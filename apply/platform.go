package apply

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/deltaup/deltaup/manifest"
)

// Platforms in one repository (docs/FORMAT.md, "Platforms in one
// repository"): a platform's releases live in the sub-repository
// PLATFORM/ of the repository, and a v2 timestamp names each platform's
// index. The client follows its own platform (Config.Platform, else
// GOOS-GOARCH).

// ErrPlatform: the repository publishes no build for the client's
// platform. It also matches ErrConfig: set Config.Platform (`deltaup
// --platform`, "platform" in deltaup.json) to one the repository has.
var ErrPlatform = errors.New("apply: no build for this platform")

// DefaultPlatform is the platform of this program: GOOS-GOARCH
// ("linux-amd64", "windows-arm64", "darwin-arm64", …).
func DefaultPlatform() string { return runtime.GOOS + "-" + runtime.GOARCH }

// checkPlatform validates Config.Platform (Validate).
func (c *Config) checkPlatform() error {
	if c.Platform != "" && !manifest.ValidPlatform(c.Platform) {
		return fmt.Errorf("%w: platform %q is not a platform name: OS-ARCH in lowercase letters and digits (linux-amd64, windows-amd64, darwin-arm64; --platform, \"platform\" in %s)", ErrConfig, c.Platform, ConfigFileName)
	}
	return nil
}

// pickIndex chooses, from a v2 timestamp, the index this client follows:
// its platform's (Config.Platform, else DefaultPlatform) when the
// timestamp names one; else, unless Config.Platform was set explicitly,
// the platform-less index when there is one. It returns the platform
// directory ("" for the platform-less build) and the index reference, or
// ErrPlatform naming what the repository has.
func (c *Config) pickIndex(ts *manifest.Timestamp) (string, manifest.IndexRef, error) {
	p := c.Platform
	if p == "" {
		p = DefaultPlatform()
	}
	if ref, ok := ts.IndexFor(p); ok && manifest.ValidPlatform(p) {
		return p, ref, nil
	}
	if c.Platform == "" {
		if ref, ok := ts.IndexFor(""); ok {
			return "", ref, nil
		}
	}
	have := ts.PlatformNames()
	if _, ok := ts.IndexFor(""); ok {
		have = append(have, "a build for every platform (the default when --platform is not given)")
	}
	return "", manifest.IndexRef{}, fmt.Errorf("%w: %w: the repository publishes no build for platform %s; it has %s: choose one with --platform (\"platform\" in %s, Config.Platform)",
		ErrPlatform, ErrConfig, p, strings.Join(have, ", "), ConfigFileName)
}

// rebase makes the artifact paths of a platform's index (relative to its
// sub-repository) repository paths: PLATFORM/… . The manifest's bytes
// and hash are unchanged; only the paths the client fetches move.
func rebase(m *manifest.Manifest, dir string) {
	if dir == "" {
		return
	}
	for i := range m.Releases {
		r := &m.Releases[i]
		r.Archives = append([]manifest.Archive(nil), r.Archives...)
		for j := range r.Archives {
			r.Archives[j].Path = manifest.PlatformPath(dir, r.Archives[j].Path)
		}
		r.Patches = append([]manifest.Patch(nil), r.Patches...)
		for j := range r.Patches {
			r.Patches[j].Path = manifest.PlatformPath(dir, r.Patches[j].Path)
		}
		if r.FileList != nil {
			fl := *r.FileList
			fl.Path = manifest.PlatformPath(dir, fl.Path)
			r.FileList = &fl
		}
	}
}

// subFetcher reads the documents of a platform's sub-repository (v1
// client with an explicit Config.Platform).
type subFetcher struct {
	f   Fetcher
	dir string
}

func (s subFetcher) Get(ctx context.Context, p string, max int64) ([]byte, error) {
	return s.f.Get(ctx, manifest.PlatformPath(s.dir, p), max)
}

// platformText names the build an index is of, for messages.
func platformText(dir string) string {
	if dir == "" {
		return "the index"
	}
	return "the index of platform " + dir
}
