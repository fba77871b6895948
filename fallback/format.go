package fallback

import (
	"fmt"
	"strings"
)

// Format is the container of a full archive: a tar stream compressed with
// zstd or gzip.
type Format int

// Formats.
const (
	TarZst Format = iota + 1 // tar compressed with zstd, extension ".tar.zst"
	TarGz                    // tar compressed with gzip, extension ".tar.gz"
)

// String returns "tar.zst" or "tar.gz".
func (f Format) String() string {
	switch f {
	case TarZst:
		return "tar.zst"
	case TarGz:
		return "tar.gz"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Ext returns the file extension, with its dot: ".tar.zst" or ".tar.gz".
func (f Format) Ext() string {
	if f != TarZst && f != TarGz {
		return ""
	}
	return "." + f.String()
}

func (f Format) valid() error {
	if f != TarZst && f != TarGz {
		return fmt.Errorf("fallback: unknown archive format %d", int(f))
	}
	return nil
}

// ParseFormat parses a format name, case-insensitively: "tar.zst",
// ".tar.zst", "tzst" or "zstd" for TarZst; "tar.gz", ".tar.gz", "tgz" or
// "gzip" for TarGz.
func ParseFormat(s string) (Format, error) {
	switch strings.TrimPrefix(strings.ToLower(s), ".") {
	case "tar.zst", "tzst", "zstd", "zst":
		return TarZst, nil
	case "tar.gz", "tgz", "gzip", "gz":
		return TarGz, nil
	}
	return 0, fmt.Errorf("fallback: unknown archive format %q (want tar.zst or tar.gz)", s)
}

// FormatFromName returns the format a file name's extension stands for
// (".tar.zst", ".tzst", ".tar.gz", ".tgz", any case), and false for other
// names.
func FormatFromName(name string) (Format, bool) {
	l := strings.ToLower(name)
	switch {
	case strings.HasSuffix(l, ".tar.zst"), strings.HasSuffix(l, ".tzst"):
		return TarZst, true
	case strings.HasSuffix(l, ".tar.gz"), strings.HasSuffix(l, ".tgz"):
		return TarGz, true
	}
	return 0, false
}
