package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	releasetools "github.com/deltaup/deltaup/release-tools"
)

func mkdeltaPrune(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("prune")
	fs := newFlags(name)
	repo := fs.String("repo", "", "repository `DIR` or URL (file:///DIR, s3://, gs://, azblob://; required)")
	keyPath := fs.String("key", "", "minisign secret key `FILE` (BASE.key; required): signs the new manifest")
	pwFile := fs.String("password-file", "", "the password of an encrypted --key, in `FILE`")
	keep := fs.Int("keep", 0, "keep the newest `N` releases of each channel (at least 1; required)")
	keepDays := fs.Int("keep-days", 0, "also keep every release published less than `D` days ago")
	dryRun := fs.BoolP("dry-run", "n", false, "list what would go; change nothing")
	validity := fs.Duration("validity", releasetools.DefaultValidity, "how long the new manifest stays valid, a `DURATION` such as 2160h")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	platform := platformFlag(fs, "prune the build of platform `OS-ARCH` (its directory of the repository) instead of the platform-less build; one platform per run")
	if code, done := parseFlags(cmd, name, fs, args, 0, stdout, stderr); done {
		return code
	}
	if m := missing(required{"--repo", *repo != ""}, required{"--key", *keyPath != ""}, required{"--keep", fs.Changed("keep")}); m != "" {
		return usageError(name, stderr, "need %s", m)
	}
	if *keep < 1 {
		return usageError(name, stderr, "--keep %d: keep at least the newest release (1)", *keep)
	}
	if *keepDays < 0 {
		return usageError(name, stderr, "--keep-days %d: give 0 (off) or more", *keepDays)
	}
	if *validity <= 0 {
		return usageError(name, stderr, "--validity %s: give a positive duration", *validity)
	}
	if code, bad := checkPlatformFlag(name, *platform, stderr); bad {
		return code
	}
	key, code, ok := readSecretKey(name, *keyPath, *pwFile, stderr)
	if !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var log io.Writer
	if !*quiet || *dryRun {
		log = stdout
	}
	res, err := releasetools.Prune(ctx, releasetools.PruneOptions{
		Repo: *repo, Key: key, Keep: *keep, KeepFor: time.Duration(*keepDays) * 24 * time.Hour,
		DryRun: *dryRun, Validity: *validity, Log: log, Platform: *platform,
	})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitFailure
	}
	if !*quiet || *dryRun {
		verb := "removed"
		if res.DryRun {
			verb = "would remove"
		}
		fmt.Fprintf(stdout, "%s %d releases and %d files (%d bytes); kept %d releases; repository %d -> %d bytes; manifest sequence %d\n",
			verb, len(res.Dropped), len(res.Deleted), res.DeletedBytes, len(res.Kept), res.BytesBefore, res.BytesAfter, res.Sequence)
	}
	return exitOK
}
