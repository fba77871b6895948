package main

// appSource is the demo application: a real Go program that updates itself
// with package apply. The demo writes it into its own module (go.mod with a
// replace directive pointing at this module) and builds it once per version
// with -ldflags "-X main.version=V -X main.banner=B".
//
// Flow of one run:
//   - normal start: Updater.Install (resume anything pending), print the
//     version, run Updater.Prepare in a goroutine (progress lines), and
//     when an update is staged call apply.ReexecFromBackup: the process
//     becomes a copy of itself in the backup directory, with
//     DELTAUP_RESUME=1 in its environment;
//   - resumed copy (DELTAUP_RESUME=1): Updater.Install swaps the trees,
//     relaunches "bin/app --confirm" in the app directory and waits for
//     the confirmation;
//   - relaunched new version (--confirm): apply.Confirm(backupDir) once it
//     is up, print the version and exit (demo mode).
const appSource = `package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/deltaup/deltaup/apply"
)

var (
	version = "0.0.0-dev"
	banner  = "hello"
)

func main() {
	appDir := flag.String("app-dir", "", "the application directory (default: the parent of this executable's directory)")
	confirm := flag.Bool("confirm", false, "relaunched after an update: confirm it")
	flag.Parse()
	if err := run(*appDir, *confirm); err != nil {
		fmt.Fprintf(os.Stderr, "app %s: %v\n", version, err)
		os.Exit(1)
	}
}

func run(appDir string, confirm bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if appDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		appDir = filepath.Dir(filepath.Dir(exe)) // <app>/bin/app
	}
	relaunch := "bin/app"
	if runtime.GOOS == "windows" {
		relaunch += ".exe"
	}
	// Current: the app knows its version, so a locally modified tree still
	// gets the patch route first (and the full archive if that fails).
	cfg := apply.Config{AppDir: appDir, Current: version, Relaunch: []string{relaunch, "--confirm"}}
	fc, err := apply.LoadConfigFile(appDir)
	if err != nil {
		return err
	}
	if err := fc.Merge(&cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	if confirm {
		// Relaunched by the updater after the swap: we are up, say so.
		if err := apply.Confirm(cfg.BackupDir); err != nil {
			return fmt.Errorf("confirming: %w", err)
		}
		fmt.Printf("app %s: %s (relaunched after the update; confirmed)\n", version, banner)
		return nil
	}

	u := &apply.Updater{Config: cfg, Progress: progressLine()}
	if os.Getenv(apply.EnvResume) == "1" {
		// The copy in the backup directory: swap, relaunch, wait.
		if pid, err := strconv.Atoi(os.Getenv(apply.EnvParentPID)); err == nil {
			apply.WaitParent(ctx, pid)
		}
		fmt.Printf("updater (copy of %s in %s): installing\n", version, filepath.Join(cfg.BackupDir, "bin"))
		in, err := u.Install(ctx)
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		if in.Journal != nil {
			fmt.Printf("updater: installed %s (confirmed %v)\n", in.Journal.To, in.Confirmed)
		}
		return nil
	}

	// Normal start: finish any update a crash interrupted.
	in, err := u.Install(ctx)
	if err != nil && !errors.Is(err, apply.ErrRolledBack) {
		return fmt.Errorf("resuming a pending update: %w", err)
	}
	if in != nil && in.Relaunched {
		fmt.Printf("app %s: resumed the pending update to %s; the app was started anew\n", version, in.Journal.To)
		return nil
	}
	fmt.Printf("app %s: %s\n", version, banner)

	type result struct {
		p   *apply.Prepared
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := u.Prepare(ctx)
		done <- result{p, err}
	}()
	// A real app would keep working here; the demo just waits.
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Minute):
		return errors.New("update check timed out")
	}
	if r.err != nil {
		return fmt.Errorf("update check: %w", r.err)
	}
	if r.p.Check.UpToDate {
		fmt.Printf("app %s: up to date\n", version)
		return nil
	}
	how := r.p.Stage.Route
	if r.p.Stage.Fallback != "" {
		how += " (fallback: " + r.p.Stage.Fallback + ")"
	}
	fmt.Printf("app %s: staged %s in %s via %s; downloaded %v\n", version, r.p.Check.Target, r.p.Stage.Dir, how, r.p.Stage.Downloaded)
	fmt.Printf("app %s: re-executing from the backup directory to install\n", version)
	return apply.ReexecFromBackup(cfg.BackupDir, []string{"--app-dir", cfg.AppDir})
}

// progressLine prints a line per transfer at start, every 25% and at the end.
func progressLine() func(apply.Progress) {
	last := map[string]int64{}
	return func(p apply.Progress) {
		key := p.Phase + " " + p.Path
		step := int64(-1)
		if p.Total > 0 {
			step = 4 * p.Bytes / p.Total
		}
		if prev, ok := last[key]; ok && prev == step && p.Bytes != p.Total {
			return
		}
		if prev, ok := last[key]; ok && prev == step {
			return
		}
		last[key] = step
		pct := 0.0
		if p.Total > 0 {
			pct = 100 * float64(p.Bytes) / float64(p.Total)
		}
		fmt.Printf("  progress: %-8s %-36s %9d/%-9d %5.1f%% %7.1f KiB/s\n", p.Phase, p.Path, p.Bytes, p.Total, pct, p.Rate/1024)
	}
}
`
