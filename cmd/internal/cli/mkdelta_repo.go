package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"aead.dev/minisign"
	"github.com/deltaup/deltaup/manifest"
	releasetools "github.com/deltaup/deltaup/release-tools"
)

// readPassword reads the password of --password-file: its first line.
func readPassword(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--password-file: %w", err)
	}
	pw := []byte(strings.TrimRight(string(b), "\r\n"))
	if len(pw) == 0 {
		return nil, fmt.Errorf("--password-file %s is empty: write the password into it", file)
	}
	return pw, nil
}

// passwordFileHowTo says how to make a password file, for the messages
// that ask for one.
const passwordFileHowTo = "a file holding the password on one line, readable only by you: (umask 077; read -rs p && printf '%s\\n' \"$p\" > FILE)"

func mkdeltaKeygen(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("keygen")
	fs := newFlags(name)
	base := fs.StringP("output", "o", "", "write `BASE`.key and BASE.pub (required)")
	pwFile := fs.String("password-file", "", "encrypt the secret key with the password in `FILE` (its first line; default: unencrypted, for CI)")
	if code, done := parseFlags(cmd, name, fs, args, 0, stdout, stderr); done {
		return code
	}
	if *base == "" {
		return usageError(name, stderr, "need -o BASE")
	}
	var pw []byte
	if *pwFile != "" {
		var err error
		if pw, err = readPassword(*pwFile); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return exitFailure
		}
	}
	pub, err := manifest.WriteKeyFiles(*base, pw)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "wrote %s.key and %s.pub (key ID %s)\n", *base, *base, pub.ID())
	return exitOK
}

// readSecretKey reads the secret key at keyPath, with the password in
// pwFile ("" for none); code is the exit code when it fails, after the
// message on stderr.
func readSecretKey(name, keyPath, pwFile string, stderr io.Writer) (key manifest.PrivateKey, code int, ok bool) {
	text, err := os.ReadFile(keyPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: --key: %v\n", name, err)
		return key, exitFailure, false
	}
	var pw []byte
	switch enc := minisign.IsEncrypted(text); {
	case enc && pwFile == "":
		fmt.Fprintf(stderr, "%s: the secret key %s is encrypted: give its password with --password-file FILE, %s\n", name, keyPath, passwordFileHowTo)
		return key, exitUsage, false
	case !enc && pwFile != "":
		fmt.Fprintf(stderr, "%s: the secret key %s is not encrypted: drop --password-file\n", name, keyPath)
		return key, exitUsage, false
	case enc:
		if pw, err = readPassword(pwFile); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return key, exitFailure, false
		}
	}
	if key, err = manifest.ParsePrivateKey(text, pw); err != nil {
		fmt.Fprintf(stderr, "%s: %s: %v\n", name, keyPath, err)
		return key, exitFailure, false
	}
	return key, exitOK, true
}

func mkdeltaPublish(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("publish")
	fs := newFlags(name)
	repo := fs.String("repo", "", "repository `DIR` or URL: a directory (created when missing), file:///DIR, s3://BUCKET/PREFIX?region=R[&endpoint=URL&use_path_style=true], gs://BUCKET/PREFIX, azblob://CONTAINER/PREFIX (required)")
	app := fs.String("app", "", "application `NAME` (required)")
	version := fs.String("version", "", "semantic `VERSION` of the new release, like 1.2.3 or 1.3.0-rc.1; v1.2.3 is read as 1.2.3 (required)")
	channel := fs.String("channel", releasetools.DefaultChannel, "release `CHANNEL`")
	keyPath := fs.String("key", "", "minisign secret key `FILE` (BASE.key; required)")
	pwFile := fs.String("password-file", "", "the password of an encrypted --key, in `FILE`")
	allowOlder := fs.Bool("allow-older", false, "publish a version lower than the newest of the channel (a fix for an older line; clients on the newest never install it)")
	patchesFrom := fs.Int("patches-from", releasetools.DefaultPatchesFrom, "make patches from the `N` closest lower versions of the channel (0: none)")
	milestones := fs.Bool("milestones", true, "also make patches from the versions 4, 8, 16, … positions below when the new version's position is a multiple of that distance (log-many hops for clients far behind; --milestones=false: none)")
	noSolid := fs.Bool("no-solid", false, "write per-file (version 1) bundles only, for clients older than tree-wide matching (they refuse version 2 and download the full archive)")
	portable := fs.Bool("portable-modes", false, "record only the permission bits every OS keeps (files 0644/0444, directories 0755/0555): required for Windows builds, wrong for others (executables lose their exec bit)")
	validity := fs.Duration("validity", releasetools.DefaultValidity, "how long the new manifest stays valid, a `DURATION` such as 2160h")
	platform := platformFlag(fs, "publish into the platform's directory of the repository, `OS-ARCH` such as linux-amd64, windows-amd64, darwin-arm64 (windows-…: --portable-modes implied; default: the platform-less build)")
	var extraKeys, tsKeys []string
	fs.StringArrayVar(&extraKeys, "extra-key", nil, "v2: another release secret key `FILE` (repeat up to the release threshold)")
	fs.StringArrayVar(&tsKeys, "timestamp-key", nil, "v2: timestamp secret key `FILE` that shows the release to clients at once (else after the next `mkdelta refresh`)")
	tsValidity := fs.Duration("timestamp-validity", releasetools.DefaultTimestampValidity, "v2: how long the timestamp stays valid (`DURATION`)")
	pf := addPolicyFlags(fs, true)
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	if code, done := parseFlags(cmd, name, fs, args, 1, stdout, stderr); done {
		return code
	}
	policy, err := pf.change()
	if err != nil {
		return usageError(name, stderr, "%v", err)
	}
	if m := missing(required{"--repo", *repo != ""}, required{"--app", *app != ""}, required{"--version", *version != ""},
		required{"--key", *keyPath != ""}, required{"NEW_DIR", fs.NArg() == 1}); m != "" {
		return usageError(name, stderr, "need %s", m)
	}
	v, err := manifest.NormalizeVersion(*version)
	if err != nil {
		return usageError(name, stderr, "--version: %v", err)
	}
	if *patchesFrom < 0 {
		return usageError(name, stderr, "--patches-from %d: give 0 (no patches) or more", *patchesFrom)
	}
	if code, bad := checkPlatformFlag(name, *platform, stderr); bad {
		return code
	}
	key, extra, stamp, code, ok := readReleaseKeys(name, *keyPath, extraKeys, tsKeys, *pwFile, stderr)
	if !ok {
		return code
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
		Repo: *repo, App: *app, Version: v, Channel: *channel, Key: key, AllowOlder: *allowOlder,
		PatchesFrom: n, NoMilestones: !*milestones, PortableModes: *portable, NoSolid: *noSolid, Platform: *platform, Validity: *validity, Log: log,
		ExtraKeys: extra, TimestampKeys: stamp, TimestampValidity: *tsValidity, Policy: policy,
	})
	if err != nil {
		msg := err.Error()
		if errors.Is(err, releasetools.ErrOlder) {
			msg += ": pass --allow-older to publish it anyway"
		}
		fmt.Fprintf(stderr, "%s: %s\n", name, msg)
		return exitFailure
	}
	if !*quiet {
		if res.Unchanged {
			fmt.Fprintf(stdout, "%s %s: already published with this tree (manifest sequence %d)\n", *app, v, res.Sequence)
		} else {
			fmt.Fprintf(stdout, "%s %s published: %d archives, %d patches, manifest sequence %d, in %.2fs\n",
				*app, v, len(res.Release.Archives), len(res.Release.Patches), res.Sequence, res.Took.Seconds())
		}
	}
	return exitOK
}

