package upcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/deltaup/deltaup/apply"
	"github.com/deltaup/deltaup/manifest"
	"github.com/schollz/progressbar/v3"
	flag "github.com/spf13/pflag"
)

// Exit codes of the client commands.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitUpdateReady = 3 // deltaup check: a newer version is available
)

// clientFlags are the flags every client command accepts; the same keys
// may come from deltaup.json in the app directory (flags win).
type clientFlags struct {
	appDir, backupDir, app, pubkey, current, channel, to string
	servers                                              []string
	relaunch                                             string
	limitRate                                            string
	json, yes, noReexec                                  bool
	confirmTimeout                                       time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.appDir, "app-dir", "", "the application `DIR` (default: the directory of this executable)")
	fs.StringSliceVar(&c.servers, "server", nil, "repository base `URL`s, tried in order (comma-separated)")
	fs.StringVar(&c.pubkey, "pubkey", "", "minisign public key `FILE` of the publisher")
	fs.StringVar(&c.app, "app", "", "application `NAME` in the manifest")
	fs.StringVar(&c.current, "current", "", "installed `VERSION` (default: found by hashing the app directory)")
	fs.StringVar(&c.channel, "channel", "", "release `CHANNEL` (default stable)")
	fs.StringVar(&c.to, "to", "", "target `VERSION` (default: the newest of the channel)")
	fs.StringVar(&c.backupDir, "backup-dir", "", "backup `DIR` (default: APPDIR.backup beside the app directory)")
	fs.StringVar(&c.relaunch, "relaunch", "", "after the swap, start `PATH` (relative to the app dir; further arguments after --)")
	fs.StringVar(&c.limitRate, "limit-rate", "", "cap the download `RATE` (bytes/s; k, M suffixes)")
	fs.BoolVar(&c.json, "json", false, "print JSON lines instead of text")
	fs.BoolVarP(&c.yes, "yes", "y", false, "do not ask before downloading")
	fs.BoolVar(&c.noReexec, "no-reexec", false, "install in this process instead of re-executing from the backup directory")
	fs.DurationVar(&c.confirmTimeout, "confirm-timeout", apply.DefaultConfirmTimeout, "how long the relaunched app has to confirm")
}

func parseRate(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--limit-rate %q: want bytes per second, e.g. 500k", s)
	}
	return n * mult, nil
}

