package upcli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"time"

	"github.com/deltaup/deltaup/cmd/internal/cli/clihelp"
	"github.com/deltaup/deltaup/cmd/internal/units"
	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
	flag "github.com/spf13/pflag"
)

// Version is the version deltaup --version prints; the linker may set it
// (-ldflags "-X github.com/deltaup/deltaup/cmd/internal/upcli.Version=v1.2.3").
// When empty, the module version or VCS revision of the build is used.
var Version string

// version returns Version, or what the build info knows.
func version() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (built without module information)"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	v := "devel"
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v + " (" + bi.GoVersion + ")"
}

const patchSummary = "apply a patch or a directory bundle made by mkdelta"

// Deltaup runs `deltaup ARGS...` and returns its exit code (see
// exitCodes).
func Deltaup(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		names := []string{}
		for _, c := range clientCommands {
			names = append(names, c.name)
		}
		fmt.Fprintf(stderr, "deltaup: missing command (%s, patch); see deltaup --help\n", strings.Join(names, ", "))
		return exitUsage
	}
	if cmd := findClientCommand(args[0]); cmd != nil {
		return deltaupClient(cmd, args[1:], stdout, stderr)
	}
	switch args[0] {
	case "patch":
		return deltaupPatch(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		if len(args) > 1 {
			if cmd := findClientCommand(args[1]); cmd != nil {
				return deltaupClient(cmd, []string{"--help"}, stdout, stderr)
			} else if args[1] == "patch" {
				return deltaupPatch([]string{"--help"}, stdout, stderr)
			}
			return unknownCommand(args[1], stderr)
		}
		fmt.Fprint(stdout, topUsage())
		return exitOK
	case "--version", "-V", "version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "deltaup: unexpected argument %q after %s; see deltaup --help\n", args[1], args[0])
			return exitUsage
		}
		fmt.Fprintf(stdout, "deltaup %s\n", version())
		return exitOK
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "deltaup: unknown flag %q before the command; see deltaup --help\n", args[0])
		return exitUsage
	}
	return unknownCommand(args[0], stderr)
}

func unknownCommand(name string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "deltaup: unknown command %q; see deltaup --help\n", name)
	return exitUsage
}

// patchUsage is deltaup patch --help.
const patchUsage = `usage: deltaup patch [FLAGS] OLD PATCH -o NEW
       deltaup patch [FLAGS] OLD_DIR BUNDLE -o NEW_DIR

Applies a native or BSDIFF40 patch made by mkdelta; the output is verified and
written atomically. With a directory, applies a bundle made by mkdelta: NEW_DIR
must not exist, the whole tree is verified, and nothing is left at NEW_DIR on
failure.

flags:
%s
exit status:
  0    success
  1    the patch or bundle failed (corrupt, wrong old file, hash mismatch, too large, I/O)
  2    usage: unknown flag, bad value, missing or stray argument
`

func deltaupPatch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deltaup patch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	out := fs.StringP("output", "o", "", "write the new file (or tree) to `NEW` (required)")
	maxSize := units.Size(delta.DefaultMaxNewSize)
	fs.Var(&maxSize, "max-size", "refuse patches whose new file (for bundles: any new file) exceeds `BYTES` (k, M, G, KiB, MiB, GiB)")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "deltaup patch: %v (see deltaup patch --help)\n", err)
		return exitUsage
	}
	if *help {
		fmt.Fprintf(stdout, patchUsage, clihelp.FlagUsages(fs))
		return exitOK
	}
	if fs.NArg() > 2 {
		fmt.Fprintf(stderr, "deltaup patch: unexpected argument %q (see deltaup patch --help)\n", fs.Arg(2))
		return exitUsage
	}
	if fs.NArg() != 2 || *out == "" {
		fmt.Fprintln(stderr, "deltaup patch: need OLD and PATCH and -o NEW (see deltaup patch --help)")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	oldPath, patchPath := fs.Arg(0), fs.Arg(1)
	if oi, err := os.Stat(oldPath); err == nil && oi.IsDir() {
		return deltaupPatchBundle(ctx, oldPath, patchPath, *out, int64(maxSize), *quiet, stdout, stderr)
	} else if err == nil && isBundleFile(patchPath) {
		fmt.Fprintf(stderr, "deltaup patch: %s is a directory bundle but %s is not a directory\n", patchPath, oldPath)
		return exitError
	}
	info, err := delta.ApplyFile(ctx, oldPath, patchPath, *out, &delta.ApplyOptions{MaxNewSize: int64(maxSize)})
	if err != nil {
		fmt.Fprintf(stderr, "deltaup patch: %v\n", err)
		return exitError
	}
	if !*quiet {
		check := "sha256 verified"
		if !info.HasHash {
			check = "no hash in patch (BSDIFF40); sha256 " + fmt.Sprintf("%x", info.NewSum)
		}
		fmt.Fprintf(stdout, "%s: %d bytes, %s, in %.2fs\n", *out, info.NewSize, check, time.Since(start).Seconds())
	}
	return exitOK
}

// deltaupPatchBundle applies a directory bundle.
func deltaupPatchBundle(ctx context.Context, oldDir, bundlePath, out string, maxSize int64, quiet bool, stdout, stderr io.Writer) int {
	if tree.Inside(out, oldDir) {
		fmt.Fprintf(stderr, "deltaup patch: -o %s is inside %s: build the new tree outside the old one\n", out, oldDir)
		return exitUsage
	}
	start := time.Now()
	info, err := delta.ApplyBundleFile(ctx, oldDir, bundlePath, out, &delta.BundleApplyOptions{MaxFileSize: maxSize})
	if err != nil {
		fmt.Fprintf(stderr, "deltaup patch: %v\n", err)
		return 1
	}
	if !quiet {
		c := info.BundleCounts
		solid := "" // version 2 bundles only (tree-wide matching)
		if c.Solid > 0 {
			solid = fmt.Sprintf(", %d solid", c.Solid)
		}
		fmt.Fprintf(stdout, "%s: %d files, %d dirs, %d symlinks, %d bytes (%d unchanged, %d copied, %d patched, %d new%s; %d removed), tree sha256 verified, in %.2fs\n",
			out, c.Files(), c.Dirs, c.Symlinks, info.NewSize, c.Unchanged, c.Copied, c.Patched, c.New, solid, c.Removed, time.Since(start).Seconds())
	}
	return 0
}

// isBundleFile reports whether the file at p starts with a bundle's magic.
func isBundleFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [4]byte
	n, _ := io.ReadFull(f, head[:])
	return delta.IsBundle(head[:n])
}
