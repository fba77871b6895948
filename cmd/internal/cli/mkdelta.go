package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/deltaup/deltaup/delta"
	flag "github.com/spf13/pflag"
)

// Mkdelta runs `mkdelta ARGS...` and returns its exit code.
func Mkdelta(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkdelta", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.StringP("output", "o", "", "write the patch to `PATCH` (required)")
	format := fs.String("format", "native", "patch format: native or bsdiff40 (classic bsdiff/bspatch)")
	workers := fs.Int("workers", 0, "goroutines that scan the new file (0: one per core)")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mkdelta OLD NEW -o PATCH [--format native|bsdiff40]\n\nDiffs two files into a patch that `deltaup patch` (or bspatch, for bsdiff40) applies.\n\n")
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
