package manifest

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// Platforms in one repository (docs/FORMAT.md, "Platforms in one
// repository"). A platform's releases live in a sub-repository PLATFORM/
// laid out exactly as a repository (its own manifest.json, manifests/,
// archives/, patches/, filelists/, deltas/), so that a client of any
// version can be pointed at REPO/PLATFORM/ as a repository of its own. The
// root and the timestamp stay at the top and are shared: the timestamp's
// "platforms" member names each platform's current index.
const (
	// MaxPlatforms caps the platforms of one repository.
	MaxPlatforms = 64
	// MaxPlatformLen caps a platform name.
	MaxPlatformLen = 32
)

// ValidPlatform reports whether s is a platform name: OS-ARCH, each part
// 1+ of [a-z0-9] ("linux-amd64", "windows-arm64", "darwin-arm64"), at
// most MaxPlatformLen bytes. No name of a repository's own files and
// directories has that form, so a platform's directory never collides
// with them.
func ValidPlatform(s string) bool {
	if len(s) > MaxPlatformLen {
		return false
	}
	os, arch, ok := strings.Cut(s, "-")
	return ok && lowerAlnum(os) && lowerAlnum(arch)
}

func lowerAlnum(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// PlatformPath returns the repository path of p (a path of a platform's
// sub-repository) for platform: "PLATFORM/p"; p itself for "" (the
// platform-less build).
func PlatformPath(platform, p string) string {
	if platform == "" {
		return p
	}
	return path.Join(platform, p)
}

// IsWindowsPlatform reports whether platform names a Windows build (its OS
// part is "windows"): such builds are published with portable modes.
func IsWindowsPlatform(platform string) bool { return strings.HasPrefix(platform, "windows-") }

// checkPlatforms validates a timestamp's platform references: at most
// MaxPlatforms, valid names, each reference valid.
func checkPlatforms(ps map[string]IndexRef) error {
	if len(ps) > MaxPlatforms {
		return fmt.Errorf("%w: timestamp: %d platforms, at most %d", ErrMalformed, len(ps), MaxPlatforms)
	}
	for _, p := range slices.Sorted(maps.Keys(ps)) {
		if !ValidPlatform(p) {
			return fmt.Errorf("%w: timestamp: platform %q is not a platform name (OS-ARCH, lowercase letters and digits, at most %d bytes)", ErrMalformed, p, MaxPlatformLen)
		}
		if err := ps[p].check("platform " + p + " index"); err != nil {
			return err
		}
	}
	return nil
}

// parsePlatforms converts the wire form of the "platforms" member
// (checked by Validate afterwards; the count first, before any work).
func parsePlatforms(w map[string]wireIndexRef) (map[string]IndexRef, error) {
	if len(w) == 0 {
		return nil, nil
	}
	if len(w) > MaxPlatforms {
		return nil, fmt.Errorf("%w: timestamp: %d platforms, at most %d", ErrMalformed, len(w), MaxPlatforms)
	}
	out := make(map[string]IndexRef, len(w))
	for p, r := range w {
		sum, err := parseHash("timestamp platforms."+p+".sha256", r.SHA256)
		if err != nil {
			return nil, err
		}
		out[p] = IndexRef{Sequence: r.Sequence, Size: r.Size, SHA256: sum}
	}
	return out, nil
}

// PlatformNames returns the timestamp's platforms, sorted.
func (t *Timestamp) PlatformNames() []string { return slices.Sorted(maps.Keys(t.Platforms)) }

// IndexFor returns the index reference of platform ("" for the
// platform-less index) and whether the timestamp names one.
func (t *Timestamp) IndexFor(platform string) (IndexRef, bool) {
	if platform == "" {
		return t.Index, t.Index != (IndexRef{})
	}
	ref, ok := t.Platforms[platform]
	return ref, ok
}
