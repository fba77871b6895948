package upcli

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/deltaup/deltaup/apply"
	"github.com/deltaup/deltaup/cmd/internal/cli/clihelp"
	"github.com/deltaup/deltaup/cmd/internal/units"
	flag "github.com/spf13/pflag"
)

// Flags a client command may define; each command names its own.
const (
	fAppDir = 1 << iota
	fBackupDir
	fServer
	fPubkey
	fApp
	fCurrent
	fChannel
	fTo
	fRelaunch
	fLimitRate
	fJSON
	fYes
	fNoReexec
	fConfirmTimeout
	fTrustShared
	fOnline
	fAll
	fInvokedAs // hidden: the command the user ran, for the re-executed copy

	// fRepo: the flags that locate the app and trust its repository
	// (deltaup.json may give them instead), and the one that accepts a
	// layout other users can write (never from deltaup.json: such a user
	// could write that file too).
	fRepo = fAppDir | fBackupDir | fServer | fPubkey | fApp | fTrustShared
	// fTarget: the flags that choose the versions.
	fTarget = fCurrent | fChannel | fTo
)

// clientCommand is one of the update commands.
type clientCommand struct {
	name    string
	summary string // one line, for deltaup --help
	about   string // for deltaup NAME --help
	args    string // the synopsis after the flags ("" for none)
	posArgs bool   // takes positional arguments (args says which)
	flags   int    // the f* flags it defines
	exits   []int  // the exit codes it can return
	// offline: the command does not need the repository unless asked
	// (status --online); run calls setup itself when it does.
	offline bool
	run     func(*clientRun) int
}

// confirmHelp says what a relaunched app must do, in the help of the
// commands that relaunch it.
const confirmHelp = "The relaunched app must confirm that it runs, with `deltaup confirm --app-dir DIR`\n" +
	"(apply.Confirm(backupDir) in Go), within --confirm-timeout. If it exits first or\n" +
	"the time runs out, the update is rolled back, the old version relaunched and the\n" +
	"new version marked bad (`deltaup status` lists it, `deltaup unmark` clears it).\n" +
	"The error says which: \"bin/app (2.0.0) exited with code 3 after 40ms without\n" +
	"confirming\" or \"... did not confirm within 30s\"."

var clientCommands = []*clientCommand{
	{name: "check", summary: "check for an update and print the download plan",
		about: "Fetches and verifies the signed manifest and prints the cheapest way to the\n" +
			"newest version (or --to): the chain of patches, the bytes and the saving.\n" +
			"Downloads nothing else and changes nothing.",
		flags: fRepo | fTarget | fJSON,
		exits: []int{exitOK, exitError, exitUsage, exitUpdateReady, exitRefused, exitNetwork, exitLocalIO, exitInterrupted},
		run:   runCheck},
	{name: "update", summary: "download, stage, verify, swap, relaunch, confirm or roll back",
		args: "[-- RELAUNCH_ARGS...]",
		about: "Carries forward an update a crash left pending, then checks for a new version,\n" +
			"downloads it (resumably), builds and verifies it in the backup directory,\n" +
			"swaps it in from a copy of deltaup in the backup directory, relaunches the app\n" +
			"(--relaunch) and waits for it to confirm, or rolls back.\n\n" + confirmHelp + "\n\n" +
			"On a terminal (standard input and standard error) it asks before downloading,\n" +
			"unless --yes or --json is given. Without a terminal (a service, cron, a pipe,\n" +
			"</dev/null) it never asks and proceeds, as with --yes: run `deltaup check`\n" +
			"first to decide in a script.",
		flags: fRepo | fTarget | fRelaunch | fLimitRate | fJSON | fYes | fNoReexec | fConfirmTimeout,
		exits: []int{exitOK, exitError, exitUsage, exitRefused, exitNetwork, exitLocalIO, exitRolledBack, exitBusy, exitDeclined, exitInterrupted},
		run:   runUpdate},
	{name: "resume", summary: "carry a pending update forward (after a crash, or from the backup copy)",
		about: "Finishes a swap a crash or a kill interrupted, or starts it when the update is\n" +
			"staged: the app directory ends exactly the old or exactly the new version.\n" +
			"`deltaup update` runs it from its copy in the backup directory; its messages\n" +
			"then name `update`.\n\n" + confirmHelp,
		flags: fRepo | fJSON | fConfirmTimeout | fInvokedAs,
		exits: []int{exitOK, exitError, exitUsage, exitLocalIO, exitRolledBack, exitBusy, exitInterrupted},
		run:   runResume},
	{name: "confirm", summary: "tell deltaup the relaunched app runs (keeps the new version)",
		about: "Run by the new version once it is up: the update is final. Needs no\n" +
			"repository; does nothing when no update waits for confirmation.",
		flags: fAppDir | fBackupDir | fJSON,
		exits: []int{exitOK, exitError, exitUsage, exitLocalIO},
		run:   runConfirm},
	{name: "rollback", summary: "restore the previous version and mark the new one bad",
		about: "Restores the version before the last update (swapped, or half-swapped) and\n" +
			"marks the new one bad: it is not offered again until a newer one.",
		flags: fRepo | fJSON,
		exits: []int{exitOK, exitError, exitUsage, exitLocalIO, exitBusy, exitInterrupted},
		run:   runRollback},
	{name: "status", summary: "show the installed version, the versions marked bad, a pending update",
		about: "Prints, without the network, the installed version as last detected or applied\n" +
			"(state.json in the backup directory), the version deltaup.json of the app\n" +
			"directory records when it differs, the versions marked bad and a pending\n" +
			"update. With --online it also fetches the signed manifest and hashes the app\n" +
			"directory against its releases: the version the files are, and the files\n" +
			"modified, missing or extra (the repository flags are needed only then).",
		flags:   fRepo | fJSON | fOnline,
		exits:   []int{exitOK, exitError, exitUsage, exitRefused, exitNetwork, exitLocalIO, exitInterrupted},
		offline: true,
		run:     runStatus},
	{name: "unmark", summary: "offer versions marked bad again",
		args:    "VERSION... | --all",
		posArgs: true,
		about: "Removes versions from those marked bad by a rollback (`deltaup status` and\n" +
			"`deltaup check` list them), so that check and update offer them again: after\n" +
			"the app was fixed to confirm, say. Needs no repository. A version that is not\n" +
			"marked bad is reported and left alone (exit 0).",
		flags:   fAppDir | fBackupDir | fJSON | fAll,
		exits:   []int{exitOK, exitError, exitUsage, exitLocalIO, exitBusy},
		offline: true,
		run:     runUnmark},
}

