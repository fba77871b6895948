// Command demo is deltaup's end-to-end demonstration: it builds a small Go
// app that updates itself with package apply at several versions, publishes
// them into a signed repository, serves it on 127.0.0.1 through a throttled
// HTTP server, installs the oldest version, starts it and watches it update
// itself to the newest (download, stage, re-exec from the backup directory,
// swap, relaunch, confirm), then checks the result.
//
//	go run ./cmd/demo [--rate 1Mbit] [--versions 3] [--show-repair] [--show-fallback] [--keep]
//
// It needs only the Go toolchain and the module cache: the app is built
// offline (GOPROXY=off) against this module through a replace directive.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/deltaup/deltaup/cmd/internal/units"
	flag "github.com/spf13/pflag"
)

func main() {
	var o Options
	var rate string
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&rate, "rate", "1Mbit", "throttle the repository server to `RATE` (bytes/s; e.g. 1Mbit, 500kbit, 2MB, 200KiB, 125000; 0 = unthrottled)")
	fs.IntVar(&o.Versions, "versions", 3, "how many versions to build and publish (1.0.0, 1.1.0, ...; at least 2)")
	fs.BoolVar(&o.ShowRepair, "show-repair", false, "edit one installed file first: it is repaired from its frame of the installed release's archive, then the patch applies")
	fs.BoolVar(&o.ShowFallback, "show-fallback", false, "serve every patch with one byte flipped: it fails its SHA-256 check and the full archive is used")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work directory (app, backup dir, repository, sources)")
	fs.DurationVar(&o.Timeout, "timeout", 120*time.Second, "how long the app has to update itself")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./cmd/demo [--rate 1Mbit] [--versions 3] [--show-repair] [--show-fallback] [--keep]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	var err error
	if o.Rate, err = units.ParseRate(rate); err != nil {
		fmt.Fprintf(os.Stderr, "demo: --rate %q: %v\n", rate, err)
		os.Exit(2)
	}
	o.Out = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: FAIL:", err)
		os.Exit(1)
	}
	if !res.Pass {
		os.Exit(1)
	}
}
