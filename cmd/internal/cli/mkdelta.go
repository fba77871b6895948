package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/deltaup/deltaup/cmd/internal/cli/clihelp"
	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
	flag "github.com/spf13/pflag"
)

// Version is what mkdelta --version prints; the linker may set it
// (-ldflags "-X github.com/deltaup/deltaup/cmd/internal/cli.Version=1.2.3").
// When empty, the module version or VCS revision of the build is used.
var Version string

// Exit codes of mkdelta (mkdelta --help and the README list them).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitRepoBad = 3 // verify: the repository failed a check
)

// exitCode is an exit code and what it means, for a help text.
type exitCode struct {
	code    int
	meaning string
}

var (
	exitsOK    = exitCode{exitOK, "success"}
	exitsUsage = exitCode{exitUsage, "usage: unknown command or flag, bad flag value, missing or stray argument"}
	// exitsAll is for mkdelta --help; the commands list their own.
	exitsAll = []exitCode{exitsOK,
		{exitFailure, "failure: a file could not be read or written, a publish was refused"},
		{exitUsage, "usage: unknown command or flag, bad flag value, missing or stray argument, an\n       encrypted key without --password-file"},
		{exitRepoBad, "verify: the repository failed a check"},
	}
)

// exitHelp formats exit codes for a help text.
func exitHelp(codes []exitCode) string {
	var b strings.Builder
	b.WriteString("exit status:\n")
	for _, c := range codes {
		fmt.Fprintf(&b, "  %-4d %s\n", c.code, c.meaning)
	}
	return b.String()
}

// mkCommand is one form of mkdelta.
type mkCommand struct {
	name     string
	summary  string // one line, for mkdelta --help
	synopsis string // after "mkdelta NAME "
	about    string // for mkdelta NAME --help
	exits    []exitCode
	run      func(name string, args []string, stdout, stderr io.Writer) int
}

var mkCommands []*mkCommand

func init() {
	// Set here, not in the declaration: the run functions print the
	// commands' help, which refers to mkCommands.
	mkCommands = []*mkCommand{
		{name: "diff", summary: "diff two files into a patch, or two directory trees into a bundle (the default form)",
			synopsis: "[FLAGS] OLD NEW -o PATCH\n       mkdelta diff [FLAGS] OLD_DIR NEW_DIR -o BUNDLE",
			about: "Diffs two files into a patch that `deltaup patch` (or bspatch, for bsdiff40)\n" +
				"applies, or two directory trees into one bundle (native patches per file,\n" +
				"renames and unchanged files free) that `deltaup patch OLD_DIR BUNDLE -o NEW_DIR`\n" +
				"applies. `mkdelta OLD NEW -o PATCH` is the same command without its name.\n" +
				"The patch is written atomically: on failure nothing is left at -o.",
			exits: []exitCode{exitsOK, {exitFailure, "failure: a file could not be read or written, or is not a regular file"}, exitsUsage},
			run:   mkdeltaDiff},
		{name: "keygen", summary: "make the minisign key pair that signs a repository",
			synopsis: "[FLAGS] -o BASE",
			about: "Writes a minisign key pair: BASE.key (secret, mode 0600) and BASE.pub (ship it\n" +
				"with the app). With --password-file the secret key is encrypted (scrypt: 1 GiB\n" +
				"of memory and a few seconds on every use); publish then needs the same file.",
			exits: []exitCode{exitsOK, {exitFailure, "failure: BASE.key or BASE.pub exists, or cannot be written"}, exitsUsage},
			run:   mkdeltaKeygen},
		{name: "publish", summary: "add a release to a repository: archives, patches, a new signed manifest",
			synopsis: "[FLAGS] --repo DIR|URL --app NAME --version V --key BASE.key NEW_DIR",
			about: "Adds the tree NEW_DIR to the repository as version V (v1.2.3 is read as\n" +
				"1.2.3): full archives, patches from the closest older versions of the\n" +
				"channel, a new signed manifest. Republishing a version with the same tree does\n" +
				"nothing; another tree, or a version lower than the newest of the channel\n" +
				"(without --allow-older), is refused before anything is written. The lock\n" +
				"DIR.deltaup-lock lives beside the repository, so the directory holding DIR must\n" +
				"be writable; serve DIR itself. A bucket URL (s3://BUCKET/PREFIX?region=R,\n" +
				"gs://, azblob://; credentials from the environment, e.g. AWS_ACCESS_KEY_ID and\n" +
				"AWS_SECRET_ACCESS_KEY) takes the lease object PREFIX.deltaup-lock/N instead,\n" +
				"created with If-None-Match: *, and writes artifacts, file lists, the manifest's\n" +
				"history copy, its signature and the manifest, in that order.",
			exits: []exitCode{exitsOK,
				{exitFailure, "failure: the version exists with another tree or is older (see --allow-older),\n       another publish runs, the repository does not verify with this key, I/O"},
				{exitUsage, "usage: unknown flag, bad flag value (--version not semver), missing or stray\n       argument, an encrypted --key without --password-file"}},
			run: mkdeltaPublish},
		{name: "prune", summary: "remove old releases and every archive and patch no kept release needs",
			synopsis: "[FLAGS] --repo DIR|URL --key BASE.key --keep N",
			about: "Keeps the newest N releases of each channel (and, with --keep-days, every\n" +
				"release published less than D days ago), plus any release a kept one's\n" +
				"shortest chain of patches to the newest passes through; removes the others\n" +
				"from the manifest, signs and installs the new manifest, and only then deletes\n" +
				"the archives, patches, file lists and frame indexes that no kept release\n" +
				"refers to. Clients on a removed version download the newest full archive.\n" +
				"--dry-run lists what would go and changes nothing.",
			exits: []exitCode{exitsOK,
				{exitFailure, "failure: the repository does not verify with this key, another publish runs, I/O"},
				{exitUsage, "usage: unknown flag, bad flag value (--keep below 1), missing or stray argument,\n       an encrypted --key without --password-file"}},
			run: mkdeltaPrune},
		{name: "verify", summary: "check a repository end to end: signature, hashes, every archive and patch rebuilt",
			synopsis: "[FLAGS] --repo DIR|URL --pubkey BASE.pub",
			about: "Checks the manifest's signature and expiry, every artifact's size and hash, and\n" +
				"that every archive and patch rebuilds exactly the tree the manifest lists.\n" +
				"Warns about files in DIR outside the repository layout (a static host serves\n" +
				"them too), and fails on a secret key among them. Notes every release that no\n" +
				"chain of patches takes to the newest of its channel. Changes nothing.",
			exits: []exitCode{exitsOK, {exitFailure, "failure: --repo or --pubkey cannot be read"}, exitsUsage,
				{exitRepoBad, "the repository failed a check: signature, expiry, size, hash, rebuild, a secret\n       key in it"}},
			run: mkdeltaVerify},
	}
	mkCommands = append(mkCommands, rolesCommands()...)
	mkCommands = append(mkCommands, rolloutCommand())
}