func findClientCommand(name string) *clientCommand {
	for _, c := range clientCommands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// clientFlags are the flags of the client commands; the same keys may
// come from deltaup.json in the app directory (flags win).
type clientFlags struct {
	appDir, backupDir, app, pubkey, current, channel, to string
	root, platform                                       string
	servers                                              []string
	relaunch                                             string
	limitRate                                            units.Rate
	json, yes, noReexec, help, trustShared, online, all  bool
	confirmTimeout                                       time.Duration
	invokedAs                                            string
	args                                                 []string // positional (posArgs)
}

// register defines on fs the flags of which (f* bits), in a fixed order.
func (c *clientFlags) register(fs *flag.FlagSet, which int) {
	strs := []struct {
		bit         int
		p           *string
		name, usage string
	}{
		{fAppDir, &c.appDir, "app-dir", "the application `DIR` (default: the directory of this executable)"},
		{fBackupDir, &c.backupDir, "backup-dir", "backup `DIR` (default: APPDIR.backup beside the app directory)"},
		{fServer, nil, "server", "repository base `URL`s, tried in order (comma-separated or repeated)"},
		{fPubkey, &c.pubkey, "pubkey", "minisign public key `FILE` of the publisher"},
		{fPubkey, &c.root, "root", "v2 repository: root document `FILE` shipped with the app (root/N.json; replaces --pubkey)"},
		{fApp, &c.app, "app", "application `NAME` in the manifest"},
		{fCurrent, &c.current, "current", "installed `VERSION` (default: found by hashing the app directory)"},
		{fChannel, &c.channel, "channel", "release `CHANNEL` (default stable)"},
		{fChannel, &c.platform, "platform", "build `OS-ARCH` followed in a repository of several platforms (default: this program's, else the platform-less build)"},
		{fTo, &c.to, "to", "target `VERSION` (default: the newest of the channel)"},
		{fRelaunch, &c.relaunch, "relaunch", "after the swap, start `PATH` (relative to the app dir; its arguments after --)"},
	}
	for _, f := range strs {
		switch {
		case which&f.bit == 0:
		case f.p == nil:
			fs.StringSliceVar(&c.servers, f.name, nil, f.usage)
		default:
			fs.StringVar(f.p, f.name, "", f.usage)
		}
	}
	if which&fLimitRate != 0 {
		fs.Var(&c.limitRate, "limit-rate", "cap downloads at `RATE` bytes/s: 200k, 1.5M (k M G: 1000), 200KiB (KiB MiB GiB: 1024), 1Mbit (bits)")
	}
	bools := []struct {
		bit                int
		p                  *bool
		name, short, usage string
	}{
		{fJSON, &c.json, "json", "", "print one JSON object per line instead of text"},
		{fYes, &c.yes, "yes", "y", "do not ask before downloading (never asked without a terminal)"},
		{fNoReexec, &c.noReexec, "no-reexec", "", "install in this process instead of re-executing from the backup directory"},
		{fTrustShared, &c.trustShared, "trust-shared-dirs", "", "update although other users can write the app directory or a directory above it (refused by default)"},
		{fOnline, &c.online, "online", "", "also fetch the manifest and hash the app directory against its releases"},
		{fAll, &c.all, "all", "", "every version marked bad"},
	}
	for _, f := range bools {
		if which&f.bit != 0 {
			fs.BoolVarP(f.p, f.name, f.short, false, f.usage)
		}
	}
	if which&fConfirmTimeout != 0 {
		fs.DurationVar(&c.confirmTimeout, "confirm-timeout", apply.DefaultConfirmTimeout, "how long the relaunched app has to confirm (deltaup confirm), a `DURATION` such as 90s or 5m")
	}
	if which&fInvokedAs != 0 {
		fs.StringVar(&c.invokedAs, "invoked-as", "", "the command the user ran (update), for messages")
		_ = fs.MarkHidden("invoked-as")
	}
	fs.BoolVarP(&c.help, "help", "h", false, "show this help")
}

// usage prints the help of the client command cmd.
func (cmd *clientCommand) usage(w io.Writer, fs *flag.FlagSet) {
	synopsis := "deltaup " + cmd.name + " [FLAGS]"
	if cmd.args != "" {
		synopsis += " " + cmd.args
	}
	fmt.Fprintf(w, "usage: %s\n\n%s\n\nflags:\n%s", synopsis, cmd.about, clihelp.FlagUsages(fs))
	if cmd.flags&fRepo == fRepo {
		fmt.Fprintf(w, "\nWhat the flags leave unset comes from %s in the app directory (keys app,\nservers, pubkey, root, platform, channel, backup_dir, relaunch, limit_rate);\nflags win.\n", apply.ConfigFileName)
	}
	fmt.Fprintf(w, "\n%s", exitStatusHelp(cmd.exits, cmd.name == "check"))
}

// parseClient parses the command line of cmd. done reports that the
// command should stop with code: after --help, or a usage error (reported
// on stderr in one line, and as a JSON error event with --json).
func parseClient(cmd *clientCommand, args []string, stdout, stderr io.Writer) (c *clientFlags, extra []string, code int, done bool) {
	fs := flag.NewFlagSet("deltaup "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	c = &clientFlags{}
	c.register(fs, cmd.flags)
	fail := func(err error) (*clientFlags, []string, int, bool) {
		r := &reporter{out: stdout, err: stderr, json: c.json || slices.Contains(args, "--json")}
		return nil, nil, r.fail(cmd.name, &usageError{fmt.Errorf("%w (see deltaup %s --help)", err, cmd.name)}), true
	}
	if err := fs.Parse(args); err != nil {
		return fail(err)
	}
	if c.help {
		cmd.usage(stdout, fs)
		return nil, nil, exitOK, true
	}
	pos := fs.Args()
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		pos, extra = pos[:dash], pos[dash:]
	}
	if len(pos) > 0 && !cmd.posArgs {
		return fail(fmt.Errorf("unexpected argument %q: %s takes flags only", pos[0], cmd.name))
	}
	if c.invokedAs != "" && c.invokedAs != "update" {
		return fail(fmt.Errorf("--invoked-as %q: only update re-executes resume", c.invokedAs))
	}
	if len(extra) > 0 && (cmd.flags&fRelaunch == 0 || c.relaunch == "") {
		what := "the arguments after -- are for --relaunch PATH, which is not given"
		if cmd.flags&fRelaunch == 0 {
			what = cmd.name + " takes no arguments after --"
		}
		return fail(fmt.Errorf("unexpected argument %q: %s", extra[0], what))
	}
	c.args = pos
	return c, extra, exitOK, false
}

// clientRun is one run of a client command.
type clientRun struct {
	ctx    context.Context // canceled by Ctrl-C
	cmd    *clientCommand
	flags  *clientFlags
	extra  []string // the relaunch arguments after --
	name   string   // the command to name in messages (--invoked-as, else cmd.name)
	r      *reporter
	stdout io.Writer
	stderr io.Writer
	stdin  *os.File

	// Set by setup for the commands that use the repository (fRepo).
	cfg *apply.Config
	d   *apply.Downloader
	u   *apply.Updater
}

// topUsage is deltaup --help.
func topUsage() string {
	var b strings.Builder
	b.WriteString("usage: deltaup COMMAND [FLAGS] [ARGS]\n" +
		"       deltaup --help | --version\n\n" +
		"Updates an application installed from a deltaup repository (signed manifest,\n" +
		"binary patches), and applies single patches and bundles made by mkdelta.\n\ncommands:\n")
	for _, c := range clientCommands {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(&b, "  %-9s %s\n", "patch", patchSummary)
	b.WriteString("\nRun `deltaup COMMAND --help` for the flags of each command.\n\n" +
		"flags:\n  -h, --help      show this help\n      --version   print the version of deltaup\n\n")
	b.WriteString(exitStatusHelp(nil, true))
	return b.String()
}
