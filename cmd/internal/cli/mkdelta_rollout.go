package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// The release policy (v2): mkdelta rollout, and the policy flags of
// mkdelta publish.

func rolloutCommand() *mkCommand {
	return &mkCommand{name: "rollout", summary: "stage, halt, pull or annotate a release, set the minimum version (v2)",
		synopsis: "[FLAGS] --repo DIR|URL --key REL.key [--version V (--percent N|--halt|--resume|--pull|--unpull|--critical|--notes T|...)] [--minimum-version V]",
		about: "Issues the next release policy of a v2 repository (policy/SEQ.json, signed by\n" +
			"the release keys): for the release --version, the percentage of installs\n" +
			"offered it (--percent; each install's random id decides, and raising the\n" +
			"percentage keeps every install already in), --halt (offered to no one more;\n" +
			"--resume undoes it), --pull (never installed again, not even as a hop of a\n" +
			"patch route; installs on it are offered the next good release; --unpull),\n" +
			"--critical (offered to everyone whatever the percentage, shown as critical;\n" +
			"--no-critical), release notes (--notes, --notes-file, --notes-url; \"\"\n" +
			"clears). --minimum-version V: installs below V must update to at least V\n" +
			"(\"none\" clears). No new index, no new patch: with --timestamp-key the\n" +
			"clients see the change at their next check, else after the next\n" +
			"`mkdelta refresh`. Only v2 clients follow the policy; v1 clients install\n" +
			"every release at once. The policy expires like the index (--validity; each\n" +
			"publish renews it): publish, change it or run rollout --renew before it does.\n" +
			"A repository with platforms has one policy for all of them: a version's\n" +
			"settings apply to each platform's build of it, and the timestamp keeps\n" +
			"naming every platform's index.",
		exits: []exitCode{exitsOK, {exitFailure, "failure: a key or the repository cannot be read, too few release keys, the version\n       is not a release of any index, not a v2 repository, I/O"}, exitsUsage},
		run:   mkdeltaRollout}
}

// policyFlags are the per-release policy flags, shared by rollout and
// publish.
type policyFlags struct {
	fs                         *flag.FlagSet
	percent                    int
	critical                   bool
	notes, notesFile, notesURL string
	halt, resume, pull, unpull bool
	notCritical                bool
	publish                    bool
	percentFlag                string
}

// addPolicyFlags registers the flags; publish gets the subset that makes
// sense for a new release (--rollout, --critical, notes).
func addPolicyFlags(fs *flag.FlagSet, publish bool) *policyFlags {
	p := &policyFlags{fs: fs, publish: publish, percentFlag: "percent"}
	if publish {
		p.percentFlag = "rollout"
		fs.IntVar(&p.percent, "rollout", 100, "v2: offer the new release to `N` percent of installs (0..100; raise it later with mkdelta rollout)")
		fs.BoolVar(&p.critical, "critical", false, "v2: mark the new release critical: offered to every install, shown as critical")
	} else {
		fs.IntVar(&p.percent, "percent", 100, "offer the release to `N` percent of installs (0..100)")
		fs.BoolVar(&p.halt, "halt", false, "offer the release to no install any more (those on it keep it)")
		fs.BoolVar(&p.resume, "resume", false, "undo --halt")
		fs.BoolVar(&p.pull, "pull", false, "never install the release again; installs on it are offered the next good one")
		fs.BoolVar(&p.unpull, "unpull", false, "undo --pull")
		fs.BoolVar(&p.critical, "critical", false, "offer the release to every install whatever the percentage, shown as critical")
		fs.BoolVar(&p.notCritical, "no-critical", false, "undo --critical")
	}
	fs.StringVar(&p.notes, "notes", "", "release notes `TEXT` shown by deltaup check (at most 4 KiB; \"\" clears)")
	fs.StringVar(&p.notesFile, "notes-file", "", "release notes from `FILE`")
	fs.StringVar(&p.notesURL, "notes-url", "", "an https `URL` of the release notes (\"\" clears)")
	return p
}

// change returns the policy change the flags ask for (nil: none).
func (p *policyFlags) change() (*releasetools.PolicyChange, error) {
	ch := &releasetools.PolicyChange{Halt: p.halt, Resume: p.resume, Pull: p.pull, Unpull: p.unpull, Critical: p.critical, NotCritical: p.notCritical}
	if p.fs.Changed(p.percentFlag) {
		if p.percent < 0 || p.percent > manifest.FullRollout {
			return nil, fmt.Errorf("--%s %d: give a percentage from 0 to 100", p.percentFlag, p.percent)
		}
		if !(p.publish && p.percent == manifest.FullRollout) {
			ch.Percent = &p.percent
		}
	}
	if p.fs.Changed("notes") && p.notesFile != "" {
		return nil, fmt.Errorf("give --notes or --notes-file, not both")
	}
	if p.fs.Changed("notes") {
		ch.Notes = &p.notes
	}
	if p.notesFile != "" {
		b, err := os.ReadFile(p.notesFile)
		if err != nil {
			return nil, fmt.Errorf("--notes-file: %w", err)
		}
		s := string(b)
		for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
			s = s[:len(s)-1]
		}
		ch.Notes = &s
	}
	if p.fs.Changed("notes-url") {
		ch.NotesURL = &p.notesURL
	}
	if ch.Notes != nil && *ch.Notes != "" {
		if err := manifest.CheckNotes(*ch.Notes); err != nil {
			return nil, fmt.Errorf("--notes: %w", err)
		}
	}
	if ch.NotesURL != nil && *ch.NotesURL != "" {
		if err := manifest.CheckNotesURL(*ch.NotesURL); err != nil {
			return nil, fmt.Errorf("--notes-url: %w", err)
		}
	}
	if *ch == (releasetools.PolicyChange{}) {
		return nil, nil
	}
	return ch, nil
}

