package upcli

import (
	"bufio"
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
	"github.com/deltaup/deltaup/cmd/internal/units"
	"github.com/deltaup/deltaup/manifest"
	"github.com/schollz/progressbar/v3"
)

// config builds the apply.Config from the flags and deltaup.json.
func (c *clientFlags) config(extra []string) (*apply.Config, error) {
	appDir, err := c.appDirOrExe()
	if err != nil {
		return nil, err
	}
	cfg := &apply.Config{AppDir: appDir, BackupDir: c.backupDir, Servers: c.servers, App: c.app,
		Channel: c.channel, Current: c.current, To: c.to, LimitRate: int64(c.limitRate), TrustSharedDirs: c.trustShared}
	if c.relaunch != "" {
		cfg.Relaunch = append([]string{c.relaunch}, extra...)
	}
	if c.pubkey != "" {
		text, err := os.ReadFile(c.pubkey)
		if err != nil {
			return nil, &usageError{fmt.Errorf("--pubkey: %w", err)}
		}
		if cfg.PublicKey, err = manifest.ParsePublicKey(text); err != nil {
			return nil, &usageError{fmt.Errorf("--pubkey %s: %w", c.pubkey, err)}
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

// appDirOrExe returns --app-dir, or the directory of this executable,
// made absolute.
func (c *clientFlags) appDirOrExe() (string, error) {
	appDir := c.appDir
	if appDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("finding this executable's directory: %w (give --app-dir)", err)
		}
		appDir = filepath.Dir(exe)
	}
	return filepath.Abs(appDir)
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
	if c.trustShared {
		a = append(a, "--trust-shared-dirs")
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

// fail reports err (on stderr, and as a JSON error event with --json) and
// returns the exit code of its class.
func (r *reporter) fail(cmd string, err error) int {
	class, code := errorClass(err)
	if r.json {
		b, _ := json.Marshal(map[string]any{"event": "error", "command": cmd, "class": class, "exit": code, "error": err.Error()})
		fmt.Fprintln(r.out, string(b))
	}
	fmt.Fprintf(r.err, "deltaup %s: %v\n", cmd, err)
	return code
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

// deltaupClient runs the client command cmd with its arguments.
func deltaupClient(cmd *clientCommand, args []string, stdout, stderr io.Writer) int {
	c, extra, code, done := parseClient(cmd, args, stdout, stderr)
	if done {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cr := &clientRun{ctx: ctx, cmd: cmd, flags: c, extra: extra, stdout: stdout, stderr: stderr, stdin: os.Stdin,
		r: &reporter{out: stdout, err: stderr, json: c.json}}
	if cmd.flags&fRepo == fRepo {
		if err := cr.setup(); err != nil {
			return cr.fail(err)
		}
	}
	return cmd.run(cr)
}

// setup builds the configuration, the downloader and the updater from
// the flags and deltaup.json.
func (cr *clientRun) setup() error {
	cfg, err := cr.flags.config(cr.extra)
	if err != nil {
		return err
	}
	cr.cfg = cfg
	cr.d = &apply.Downloader{Client: cfg.HTTPClient, Mirrors: cfg.Servers, RateLimit: cfg.LimitRate,
		Progress: progressPrinter(cr.r, cr.stderr)}
	cr.u = &apply.Updater{Config: *cfg, Downloader: cr.d, ConfirmTimeout: cr.flags.confirmTimeout}
	return nil
}

// fail reports err and returns the exit code of its class.
func (cr *clientRun) fail(err error) int { return cr.r.fail(cr.cmd.name, err) }

func runCheck(cr *clientRun) int {
	ctx, cfg, d := cr.ctx, cr.cfg, cr.d
	res, err := apply.Check(ctx, cfg, d)
	if err != nil {
		return cr.fail(err)
	}
	if res.UpToDate {
		cr.r.event("up-to-date", map[string]any{"current": res.Current}, fmt.Sprintf("up to date (%s)", orUnknown(res.Current)))
		return exitOK
	}
	cr.r.event("update-ready", map[string]any{"current": res.Current, "target": res.Target, "bytes": res.Route.Bytes,
		"full_bytes": res.Route.FullBytes, "steps": len(res.Route.Steps)},
		fmt.Sprintf("update ready: %s → %s via %s", orUnknown(res.Current), res.Target, describeRoute(res.Route)))
	return exitUpdateReady
}

func runUpdate(cr *clientRun) int {
	ctx, cfg, u := cr.ctx, cr.cfg, cr.u
	c, r, cmd := cr.flags, cr.r, cr.cmd.name
	if cfg.LimitRate > 0 {
		r.event("limit-rate", map[string]any{"bytes_per_s": cfg.LimitRate},
			"downloads limited to "+units.FormatRate(cfg.LimitRate))
	}
	if !c.yes && !c.json && cr.interactive() {
		u.Consent = cr.ask
	}
	if j, err := apply.LoadJournal(cfg.BackupDir); err == nil {
		// An earlier update stopped half-way: carry it forward first.
		r.event("resuming", map[string]any{"from": j.From, "to": j.To, "state": string(j.State)},
			fmt.Sprintf("resuming the pending update %s → %s (%s)", orUnknown(j.From), j.To, j.State))
		if code := install(ctx, u, r, cmd); code != exitOK {
			return code
		}
	}
	p, err := u.Prepare(ctx)
	if err != nil {
		return r.fail(cmd, err)
	}
	if p.Check.UpToDate {
		r.event("up-to-date", map[string]any{"current": p.Check.Current}, fmt.Sprintf("up to date (%s)", orUnknown(p.Check.Current)))
		return exitOK
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
		if err := apply.ReexecFromBackup(cfg.BackupDir, resumeArgs(cfg, c)); err != nil {
			return r.fail(cmd, err)
		}
	}
	return install(ctx, u, r, cmd)
}

// interactive reports whether a person can answer a question: standard
// input and standard error are both terminals. /dev/null, a pipe or a
// file is not one (a service, cron, a script).
func (cr *clientRun) interactive() bool {
	errFile, ok := cr.stderr.(*os.File)
	return ok && isTerminal(cr.stdin) && isTerminal(errFile)
}

// ask asks on stderr whether to download the update, and reads the
// answer from stdin: only "y" or "yes" says yes.
func (cr *clientRun) ask(res *apply.CheckResult) bool {
	fmt.Fprintf(cr.stderr, "Update %s to %s (%d bytes to download)? [y/N] ", orUnknown(res.Current), res.Target, res.Route.Bytes)
	ans, _ := bufio.NewReader(cr.stdin).ReadString('\n')
	ans = strings.ToLower(strings.TrimSpace(ans))
	return ans == "y" || ans == "yes"
}

func runResume(cr *clientRun) int {
	ctx, u := cr.ctx, cr.u
	if pid, err := strconv.Atoi(os.Getenv(apply.EnvParentPID)); err == nil {
		apply.WaitParent(ctx, pid)
	}
	return install(ctx, u, cr.r, cr.cmd.name)
}

func runConfirm(cr *clientRun) int {
	// Needs no repository: the relaunched app says it runs.
	appDir, err := cr.flags.appDirOrExe()
	if err != nil {
		return cr.fail(err)
	}
	backupDir := cr.flags.backupDir
	if backupDir == "" {
		backupDir = filepath.Clean(appDir) + apply.BackupSuffix
	}
	if err := apply.Confirm(backupDir); err != nil {
		return cr.fail(err)
	}
	cr.r.event("confirmed", map[string]any{}, "confirmed")
	return exitOK
}

func runRollback(cr *clientRun) int {
	ctx, u := cr.ctx, cr.u
	in, err := u.RollbackNow(ctx)
	if err != nil {
		return cr.fail(err)
	}
	cr.r.event("rolled-back", map[string]any{"restored": in.Journal.From, "bad": in.Journal.To},
		fmt.Sprintf("rolled back to %s; %s is marked bad", orUnknown(in.Journal.From), in.Journal.To))
	return exitOK
}

func runStatus(cr *clientRun) int {
	ctx, cfg, d := cr.ctx, cr.cfg, cr.d
	st, _ := apply.LoadState(cfg.BackupDir)
	m, err := apply.FetchManifest(ctx, cfg, d, st)
	if err != nil {
		return cr.fail(err)
	}
	rep, err := apply.Status(ctx, cfg.AppDir, m, nil)
	if err != nil {
		return cr.fail(err)
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
	cr.r.event("status", map[string]any{"version": rep.Version, "exact": rep.Exact, "modified": rep.Modified,
		"missing": rep.Missing, "extra": rep.Extra, "pending": pending}, text)
	return exitOK
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

// progressPrinter reports downloads: JSON lines with --json, a progress
// bar (schollz/progressbar) on a terminal, nothing otherwise.
func progressPrinter(r *reporter, stderr io.Writer) func(apply.Progress) {
	f, _ := stderr.(*os.File)
	tty := isTerminal(f)
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