func findMkCommand(name string) *mkCommand {
	for _, c := range mkCommands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// commandWord matches what can only be meant as a command name, not a file
// (when no file of that name exists).
var commandWord = regexp.MustCompile(`^[A-Za-z][A-Za-z_-]*$`)

// Mkdelta runs `mkdelta ARGS...` and returns its exit code.
func Mkdelta(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return mkdeltaDiff("mkdelta", args, stdout, stderr)
	}
	if cmd := findMkCommand(args[0]); cmd != nil {
		return cmd.run("mkdelta "+cmd.name, args[1:], stdout, stderr)
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 {
			if cmd := findMkCommand(args[1]); cmd != nil {
				return cmd.run("mkdelta "+cmd.name, []string{"--help"}, stdout, stderr)
			}
			return unknownMkCommand(args[1], stderr)
		}
		fmt.Fprint(stdout, mkdeltaUsage())
		return exitOK
	case "--version", "-V", "version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "mkdelta: unexpected argument %q after %s; see mkdelta --help\n", args[1], args[0])
			return exitUsage
		}
		fmt.Fprintf(stdout, "mkdelta %s\n", buildVersion())
		return exitOK
	}
	if commandWord.MatchString(args[0]) {
		if _, err := os.Lstat(args[0]); errors.Is(err, os.ErrNotExist) {
			return unknownMkCommand(args[0], stderr)
		}
	}
	return mkdeltaDiff("mkdelta", args, stdout, stderr)
}

func unknownMkCommand(name string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "mkdelta: unknown command %q; see mkdelta --help\n", name)
	return exitUsage
}

// mkdeltaUsage is mkdelta --help.
func mkdeltaUsage() string {
	var b strings.Builder
	b.WriteString("usage: mkdelta [FLAGS] OLD NEW -o PATCH          (mkdelta diff)\n" +
		"       mkdelta COMMAND [FLAGS] [ARGS]\n" +
		"       mkdelta --help | --version\n\n" +
		"The release side of deltaup: makes the patches and bundles that deltaup applies,\n" +
		"and publishes releases into a repository that any static web host can serve.\n\ncommands:\n")
	for _, c := range mkCommands {
		fmt.Fprintf(&b, "  %-8s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun `mkdelta COMMAND --help` for the flags of each command.\n\n" +
		"flags:\n  -h, --help      show this help\n      --version   print the version of mkdelta\n\n")
	b.WriteString(exitHelp(exitsAll))
	return b.String()
}

// buildVersion returns Version, or what the build info knows.
func buildVersion() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (built without module information)"
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		vcs[s.Key] = s.Value
	}
	v := "devel"
	if rev := vcs["vcs.revision"]; rev != "" {
		v += " " + rev[:min(len(rev), 12)]
		if vcs["vcs.modified"] == "true" {
			v += "-dirty"
		}
	}
	return v + " (" + bi.GoVersion + ")"
}

