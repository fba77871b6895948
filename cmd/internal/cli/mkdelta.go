package cli

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

// Mkdelta runs `mkdelta ARGS...` and returns its exit code.
func Mkdelta(args []string, stdout, stderr io.Writer) int {
	if code, ok := mkdeltaSubcommand(args, stdout, stderr); ok {
		return code
	}
	fs := flag.NewFlagSet("mkdelta", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.StringP("output", "o", "", "write the patch to `PATCH` (required)")
	format := fs.String("format", "native", "patch format: native or bsdiff40 (classic bsdiff/bspatch)")
	workers := fs.Int("workers", 0, "goroutines that scan the new file (0: one per core)")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mkdelta OLD NEW -o PATCH [--format native|bsdiff40]\n       mkdelta OLD_DIR NEW_DIR -o BUNDLE\n       mkdelta keygen -o BASE [--password-file FILE]\n       mkdelta publish --repo DIR --app NAME --version V [--channel C] --key BASE.key [--patches-from N] NEW_DIR\n       mkdelta verify --repo DIR --pubkey BASE.pub\n\nDiffs two files into a patch that `deltaup patch` (or bspatch, for bsdiff40) applies,\nor two directory trees into one bundle (native patches per file, renames and\nunchanged files free) that `deltaup patch OLD_DIR BUNDLE -o NEW_DIR` applies.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		// pflag prints nothing itself under ContinueOnError.
		fmt.Fprintf(stderr, "mkdelta: %v (see mkdelta --help)\n", err)
		return 2
	}
	if fs.NArg() != 2 || *out == "" {
		fmt.Fprintln(stderr, "mkdelta: need OLD and NEW and -o PATCH (see mkdelta --help)")
		return 2
	}
	f, err := delta.ParseFormat(*format)
	if err != nil {
		fmt.Fprintln(stderr, "mkdelta:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	oldPath, newPath := fs.Arg(0), fs.Arg(1)
	// Two directories make a bundle. A directory and a file are refused;
	// when NEW is the directory, DiffFile says it is not a regular file.
	oi, oerr := os.Stat(oldPath)
	ni, nerr := os.Stat(newPath)
	if oerr == nil && oi.IsDir() {
		if nerr == nil && !ni.IsDir() {
			fmt.Fprintf(stderr, "mkdelta: %s is a directory but %s is not: give two files, or two directories for a bundle\n", oldPath, newPath)
			return 1
		}
		if nerr == nil {
			if f != delta.FormatNative {
				fmt.Fprintf(stderr, "mkdelta: --format %s is for single files; two directories make a native bundle\n", f)
				return 2
			}
			return mkdeltaBundle(ctx, oldPath, newPath, *out, *workers, *quiet, stdout, stderr)
		}
	}
	start := time.Now()
	st, err := delta.DiffFile(ctx, oldPath, newPath, *out, &delta.DiffOptions{Format: f, Workers: *workers})
	if err != nil {
		fmt.Fprintf(stderr, "mkdelta: %v\n", err)
		return 1
	}
	if !*quiet {
		ni, _ := os.Stat(newPath)
		oi, _ := os.Stat(oldPath)
		how := f.String()
		if f == delta.FormatNative {
			how += "/" + st.Method.String()
		}
		ratio := 0.0
		if ni.Size() > 0 {
			ratio = 100 * float64(st.PatchSize) / float64(ni.Size())
		}
		fmt.Fprintf(stdout, "%s: %d bytes (%.2f%% of new %d bytes; old %d bytes) %s in %.2fs\n",
			*out, st.PatchSize, ratio, ni.Size(), oi.Size(), how, time.Since(start).Seconds())
	}
	return 0
}

// mkdeltaBundle diffs two directory trees into a bundle.
func mkdeltaBundle(ctx context.Context, oldDir, newDir, out string, workers int, quiet bool, stdout, stderr io.Writer) int {
	// The bundle's temporary file must not land in a tree being scanned.
	for _, dir := range []string{oldDir, newDir} {
		if tree.Inside(out, dir) {
			fmt.Fprintf(stderr, "mkdelta: -o %s is inside %s: write the bundle outside both trees\n", out, dir)
			return 2
		}
	}
	start := time.Now()
	st, err := delta.DiffBundleFile(ctx, oldDir, newDir, out, &delta.BundleOptions{Workers: workers})
	if err != nil {
		fmt.Fprintf(stderr, "mkdelta: %v\n", err)
		return 1
	}
	if !quiet {
		ratio := 0.0
		if st.NewSize > 0 {
			ratio = 100 * float64(st.BundleSize) / float64(st.NewSize)
		}
		c := st.BundleCounts
		fmt.Fprintf(stdout, "%s: %d bytes (%.2f%% of new tree %d bytes in %d files; old %d bytes) bundle: %d unchanged, %d copied, %d patched, %d new, %d dirs, %d symlinks, %d removed; patches %d bytes, in %.2fs\n",
			out, st.BundleSize, ratio, st.NewSize, c.Files(), st.OldSize,
			c.Unchanged, c.Copied, c.Patched, c.New, c.Dirs, c.Symlinks, c.Removed, st.PayloadSize, time.Since(start).Seconds())
	}
	return 0
}