func mkdeltaVerify(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("verify")
	fs := newFlags(name)
	repo := fs.String("repo", "", "repository `DIR` or URL (file:///DIR, s3://, gs://, azblob://; required)")
	pubPath := fs.String("pubkey", "", "minisign public key `FILE` (BASE.pub; required)")
	app := fs.String("app", "", "require this application `NAME`")
	verbose := fs.BoolP("verbose", "v", false, "print every artifact checked")
	platform := platformFlag(fs, "verify the build of platform `OS-ARCH` (its directory of the repository) instead of the platform-less build; one platform per run")
	if code, done := parseFlags(cmd, name, fs, args, 0, stdout, stderr); done {
		return code
	}
	if m := missing(required{"--repo", *repo != ""}, required{"--pubkey", *pubPath != ""}); m != "" {
		return usageError(name, stderr, "need %s", m)
	}
	if code, bad := checkPlatformFlag(name, *platform, stderr); bad {
		return code
	}
	if !releasetools.IsRemote(*repo) {
		dir, err := releasetools.LocalPath(*repo)
		if err == nil {
			var fi os.FileInfo
			if fi, err = os.Stat(dir); err == nil && !fi.IsDir() {
				err = errors.New("not a directory")
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: --repo %s: %v\n", name, *repo, err)
			return exitFailure
		}
	}
	text, err := os.ReadFile(*pubPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: --pubkey: %v\n", name, err)
		return exitFailure
	}
	pub, err := manifest.ParsePublicKey(text)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s: %v\n", name, *pubPath, err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := releasetools.VerifyOptions{App: *app, Platform: *platform}
	if *verbose {
		opts.Log = stdout
	}
	start := time.Now()
	rep, err := releasetools.Verify(ctx, *repo, pub, opts)
	if err != nil {
		if errors.Is(err, releasetools.ErrRepo) {
			fmt.Fprintf(stderr, "%s: %s\n", name, strings.TrimPrefix(err.Error(), "releasetools: repository problem: "))
			return exitRepoBad
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitFailure
	}
	var faulty []string
	for _, f := range rep.Faults {
		fmt.Fprintf(stderr, "%s: FAULT %s\n", name, f)
		faulty = append(faulty, f.Path)
	}
	for _, s := range rep.Strays {
		if !slices.Contains(faulty, s) {
			fmt.Fprintf(stderr, "%s: warning: %s is no part of the repository, yet a static host serves it: remove it\n", name, s)
		}
	}
	for _, o := range rep.Orphans {
		fmt.Fprintf(stdout, "note: %s is not referenced by any release (left by an interrupted publish?)\n", o)
	}
	if !rep.OK() {
		return exitRepoBad
	}
	for _, v := range rep.NoRoute {
		fmt.Fprintf(stdout, "note: no chain of patches takes %s to the newest release of its channel: its clients download the full archive\n", v)
	}
	what := rep.App
	if *platform != "" {
		what += " " + *platform
	} else if note := releasetools.PlatformsNote(ctx, *repo); note != "" {
		fmt.Fprintf(stdout, "note: %s\n", note)
	}
	fmt.Fprintf(stdout, "%s: sequence %d, %d releases, %d archives, %d patches verified, valid until %s (%.2fs)\n",
		what, rep.Sequence, rep.Releases, rep.Archives, rep.Patches, rep.Expires.Format(time.RFC3339), time.Since(start).Seconds())
	return exitOK
}
