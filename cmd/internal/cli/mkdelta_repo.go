package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
	flag "github.com/spf13/pflag"
)

// mkdeltaSubcommand runs `mkdelta keygen|publish|verify ...`; ok is false
// when args[0] names no subcommand.
func mkdeltaSubcommand(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "keygen":
		return mkdeltaKeygen(args[1:], stdout, stderr), true
	case "publish":
		return mkdeltaPublish(args[1:], stdout, stderr), true
	case "verify":
		return mkdeltaVerify(args[1:], stdout, stderr), true
	}
	return 0, false
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

func readPassword(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pw := []byte(strings.TrimRight(string(b), "\r\n"))
	if len(pw) == 0 {
		return nil, fmt.Errorf("password file %s is empty", file)
	}
	return pw, nil
}

func mkdeltaKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkdelta keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.StringP("output", "o", "", "write `BASE`.key and BASE.pub (required)")
	pwFile := fs.String("password-file", "", "encrypt the secret key with the password in `FILE` (default: unencrypted, for CI)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mkdelta keygen -o BASE [--password-file FILE]\n\nWrites a minisign key pair: BASE.key (secret, mode 0600) and BASE.pub.\n\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args, stderr); done {
		return code
	}
	if *base == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "mkdelta keygen: need -o BASE and no other arguments (see mkdelta keygen --help)")
		return 2
	}
	pw, err := readPassword(*pwFile)
	if err != nil {
		fmt.Fprintln(stderr, "mkdelta keygen:", err)
		return 1
	}
	pub, err := manifest.WriteKeyFiles(*base, pw)
	if err != nil {
		fmt.Fprintln(stderr, "mkdelta keygen:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s.key and %s.pub (key ID %s)\n", *base, *base, pub.ID())
	return 0
}

func mkdeltaPublish(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkdelta publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	repo := fs.String("repo", "", "repository `DIR` (created when missing; required)")
	app := fs.String("app", "", "application `NAME` (required)")
	version := fs.String("version", "", "semantic `VERSION` of the new release (required)")
	channel := fs.String("channel", releasetools.DefaultChannel, "release `CHANNEL`")
	keyPath := fs.String("key", "", "minisign secret key `FILE` (BASE.key; required)")
	pwFile := fs.String("password-file", "", "password of an encrypted key, in `FILE`")
	patchesFrom := fs.Int("patches-from", releasetools.DefaultPatchesFrom, "make patches from the `N` closest lower versions of the channel (0: none)")
	portable := fs.Bool("portable-modes", false, "record only the permission bits every OS keeps (files 0644/0444, directories 0755/0555): required for Windows builds, wrong for others (executables lose their exec bit)")
	milestones := fs.Bool("milestones", true, "also make patches from the versions 4, 8, 16, … positions below when the new version's position is a multiple of that distance (log-many hops for clients far behind)")
	validity := fs.Duration("validity", releasetools.DefaultValidity, "how long the new manifest stays valid")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mkdelta publish --repo DIR --app NAME --version V [--channel stable] --key BASE.key [--patches-from N] [--milestones=false] [--portable-modes] NEW_DIR\n\nAdds the tree NEW_DIR to the repository: full archives, patches, a new signed manifest.\n\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args, stderr); done {
		return code
	}
	if fs.NArg() != 1 || *repo == "" || *app == "" || *version == "" || *keyPath == "" {
		fmt.Fprintln(stderr, "mkdelta publish: need --repo, --app, --version, --key and NEW_DIR (see mkdelta publish --help)")
		return 2
	}
	pw, err := readPassword(*pwFile)
	if err != nil {
		fmt.Fprintln(stderr, "mkdelta publish:", err)
		return 1
	}
	keyText, err := os.ReadFile(*keyPath)
	if err != nil {
		fmt.Fprintln(stderr, "mkdelta publish:", err)
		return 1
	}
	key, err := manifest.ParsePrivateKey(keyText, pw)
	if err != nil {
		fmt.Fprintf(stderr, "mkdelta publish: %s: %v\n", *keyPath, err)
		return 1
	}
	n := *patchesFrom
	if n == 0 {
		n = -1 // none
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var log io.Writer
	if !*quiet {
		log = stdout
	}
	res, err := releasetools.Publish(ctx, fs.Arg(0), releasetools.PublishOptions{
		Repo: *repo, App: *app, Version: *version, Channel: *channel, Key: key,
		PatchesFrom: n, NoMilestones: !*milestones, PortableModes: *portable, Validity: *validity, Log: log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "mkdelta publish: %v\n", err)
		return 1
	}
	if !*quiet {
		if res.Unchanged {
			fmt.Fprintf(stdout, "%s %s: already published with this tree (manifest sequence %d)\n", *app, *version, res.Sequence)
		} else {
			fmt.Fprintf(stdout, "%s %s published: %d archives, %d patches, manifest sequence %d, in %.2fs\n",
				*app, *version, len(res.Release.Archives), len(res.Release.Patches), res.Sequence, res.Took.Seconds())
		}
	}
	return 0
}

func mkdeltaVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkdelta verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	repo := fs.String("repo", "", "repository `DIR` (required)")
	pubPath := fs.String("pubkey", "", "minisign public key `FILE` (BASE.pub; required)")
	app := fs.String("app", "", "require this application `NAME`")
	verbose := fs.BoolP("verbose", "v", false, "print every artifact checked")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mkdelta verify --repo DIR --pubkey BASE.pub\n\nChecks the signature, every artifact's size and hash, and that every archive and patch rebuilds exactly the tree the manifest lists.\n\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args, stderr); done {
		return code
	}
	if fs.NArg() != 0 || *repo == "" || *pubPath == "" {
		fmt.Fprintln(stderr, "mkdelta verify: need --repo and --pubkey (see mkdelta verify --help)")
		return 2
	}
	text, err := os.ReadFile(*pubPath)
	if err != nil {
		fmt.Fprintln(stderr, "mkdelta verify:", err)
		return 1
	}
	pub, err := manifest.ParsePublicKey(text)
	if err != nil {
		fmt.Fprintf(stderr, "mkdelta verify: %s: %v\n", *pubPath, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := releasetools.VerifyOptions{App: *app}
	if *verbose {
		opts.Log = stdout
	}
	start := time.Now()
	rep, err := releasetools.Verify(ctx, *repo, pub, opts)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, releasetools.ErrRepo) {
			msg = strings.TrimPrefix(msg, "releasetools: repository problem: ")
		}
		fmt.Fprintf(stderr, "mkdelta verify: %s\n", msg)
		return 1
	}
	for _, f := range rep.Faults {
		fmt.Fprintf(stderr, "mkdelta verify: FAULT %s\n", f)
	}
	for _, o := range rep.Orphans {
		fmt.Fprintf(stdout, "note: %s is not referenced by any release (left by an interrupted publish?)\n", o)
	}
	if !rep.OK() {
		return 1
	}
	fmt.Fprintf(stdout, "%s: sequence %d, %d releases, %d archives, %d patches verified, valid until %s (%.2fs)\n",
		rep.App, rep.Sequence, rep.Releases, rep.Archives, rep.Patches, rep.Expires.Format(time.RFC3339), time.Since(start).Seconds())
	return 0
}
