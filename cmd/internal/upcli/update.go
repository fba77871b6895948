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
	"slices"
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
		Channel: c.channel, Platform: c.platform, Current: c.current, To: c.to, LimitRate: int64(c.limitRate), TrustSharedDirs: c.trustShared}
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
	if c.root != "" {
		raw, err := os.ReadFile(c.root)
		if err != nil {
			return nil, &usageError{fmt.Errorf("--root: %w", err)}
		}
		cfg.Root = raw
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
	a := []string{"resume", "--invoked-as", "update", "--app-dir", cfg.AppDir, "--backup-dir", cfg.BackupDir, "--app", cfg.App,
		"--confirm-timeout", c.confirmTimeout.String()}
	for _, s := range cfg.Servers {
		a = append(a, "--server", s)
	}
	if c.pubkey != "" {
		p, _ := filepath.Abs(c.pubkey)
		a = append(a, "--pubkey", p)
	}
	if c.root != "" {
		p, _ := filepath.Abs(c.root)
		a = append(a, "--root", p)
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
		hops = append(hops, s.String())
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
	cr := &clientRun{ctx: ctx, cmd: cmd, flags: c, extra: extra, name: cmd.name, stdout: stdout, stderr: stderr, stdin: os.Stdin,
		r: &reporter{out: stdout, err: stderr, json: c.json}}
	if c.invokedAs != "" {
		cr.name = c.invokedAs
	}
	if cmd.flags&fRepo == fRepo && !cmd.offline {
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
func (cr *clientRun) fail(err error) int { return cr.r.fail(cr.name, err) }

func runCheck(cr *clientRun) int {
	ctx, cfg, d := cr.ctx, cr.cfg, cr.d
	res, err := apply.Check(ctx, cfg, d)
	if err != nil {
		return cr.fail(err)
	}
	// Check saved the state: the versions marked bad are in it.
	bad := []string{}
	if st, err := apply.LoadState(cfg.BackupDir); err == nil && len(st.Bad) > 0 {
		bad = st.Bad
	}
	if res.UpToDate {
		fields := map[string]any{"current": res.Current, "bad": bad}
		note := policyNote(res, fields)
		cr.r.event("up-to-date", fields, fmt.Sprintf("up to date (%s)", orUnknown(res.Current))+badText(bad)+note)
		return exitOK
	}
	treeNote(cr.r, res)
	fields := map[string]any{"current": res.Current, "target": res.Target, "bytes": res.Route.Bytes,
		"full_bytes": res.Route.FullBytes, "steps": len(res.Route.Steps), "bad": bad}
	note := policyNote(res, fields)
	cr.r.event("update-ready", fields,
		fmt.Sprintf("update ready: %s → %s via %s", orUnknown(res.Current), res.Target, describeRoute(res.Route))+badText(bad)+note)
	return exitUpdateReady
}

// treeNote says how the app directory differs from the releases, when it
// does: the user's own files (kept by the update) and, for a tree that
// matches no release, the closest one and why the route is what it is.
func treeNote(r *reporter, res *apply.CheckResult) {
	if len(res.Extra) > 0 {
		r.event("extra", map[string]any{"paths": res.Extra},
			fmt.Sprintf("%d file(s) in the app directory belong to no release and are kept: %s", len(res.Extra), strings.Join(res.Extra, ", ")))
	}
	if res.Reason != "" {
		r.event("modified", map[string]any{"closest": res.Closest, "modified": res.Modified, "missing": res.Missing, "reason": res.Reason},
			res.Reason+" (`deltaup status --online` lists the differences)")
	}
}

// badText is the line that lists the versions marked bad ("" for none),
// with a newline before it.
func badText(bad []string) string {
	switch len(bad) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("\nmarked bad: %s (rolled back; skipped by check and update until `deltaup unmark %s`)", bad[0], bad[0])
	}
	return fmt.Sprintf("\nmarked bad: %s (rolled back; skipped by check and update until `deltaup unmark VERSION` or `deltaup unmark --all`)", strings.Join(bad, ", "))
}

func runUpdate(cr *clientRun) int {
	ctx, cfg, u := cr.ctx, cr.cfg, cr.u
	c, r, cmd := cr.flags, cr.r, cr.name
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
	treeNote(r, p.Check)
	how := describeRoute(p.Check.Route)
	switch {
	case p.Stage.Fallback != "":
		how = "full archive, because the " + string(p.Check.Route.Steps[0].Kind) + " route failed: " + p.Stage.Fallback
	case p.Stage.Repair != "":
		how = p.Stage.Repair + "; " + how
	}
	fields := map[string]any{"target": p.Check.Target, "route": p.Stage.Route, "fallback": p.Stage.Fallback, "downloaded": p.Stage.Downloaded, "repaired": p.Stage.Repaired}
	note := policyNote(p.Check, fields)
	r.event("staged", fields, fmt.Sprintf("staged %s in %s (%s)", p.Check.Target, cfg.BackupDir, how)+note)
	if !c.noReexec {
		// Swap from a copy in the backup directory, never from a file
		// the swap replaces.
		if err := apply.ReexecFromBackup(cfg.BackupDir, resumeArgs(cfg, c)); err != nil {
			return r.fail(cmd, err)
		}
		if os.Getenv(apply.EnvResume) != "1" {
			// Windows: the copy was started and waits for this process
			// to exit (its executable must not be in use); it does the
			// swap and prints the rest. On Unix the copy replaced this
			// process and nothing returns here.
			copyDir := filepath.Join(cfg.BackupDir, "bin")
			r.event("handed-over", map[string]any{"dir": copyDir},
				fmt.Sprintf("the swap continues in the copy of deltaup in %s once this process has exited: it prints the result here, "+
					"but its exit status does not reach the caller (`deltaup status` shows the installed version)", copyDir))
			return exitOK
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
	mark := ""
	switch {
	case res.Required:
		mark = ", required: " + res.MinimumVersion + " is the lowest version supported"
	case res.Critical:
		mark = ", critical"
	}
	fmt.Fprintf(cr.stderr, "Update %s to %s (%d bytes to download%s)? [y/N] ", orUnknown(res.Current), res.Target, res.Route.Bytes, mark)
	ans, _ := bufio.NewReader(cr.stdin).ReadString('\n')
	ans = strings.ToLower(strings.TrimSpace(ans))
	return ans == "y" || ans == "yes"
}

func runResume(cr *clientRun) int {
	ctx, u := cr.ctx, cr.u
	if pid, err := strconv.Atoi(os.Getenv(apply.EnvParentPID)); err == nil {
		apply.WaitParent(ctx, pid)
	}
	return install(ctx, u, cr.r, cr.name)
}

// localDirs returns the app and backup directories from the flags and
// deltaup.json, for the commands that need no repository.
func (cr *clientRun) localDirs() (appDir, backupDir string, err error) {
	appDir, err = cr.flags.appDirOrExe()
	if err != nil {
		return "", "", err
	}
	appDir, backupDir, _, err = apply.LocalDirs(appDir, cr.flags.backupDir)
	return appDir, backupDir, err
}

func runConfirm(cr *clientRun) int {
	// Needs no repository: the relaunched app says it runs.
	_, backupDir, err := cr.localDirs()
	if err != nil {
		return cr.fail(err)
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

// runStatus reports what is known locally and, with --online, what the
// files are against the releases of the manifest.
func runStatus(cr *clientRun) int {
	appDir, backupDir, err := cr.localDirs()
	if err != nil {
		return cr.fail(err)
	}
	ls, err := apply.ReadLocalStatus(appDir, backupDir)
	if err != nil {
		return cr.fail(err)
	}
	bad := ls.Bad
	if bad == nil {
		bad = []string{}
	}
	pending, pendingText := "", ""
	if j := ls.Pending; j != nil {
		pending = fmt.Sprintf("%s → %s (%s)", orUnknown(j.From), j.To, j.State)
		pendingText = "\npending update: " + pending + ": `deltaup resume` carries it forward"
	}
	fields := map[string]any{"online": cr.flags.online, "installed": ls.Installed, "recorded": ls.Recorded,
		"bad": bad, "pending": pending}
	if !cr.flags.online {
		text := "installed: " + orUnknown(ls.Installed) + " (as last detected or applied; `deltaup status --online` checks the files)"
		if ls.Installed == "" {
			text = "installed: unknown version (nothing recorded yet; `deltaup status --online` finds it)"
		}
		if ls.Recorded != "" && ls.Recorded != ls.Installed {
			text += fmt.Sprintf("\n%s in the app directory says %s", apply.ConfigFileName, ls.Recorded)
		}
		cr.r.event("status", fields, text+badText(bad)+pendingText)
		return exitOK
	}
	if err := cr.setup(); err != nil {
		return cr.fail(err)
	}
	ctx, cfg, d := cr.ctx, cr.cfg, cr.d
	st, err := apply.LoadState(cfg.BackupDir)
	if err != nil {
		return cr.fail(err)
	}
	m, err := apply.FetchManifest(ctx, cfg, d, st)
	if err != nil {
		return cr.fail(err)
	}
	rep, err := apply.Status(ctx, cfg.AppDir, m, nil)
	if err != nil {
		return cr.fail(err)
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
	fields["version"], fields["exact"] = rep.Version, rep.Exact
	fields["modified"], fields["missing"], fields["extra"] = rep.Modified, rep.Missing, rep.Extra
	cr.r.event("status", fields, text+badText(bad)+pendingText)
	return exitOK
}

// runUnmark removes versions from those marked bad.
func runUnmark(cr *clientRun) int {
	c := cr.flags
	switch {
	case c.all && len(c.args) > 0:
		return cr.fail(&usageError{fmt.Errorf("give VERSION... or --all, not both (see deltaup unmark --help)")})
	case !c.all && len(c.args) == 0:
		return cr.fail(&usageError{fmt.Errorf("which versions? give VERSION... or --all (see deltaup unmark --help)")})
	}
	for _, v := range c.args {
		if _, err := manifest.Compare(v, v); err != nil {
			return cr.fail(&usageError{fmt.Errorf("%q: %w (see deltaup unmark --help)", v, err)})
		}
	}
	appDir, backupDir, err := cr.localDirs()
	if err != nil {
		return cr.fail(err)
	}
	removed, err := apply.UnmarkBad(appDir, backupDir, c.args...)
	if err != nil {
		return cr.fail(err)
	}
	var notMarked, lines []string
	for _, v := range c.args {
		if !slices.ContainsFunc(removed, func(r string) bool { return sameVersion(r, v) }) {
			notMarked = append(notMarked, v)
			lines = append(lines, v+" was not marked bad")
		}
	}
	switch {
	case len(removed) == 1:
		lines = append(lines, "unmarked "+removed[0]+": check and update offer it again")
	case len(removed) > 1:
		lines = append(lines, "unmarked "+strings.Join(removed, ", ")+": check and update offer them again")
	case c.all:
		lines = append(lines, "no version was marked bad")
	}
	cr.r.event("unmarked", map[string]any{"versions": nonNil(removed), "not_marked": nonNil(notMarked)}, strings.Join(lines, "\n"))
	return exitOK
}

// sameVersion compares by semver precedence (the versions are valid).
func sameVersion(a, b string) bool {
	c, err := manifest.Compare(a, b)
	return err == nil && c == 0
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func install(ctx context.Context, u *apply.Updater, r *reporter, cmd string) int {
	in, err := u.Install(ctx)
	if err != nil {
		if errors.Is(err, apply.ErrRolledBack) && in != nil && in.Journal != nil {
			fields := map[string]any{"restored": in.Journal.From, "bad": in.Journal.To}
			if nc, ok := errors.AsType[*apply.NotConfirmedError](err); ok {
				switch {
				case nc.Starts > 0:
					fields["cause"], fields["starts"] = "starts", nc.Starts
				case nc.Exit != nil:
					fields["cause"], fields["exit_code"], fields["after_s"] = "exited", nc.Exit.Code, nc.Exit.After.Seconds()
					if nc.Exit.Signal != "" {
						fields["signal"] = nc.Exit.Signal
					}
				default:
					fields["cause"], fields["timeout_s"] = "timeout", nc.Timeout.Seconds()
				}
			}
			r.event("rolled-back", fields, "")
		}
		return r.fail(cmd, err)
	}
	if in.Journal == nil {
		r.event("nothing-pending", map[string]any{}, "nothing to resume")
		return exitOK
	}
	if moved := in.Journal.Displacements(); len(moved) > 0 {
		// The user's files the new release needed the paths of: kept.
		r.event("displaced", map[string]any{"paths": moved, "dir": in.Journal.Displaced},
			fmt.Sprintf("moved %d file(s) of yours that %s needed the place of into %s (kept there): %s",
				len(moved), in.Journal.To, in.Journal.Displaced, strings.Join(moved, ", ")))
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