// readReleaseKeys reads --key, --extra-key and --timestamp-key (publish,
// rollout); code is the exit code when it fails, after the message.
func readReleaseKeys(name, keyPath string, extraPaths, tsPaths []string, pwFile string, stderr io.Writer) (key manifest.PrivateKey, extra, stamp []manifest.PrivateKey, code int, ok bool) {
	if key, code, ok = readSecretKey(name, keyPath, pwFile, stderr); !ok {
		return
	}
	if extra, code, ok = readKeys(name, extraPaths, pwFile, stderr); !ok {
		return
	}
	stamp, code, ok = readKeys(name, tsPaths, pwFile, stderr)
	return
}

func mkdeltaRollout(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("rollout")
	fs := newFlags(name)
	repo := fs.String("repo", "", "repository `DIR` or URL (file:///DIR, s3://, gs://, azblob://; required)")
	keyPath := fs.String("key", "", "release secret key `FILE` (required)")
	var extraKeys, tsKeys []string
	fs.StringArrayVar(&extraKeys, "extra-key", nil, "another release secret key `FILE` (repeat up to the release threshold)")
	fs.StringArrayVar(&tsKeys, "timestamp-key", nil, "timestamp secret key `FILE`: clients see the change at their next check (else after the next `mkdelta refresh`)")
	version := fs.String("version", "", "the release the settings apply to (`VERSION`, a release of the index)")
	pf := addPolicyFlags(fs, false)
	renew := fs.Bool("renew", false, "issue the next policy with no other change: a new expiry (--validity)")
	minimum := fs.String("minimum-version", "", "installs below `VERSION` must update to at least it (a release of the index; \"none\" clears)")
	pwFile := fs.String("password-file", "", "the password of encrypted keys, in `FILE`")
	validity := fs.Duration("validity", releasetools.DefaultValidity, "how long the new policy stays valid (`DURATION`)")
	tsValidity := fs.Duration("timestamp-validity", releasetools.DefaultTimestampValidity, "how long the timestamp stays valid (`DURATION`)")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	if code, done := parseFlags(cmd, name, fs, args, 0, stdout, stderr); done {
		return code
	}
	if m := missing(required{"--repo", *repo != ""}, required{"--key", *keyPath != ""}); m != "" {
		return usageError(name, stderr, "need %s", m)
	}
	ch, err := pf.change()
	if err != nil {
		return usageError(name, stderr, "%v", err)
	}
	if ch == nil {
		ch = &releasetools.PolicyChange{}
	}
	switch {
	case ch.Halt && ch.Resume, ch.Pull && ch.Unpull, ch.Critical && ch.NotCritical, ch.Pull && ch.Critical:
		return usageError(name, stderr, "contradictory flags: give one of --halt/--resume, --pull/--unpull, --critical/--no-critical, and never --pull with --critical")
	case *ch != (releasetools.PolicyChange{}) && *version == "":
		return usageError(name, stderr, "which release? need --version")
	case *ch == (releasetools.PolicyChange{}) && !fs.Changed("minimum-version") && !*renew:
		return usageError(name, stderr, "nothing to change: give --version with --percent, --halt, --resume, --pull, --unpull, --critical, --no-critical or notes, or --minimum-version, or --renew")
	case *validity <= 0 || *tsValidity <= 0:
		return usageError(name, stderr, "--validity and --timestamp-validity must be positive")
	}
	ch.Renew = *renew
	if *version != "" {
		v, err := manifest.NormalizeVersion(*version)
		if err != nil {
			return usageError(name, stderr, "--version: %v", err)
		}
		ch.Version = v
	}
	if fs.Changed("minimum-version") {
		mv := *minimum
		if mv == "none" {
			mv = ""
		} else if mv, err = manifest.NormalizeVersion(mv); err != nil {
			return usageError(name, stderr, "--minimum-version: %v (or \"none\")", err)
		}
		ch.MinimumVersion = &mv
	}
	if !releasetools.IsRemote(*repo) && !repoDirOK(name, *repo, stderr) {
		return exitFailure
	}
	key, extra, stamp, code, ok := readReleaseKeys(name, *keyPath, extraKeys, tsKeys, *pwFile, stderr)
	if !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var log io.Writer
	if !*quiet {
		log = stdout
	}
	if _, err := releasetools.SetPolicy(ctx, *ch, releasetools.PolicyOptions{Repo: *repo, Keys: append([]manifest.PrivateKey{key}, extra...),
		TimestampKeys: stamp, Validity: *validity, TimestampValidity: *tsValidity, Log: log, Now: time.Now}); err != nil {
		return rolesFailed(name, err, stderr)
	}
	return exitOK
}