// newFlags returns the flag set of a command run as name; parseFlags
// reports its errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return fs
}

// parseFlags parses the command line of cmd (run as name: "mkdelta" for
// the diff form without its name). done reports that the command should
// stop with code: after --help (printed on stdout), or a usage error
// (reported on stderr in one line). When maxArgs >= 0, more positional
// arguments than that are a usage error naming the first stray one.
func parseFlags(cmd *mkCommand, name string, fs *flag.FlagSet, args []string, maxArgs int, stdout, stderr io.Writer) (code int, done bool) {
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return usageError(name, stderr, "%v", err), true
	}
	if *help {
		fmt.Fprintf(stdout, "usage: mkdelta %s %s\n\n%s\n\nflags:\n%s\n%s", cmd.name, cmd.synopsis, cmd.about, clihelp.FlagUsages(fs), exitHelp(cmd.exits))
		return exitOK, true
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		return usageError(name, stderr, "unexpected argument %q", fs.Arg(maxArgs)), true
	}
	return exitOK, false
}

// usageError reports a usage error of the command run as name, pointing to
// its help, and returns exitUsage.
func usageError(name string, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s (see %s --help)\n", name, fmt.Sprintf(format, args...), name)
	return exitUsage
}

// required is a flag or argument a command needs, and whether it is given.
type required struct {
	name  string
	given bool
}

// missing names the required flags and arguments not given ("--app and
// NEW_DIR"), or returns "" when all are.
func missing(reqs ...required) string {
	var names []string
	for _, r := range reqs {
		if !r.given {
			names = append(names, r.name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// mkdeltaDiff runs `mkdelta [diff] OLD NEW -o PATCH`.
func mkdeltaDiff(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("diff")
	fs := newFlags(name)
	out := fs.StringP("output", "o", "", "write the patch (or bundle) to `PATCH` (required)")
	format := fs.String("format", "native", "patch `FORMAT` of two files: native, or bsdiff40 (classic bsdiff/bspatch)")
	workers := fs.Int("workers", 0, "`N` goroutines scan the new file (0: one per core)")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	if code, done := parseFlags(cmd, name, fs, args, 2, stdout, stderr); done {
		return code
	}
	if fs.NArg() != 2 || *out == "" {
		return usageError(name, stderr, "need OLD and NEW and -o PATCH")
	}
	f, err := delta.ParseFormat(*format)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitUsage
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
			fmt.Fprintf(stderr, "%s: %s is a directory but %s is not: give two files, or two directories for a bundle\n", name, oldPath, newPath)
			return exitFailure
		}
		if nerr == nil {
			if f != delta.FormatNative {
				fmt.Fprintf(stderr, "%s: --format %s is for single files; two directories make a native bundle\n", name, f)
				return exitUsage
			}
			return mkdeltaBundle(ctx, name, oldPath, newPath, *out, *workers, *quiet, stdout, stderr)
		}
	}
	start := time.Now()
	st, err := delta.DiffFile(ctx, oldPath, newPath, *out, &delta.DiffOptions{Format: f, Workers: *workers})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitFailure
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
	return exitOK
}

// mkdeltaBundle diffs two directory trees into a bundle.
func mkdeltaBundle(ctx context.Context, name, oldDir, newDir, out string, workers int, quiet bool, stdout, stderr io.Writer) int {
	// The bundle's temporary file must not land in a tree being scanned.
	for _, dir := range []string{oldDir, newDir} {
		if tree.Inside(out, dir) {
			fmt.Fprintf(stderr, "%s: -o %s is inside %s: write the bundle outside both trees\n", name, out, dir)
			return exitUsage
		}
	}
	start := time.Now()
	st, err := delta.DiffBundleFile(ctx, oldDir, newDir, out, &delta.BundleOptions{Workers: workers})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitFailure
	}
	if !quiet {
		ratio := 0.0
		if st.NewSize > 0 {
			ratio = 100 * float64(st.BundleSize) / float64(st.NewSize)
		}
		c := st.BundleCounts
		solid := "" // version 2 bundles only (tree-wide matching)
		if c.Solid > 0 {
			solid = fmt.Sprintf(", %d solid", c.Solid)
		}
		fmt.Fprintf(stdout, "%s: %d bytes (%.2f%% of new tree %d bytes in %d files; old %d bytes) bundle: %d unchanged, %d copied, %d patched, %d new%s, %d dirs, %d symlinks, %d removed; patches %d bytes, in %.2fs\n",
			out, st.BundleSize, ratio, st.NewSize, c.Files(), st.OldSize,
			c.Unchanged, c.Copied, c.Patched, c.New, solid, c.Dirs, c.Symlinks, c.Removed, st.PayloadSize, time.Since(start).Seconds())
	}
	return exitOK
}
