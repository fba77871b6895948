package cli

import (
	"io"

	"github.com/deltaup/deltaup/manifest"
	flag "github.com/spf13/pflag"
)

// platformFlag defines --platform (docs/FORMAT.md, "Platforms in one
// repository").
func platformFlag(fs *flag.FlagSet, usage string) *string {
	return fs.String("platform", "", usage)
}

// checkPlatformFlag refuses a --platform that is no platform name (exit 2).
func checkPlatformFlag(name, platform string, stderr io.Writer) (int, bool) {
	if platform == "" || manifest.ValidPlatform(platform) {
		return 0, false
	}
	return usageError(name, stderr, "--platform %q: give OS-ARCH in lowercase letters and digits, at most %d bytes (linux-amd64, windows-amd64, darwin-arm64)", platform, manifest.MaxPlatformLen), true
}