// config builds the apply.Config from the flags and deltaup.json.
func (c *clientFlags) config(extra []string) (*apply.Config, error) {
	appDir := c.appDir
	if appDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		appDir = filepath.Dir(exe)
	}
	appDir, err := filepath.Abs(appDir)
	if err != nil {
		return nil, err
	}
	cfg := &apply.Config{AppDir: appDir, BackupDir: c.backupDir, Servers: c.servers, App: c.app,
		Channel: c.channel, Current: c.current, To: c.to}
	if cfg.LimitRate, err = parseRate(c.limitRate); err != nil {
		return nil, err
	}
	if c.relaunch != "" {
		cfg.Relaunch = append([]string{c.relaunch}, extra...)
	}
	if c.pubkey != "" {
		text, err := os.ReadFile(c.pubkey)
		if err != nil {
			return nil, err
		}
		if cfg.PublicKey, err = manifest.ParsePublicKey(text); err != nil {
			return nil, fmt.Errorf("%s: %w", c.pubkey, err)
		}
	}
	fc, err := apply.LoadConfigFile(appDir)
	if err != nil {
		return nil, err
	}
	if err := fc.Merge(cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// args returns the flags that recreate cfg for the re-executed copy.
func resumeArgs(cfg *apply.Config, c *clientFlags) []string {
	a := []string{"resume", "--app-dir", cfg.AppDir, "--backup-dir", cfg.BackupDir, "--app", cfg.App,
		"--confirm-timeout", c.confirmTimeout.String()}
	for _, s := range cfg.Servers {
		a = append(a, "--server", s)
	}
	if c.pubkey != "" {
		p, _ := filepath.Abs(c.pubkey)
		a = append(a, "--pubkey", p)
	}
	if c.json {
		a = append(a, "--json")
	}
	return a
}

type reporter struct {
	out, err io.Writer
	json     bool
}

func (r *reporter) event(kind string, fields map[string]any, text string) {
	if r.json {
		fields["event"] = kind
		b, _ := json.Marshal(fields)
		fmt.Fprintln(r.out, string(b))
		return
	}
	if text != "" {
		fmt.Fprintln(r.out, text)
	}
}

// errorClasses name the error classes a script reading --json output can
// act on, most specific first.
var errorClasses = []struct {
	class string
	err   error
}{
	{"canceled", context.Canceled},
	{"not-portable", apply.ErrNotPortable},
	{"rolled-back", apply.ErrRolledBack},
	{"pending", apply.ErrPending},
	{"declined", apply.ErrDeclined},
	{"locked", apply.ErrLocked},
	{"config", apply.ErrConfig},
	{"refused", apply.ErrRefused},
	{"local-io", apply.ErrLocalIO},
	{"staged-mismatch", apply.ErrStagedMismatch},
	{"hash-mismatch", apply.ErrHashMismatch},
	{"not-found", apply.ErrNotFound},
	{"too-large", apply.ErrTooLarge},
	{"too-slow", apply.ErrTooSlow},
	{"stalled", apply.ErrStalled},
	{"deadline", context.DeadlineExceeded},
}

// errorClass returns the class of err for --json output ("error" if none).
func errorClass(err error) string {
	for _, c := range errorClasses {
		if errors.Is(err, c.err) {
			return c.class
		}
	}
	return "error"
}

func (r *reporter) fail(cmd string, err error) int {
	if r.json {
		b, _ := json.Marshal(map[string]any{"event": "error", "command": cmd, "class": errorClass(err), "error": err.Error()})
		fmt.Fprintln(r.out, string(b))
	}
	fmt.Fprintf(r.err, "deltaup %s: %v\n", cmd, err)
	return exitError
}

func describeRoute(rt *apply.Route) string {
	var hops []string
	for _, s := range rt.Steps {
		if s.Kind == apply.StepPatch {
			hops = append(hops, s.From+"→"+s.To)
		} else {
			hops = append(hops, "full archive of "+s.To)
		}
	}
	saving := 0.0
	if rt.FullBytes > 0 {
		saving = 100 * float64(rt.Saving) / float64(rt.FullBytes)
	}
	return fmt.Sprintf("%s: %d bytes in %d download(s), %.1f%% less than the full archive (%d bytes)",
		strings.Join(hops, ", "), rt.Bytes, len(rt.Steps), saving, rt.FullBytes)
}

// deltaupClient runs the client subcommands; ok is false for other names.
func deltaupClient(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	cmd := args[0]
	switch cmd {
	case "check", "update", "resume", "confirm", "rollback", "status":
	default:
		return 0, false
	}
	fs := flag.NewFlagSet("deltaup "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clientFlags
	c.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: deltaup %s [--app-dir DIR] [--server URL[,URL...]] [--pubkey FILE] [flags]\n\n", cmd)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args[1:], stderr); done {
		return code, true
	}
	r := &reporter{out: stdout, err: stderr}
	r.json = c.json
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if cmd == "confirm" {
		// Needs no repository: the relaunched app says it runs.
		cfg := apply.Config{AppDir: c.appDir, BackupDir: c.backupDir}
		if cfg.AppDir == "" {
			exe, _ := os.Executable()
			cfg.AppDir = filepath.Dir(exe)
		}
		if cfg.BackupDir == "" {
			cfg.BackupDir = filepath.Clean(cfg.AppDir) + apply.BackupSuffix
		}
		if err := apply.Confirm(cfg.BackupDir); err != nil {
			return r.fail(cmd, err), true
		}
		r.event("confirmed", map[string]any{}, "confirmed")
		return exitOK, true
	}

	cfg, err := c.config(fs.Args())
	if err != nil {
		return r.fail(cmd, err), true
	}
	d := &apply.Downloader{Client: cfg.HTTPClient, Mirrors: cfg.Servers, RateLimit: cfg.LimitRate,
		Progress: progressPrinter(r, stderr)}
	u := &apply.Updater{Config: *cfg, Downloader: d, ConfirmTimeout: c.confirmTimeout}
	switch cmd {
	case "check":
		res, err := apply.Check(ctx, cfg, d)
		if err != nil {
			return r.fail(cmd, err), true
		}
		if res.UpToDate {
			r.event("up-to-date", map[string]any{"current": res.Current}, fmt.Sprintf("up to date (%s)", orUnknown(res.Current)))
			return exitOK, true
		}
		r.event("update-ready", map[string]any{"current": res.Current, "target": res.Target, "bytes": res.Route.Bytes,
			"full_bytes": res.Route.FullBytes, "steps": len(res.Route.Steps)},
			fmt.Sprintf("update ready: %s → %s via %s", orUnknown(res.Current), res.Target, describeRoute(res.Route)))
		return exitUpdateReady, true
	case "update":
		if !c.yes && isTerminal(os.Stdin) && !c.json {
			u.Consent = func(res *apply.CheckResult) bool {
				fmt.Fprintf(stdout, "Update %s to %s (%d bytes to download)? [y/N] ", orUnknown(res.Current), res.Target, res.Route.Bytes)
				var ans string
				fmt.Fscanln(os.Stdin, &ans)
				return strings.HasPrefix(strings.ToLower(ans), "y")
			}
		}
		if j, err := apply.LoadJournal(cfg.BackupDir); err == nil {
			// An earlier update stopped half-way: carry it forward first.
			r.event("resuming", map[string]any{"from": j.From, "to": j.To, "state": string(j.State)},
				fmt.Sprintf("resuming the pending update %s → %s (%s)", orUnknown(j.From), j.To, j.State))
			if code := install(ctx, u, r, cmd); code != exitOK {
				return code, true
			}
		}
		p, err := u.Prepare(ctx)
		if err != nil {
			return r.fail(cmd, err), true
		}
		if p.Check.UpToDate {
			r.event("up-to-date", map[string]any{"current": p.Check.Current}, fmt.Sprintf("up to date (%s)", orUnknown(p.Check.Current)))
			return exitOK, true
		}
		how := describeRoute(p.Check.Route)
		if p.Stage.Fallback != "" {
			how = "full archive, because the patch route failed: " + p.Stage.Fallback
		}
		r.event("staged", map[string]any{"target": p.Check.Target, "route": p.Stage.Route, "fallback": p.Stage.Fallback, "downloaded": p.Stage.Downloaded},
			fmt.Sprintf("staged %s in %s (%s)", p.Check.Target, cfg.BackupDir, how))
		if !c.noReexec {
			// Swap from a copy in the backup directory, never from a file
			// the swap replaces.
			if err := apply.ReexecFromBackup(cfg.BackupDir, resumeArgs(cfg, &c)); err != nil {
				return r.fail(cmd, err), true
			}
		}
		return install(ctx, u, r, cmd), true
	case "resume":
		if pid, err := strconv.Atoi(os.Getenv(apply.EnvParentPID)); err == nil {
			apply.WaitParent(ctx, pid)
		}
		return install(ctx, u, r, cmd), true
	case "rollback":
		in, err := u.RollbackNow(ctx)
		if err != nil {
			return r.fail(cmd, err), true
		}
		r.event("rolled-back", map[string]any{"restored": in.Journal.From, "bad": in.Journal.To},
			fmt.Sprintf("rolled back to %s; %s is marked bad", orUnknown(in.Journal.From), in.Journal.To))
		return exitOK, true
	case "status":
		st, _ := apply.LoadState(cfg.BackupDir)
		m, err := apply.FetchManifest(ctx, cfg, d, st)
		if err != nil {
			return r.fail(cmd, err), true
		}
		rep, err := apply.Status(ctx, cfg.AppDir, m, nil)
		if err != nil {
			return r.fail(cmd, err), true
		}
		pending := ""
		if j, err := apply.LoadJournal(cfg.BackupDir); err == nil {
			pending = fmt.Sprintf("%s → %s (%s)", j.From, j.To, j.State)
		}
		text := fmt.Sprintf("installed: %s", orUnknown(rep.Version))
		if !rep.Exact {
			text += fmt.Sprintf(" (closest; %d modified, %d missing, %d extra)", len(rep.Modified), len(rep.Missing), len(rep.Extra))
			for _, p := range rep.Modified {
				text += "\n  modified: " + p
			}
			for _, p := range rep.Missing {
				text += "\n  missing:  " + p
			}
			for _, p := range rep.Extra {
				text += "\n  extra:    " + p
			}
		}
		if pending != "" {
			text += "\npending update: " + pending
		}
		r.event("status", map[string]any{"version": rep.Version, "exact": rep.Exact, "modified": rep.Modified,
			"missing": rep.Missing, "extra": rep.Extra, "pending": pending}, text)
		return exitOK, true
	}
	return exitUsage, true
}

func install(ctx context.Context, u *apply.Updater, r *reporter, cmd string) int {
	in, err := u.Install(ctx)
	if err != nil {
		if errors.Is(err, apply.ErrRolledBack) && in != nil && in.Journal != nil {
			r.event("rolled-back", map[string]any{"restored": in.Journal.From, "bad": in.Journal.To}, "")
		}
		return r.fail(cmd, err)
	}
	if in.Journal == nil {
		r.event("nothing-pending", map[string]any{}, "nothing to resume")
		return exitOK
	}
	r.event("installed", map[string]any{"version": in.Journal.To}, fmt.Sprintf("installed %s in %s", in.Journal.To, in.Journal.AppDir))
	return exitOK
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown version"
	}
	return v
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressPrinter reports downloads: JSON lines with --json, a progress
// bar (schollz/progressbar) on a terminal, nothing otherwise.
func progressPrinter(r *reporter, stderr io.Writer) func(apply.Progress) {
	tty := isTerminal(os.Stderr)
	var bar *progressbar.ProgressBar
	var barPath string
	return func(p apply.Progress) {
		switch {
		case r.json:
			r.event("progress", map[string]any{"phase": p.Phase, "path": p.Path, "bytes": p.Bytes, "total": p.Total,
				"rate": int64(p.Rate), "eta_s": p.ETA.Seconds()}, "")
		case tty && p.Phase == apply.PhaseDownload:
			if bar == nil || barPath != p.Path {
				if bar != nil {
					bar.Finish()
				}
				bar = progressbar.NewOptions64(p.Total,
					progressbar.OptionSetWriter(stderr),
					progressbar.OptionSetDescription(path.Base(p.Path)),
					progressbar.OptionShowBytes(true),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }))
				barPath = p.Path
			}
			bar.Set64(p.Bytes)
		}
	}
}

// parseFlags parses fs and reports usage errors in one line.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, true
		}
		fmt.Fprintf(stderr, "%s: %v (see %s --help)\n", fs.Name(), err, fs.Name())
		return 2, true
	}
	return 0, false
}
