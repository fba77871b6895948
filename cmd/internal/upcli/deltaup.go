package upcli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
	flag "github.com/spf13/pflag"
)

const deltaupUsage = `usage: deltaup COMMAND [ARGS]

commands:
  check     check for an update and print the plan (exit 0 up to date, 3 update ready)
  update    download, stage in the backup directory, swap, relaunch, confirm or roll back
  resume    carry a pending update forward (after a crash, or from the backup copy)
  confirm   the relaunched app says it runs (keeps the new version)
  rollback  restore the previous version and mark the new one bad
  status    installed version, locally modified or missing files, pending update
            common flags: --app-dir DIR --server URL[,URL] --pubkey FILE [--current V]
            [--channel C] [--to V] [--backup-dir DIR] [--relaunch PATH [-- ARGS]]
            [--limit-rate RATE] [--json] [--yes]; deltaup.json in the app dir too
  patch OLD PATCH -o NEW   apply a patch made by mkdelta (native or BSDIFF40)
  patch OLD_DIR BUNDLE -o NEW_DIR
                           apply a directory bundle; NEW_DIR must not exist
`

// Deltaup runs `deltaup ARGS...` and returns its exit code.
func Deltaup(args []string, stdout, stderr io.Writer) int {
	if code, ok := deltaupClient(args, stdout, stderr); ok {
		return code
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, deltaupUsage)
		return 2
	}
	switch args[0] {
	case "patch":
		return deltaupPatch(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, deltaupUsage)
		return 0
	}
	fmt.Fprintf(stderr, "deltaup: unknown command %q\n%s", args[0], deltaupUsage)
	return 2
}

func deltaupPatch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deltaup patch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.StringP("output", "o", "", "write the new file to `NEW` (required)")
	maxSize := fs.Int64("max-size", delta.DefaultMaxNewSize, "refuse patches whose new file (for bundles: any new file) exceeds `BYTES`")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: deltaup patch OLD PATCH -o NEW\n       deltaup patch OLD_DIR BUNDLE -o NEW_DIR\n\nApplies a native or BSDIFF40 patch; the output is verified and written atomically.\nWith a directory, applies a bundle made by mkdelta: NEW_DIR must not exist, the\nwhole tree is verified, and nothing is left at NEW_DIR on failure.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		// pflag prints nothing itself under ContinueOnError.
		fmt.Fprintf(stderr, "deltaup patch: %v (see deltaup patch --help)\n", err)
		return 2
	}
	if fs.NArg() != 2 || *out == "" {
		fmt.Fprintln(stderr, "deltaup patch: need OLD and PATCH and -o NEW (see deltaup patch --help)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	oldPath, patchPath := fs.Arg(0), fs.Arg(1)
	if oi, err := os.Stat(oldPath); err == nil && oi.IsDir() {
		return deltaupPatchBundle(ctx, oldPath, patchPath, *out, *maxSize, *quiet, stdout, stderr)
	} else if err == nil && isBundleFile(patchPath) {
		fmt.Fprintf(stderr, "deltaup patch: %s is a directory bundle but %s is not a directory\n", patchPath, oldPath)
		return 1
	}
	info, err := delta.ApplyFile(ctx, fs.Arg(0), fs.Arg(1), *out, &delta.ApplyOptions{MaxNewSize: *maxSize})
	if err != nil {
		fmt.Fprintf(stderr, "deltaup patch: %v\n", err)
		return 1
	}
	if !*quiet {
		check := "sha256 verified"
		if !info.HasHash {
			check = "no hash in patch (BSDIFF40); sha256 " + fmt.Sprintf("%x", info.NewSum)
		}
		fmt.Fprintf(stdout, "%s: %d bytes, %s, in %.2fs\n", *out, info.NewSize, check, time.Since(start).Seconds())
	}
	return 0
}

// deltaupPatchBundle applies a directory bundle.
func deltaupPatchBundle(ctx context.Context, oldDir, bundlePath, out string, maxSize int64, quiet bool, stdout, stderr io.Writer) int {
	if tree.Inside(out, oldDir) {
		fmt.Fprintf(stderr, "deltaup patch: -o %s is inside %s: build the new tree outside the old one\n", out, oldDir)
		return 2
	}
	start := time.Now()
	info, err := delta.ApplyBundleFile(ctx, oldDir, bundlePath, out, &delta.BundleApplyOptions{MaxFileSize: maxSize})
	if err != nil {
		fmt.Fprintf(stderr, "deltaup patch: %v\n", err)
		return 1
	}
	if !quiet {
		c := info.BundleCounts
		fmt.Fprintf(stdout, "%s: %d files, %d dirs, %d symlinks, %d bytes (%d unchanged, %d copied, %d patched, %d new; %d removed), tree sha256 verified, in %.2fs\n",
			out, c.Files(), c.Dirs, c.Symlinks, info.NewSize, c.Unchanged, c.Copied, c.Patched, c.New, c.Removed, time.Since(start).Seconds())
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
