package manifest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// parseVersion parses a strict semantic version (semver.org 2.0.0: three
// numeric parts without leading zeros, optional -prerelease and +build, no
// "v" prefix), at most MaxVersionLen bytes, with numeric prerelease
// identifiers that fit in 64 bits (beyond that the semver library would
// compare them as text).
func parseVersion(s string) (*semver.Version, error) {
	return parseVersionAs(s, s)
}

// parseVersionAs is parseVersion naming the version shown in its errors
// (what the user wrote, before NormalizeVersion dropped a "v").
func parseVersionAs(s, shown string) (*semver.Version, error) {
	if len(s) > MaxVersionLen {
		return nil, fmt.Errorf("version %q is longer than %d bytes", shown, MaxVersionLen)
	}
	v, err := semver.StrictNewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("version %q is not a strict semantic version like 1.2.3 or 1.2.3-rc.1: %v", shown, err)
	}
	for _, id := range strings.Split(v.Prerelease(), ".") {
		if id != "" && strings.Trim(id, "0123456789") == "" {
			if _, err := strconv.ParseUint(id, 10, 64); err != nil {
				return nil, fmt.Errorf("version %q: numeric prerelease identifier %s does not fit in 64 bits", shown, id)
			}
		}
	}
	return v, nil
}

// NormalizeVersion reads a version as a person or a tag writes it: one
// leading "v" or "V" (git tags like v1.2.3) is dropped, and the rest must
// be a strict semantic version (see Compare). It returns the version as
// manifests record it, without the prefix: "v1.2.3-rc.1" gives
// "1.2.3-rc.1". Anything else is refused as by Compare ("1.2", "v01.2.3",
// "vv1.2.3", " 1.2.3").
func NormalizeVersion(s string) (string, error) {
	t := s
	if len(t) > 1 && (t[0] == 'v' || t[0] == 'V') && t[1] >= '0' && t[1] <= '9' {
		t = t[1:]
	}
	if _, err := parseVersionAs(t, s); err != nil {
		return "", err
	}
	return t, nil
}

// versionKey identifies a version up to semver equality (build metadata
// dropped).
func versionKey(v *semver.Version) string {
	k := fmt.Sprintf("%d.%d.%d", v.Major(), v.Minor(), v.Patch())
	if p := v.Prerelease(); p != "" {
		k += "-" + p
	}
	return k
}

// Compare orders two strict semantic versions by semver precedence: -1 if
// a < b, 0 if equal (build metadata is ignored), +1 if a > b. Prereleases
// sort below their release (1.0.0-rc.1 < 1.0.0) and numeric parts compare
// as numbers (1.10.0 > 1.9.0, rc.10 > rc.9). It fails if either string is
// not a strict semantic version.
func Compare(a, b string) (int, error) {
	va, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

// Sorted returns pointers to the releases of channel, in ascending version
// order; channel "" means every channel. Releases whose version does not
// parse (only possible in a Manifest that fails Validate) come first, by
// string. Cost: n log n version comparisons.
func (m *Manifest) Sorted(channel string) []*Release {
	type rv struct {
		r *Release
		v *semver.Version
	}
	var rs []rv
	for i := range m.Releases {
		r := &m.Releases[i]
		if channel != "" && r.Channel != channel {
			continue
		}
		v, _ := parseVersion(r.Version)
		rs = append(rs, rv{r, v})
	}
	slices.SortStableFunc(rs, func(a, b rv) int {
		switch {
		case a.v == nil && b.v == nil:
			return strings.Compare(a.r.Version, b.r.Version)
		case a.v == nil:
			return -1
		case b.v == nil:
			return 1
		}
		return a.v.Compare(b.v)
	})
	out := make([]*Release, len(rs))
	for i, x := range rs {
		out[i] = x.r
	}
	return out
}

// Latest returns the highest version of channel, prereleases included (a
// channel that should not offer prereleases must not list any). It fails
// with ErrNotFound if the channel is not declared or has no release.
func (m *Manifest) Latest(channel string) (*Release, error) {
	if !slices.Contains(m.Channels, channel) {
		return nil, fmt.Errorf("%w: channel %q is not declared (channels: %s)", ErrNotFound, channel, strings.Join(m.Channels, ", "))
	}
	rs := m.Sorted(channel)
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: channel %q has no release", ErrNotFound, channel)
	}
	return rs[len(rs)-1], nil
}

// Release returns the release whose version equals version by semver
// precedence (build metadata is ignored; Validate makes the match unique).
// It fails with ErrNotFound.
func (m *Manifest) Release(version string) (*Release, error) {
	v, err := parseVersion(version)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	for i := range m.Releases {
		if w, err := parseVersion(m.Releases[i].Version); err == nil && w.Compare(v) == 0 {
			return &m.Releases[i], nil
		}
	}
	return nil, fmt.Errorf("%w: version %s is not in the manifest", ErrNotFound, version)
}

// PatchFrom returns r's patch from version from, matched by semver
// precedence like Release, if any.
func (r *Release) PatchFrom(from string) (*Patch, bool) {
	v, err := parseVersion(from)
	if err != nil {
		return nil, false
	}
	for i := range r.Patches {
		if w, err := parseVersion(r.Patches[i].From); err == nil && w.Compare(v) == 0 {
			return &r.Patches[i], true
		}
	}
	return nil, false
}
