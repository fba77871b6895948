package cli

import (
	"context"
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

// Repository v2 commands: migrate, key, refresh.

func rolesCommands() []*mkCommand {
	failure := exitCode{exitFailure, "failure: a key or the repository cannot be read, too few keys for a threshold,\n       the repository is not in the state the command needs, another publish or\n       key command holds the lock (lease), I/O"}
	return []*mkCommand{
		{name: "migrate", summary: "turn a repository into a v2 one: root keys, thresholds, a timestamp",
			synopsis: "[FLAGS] --repo DIR|URL --root-key F --release-key F --timestamp-key F",
			about: "Writes root/1.json, the repository's first root document: the public keys and\n" +
				"the threshold of each role (root, release, timestamp), signed by the root keys.\n" +
				"Signs the current index with the release keys (one of them must be the key the\n" +
				"repository is signed with today) and issues a first timestamp. Ship\n" +
				"DIR/root/1.json with the application (\"root\" in deltaup.json). v1 clients keep\n" +
				"working. Each --*-key flag may be repeated; the thresholds default to 1.\n" +
				"--repo may be a bucket URL, as for publish: the key commands take the same\n" +
				"lock (the lease object on a bucket), so they never run during a publish.",
			exits: []exitCode{exitsOK, failure, exitsUsage},
			run:   mkdeltaMigrate},
		{name: "key", summary: "add, rotate or revoke a role's keys, or renew the root (v2)",
			synopsis: "add|rotate|revoke|renew [FLAGS] --repo DIR|URL --key F...",
			about: "Issues the next root version with the change, signed by a threshold of the\n" +
				"current root keys and of the new ones (give their secret keys with --key,\n" +
				"repeated). add --role R --pubkey F: a key joins role R. rotate --role R\n" +
				"--old ID --pubkey F: F replaces key ID. revoke --role R --old ID: key ID\n" +
				"leaves role R. renew: no change, a new expiry. --threshold N sets the role's\n" +
				"threshold (k of its n keys). When the release keys change, the current index\n" +
				"is signed by the new ones too; when the timestamp keys change, a new\n" +
				"timestamp is issued: pass those secret keys with --key as well. Clients walk to\n" +
				"the new root on their next check and forget the sequence numbers they\n" +
				"accepted under keys that changed.",
			exits: []exitCode{exitsOK, failure, exitsUsage},
			run:   mkdeltaKey},
		{name: "refresh", summary: "re-sign the timestamp (v2): run it from cron more often than its validity",
			synopsis: "[FLAGS] --repo DIR|URL --key TIMESTAMP.key",
			about: "Issues the next timestamp for the repository's current index, valid for\n" +
				"--validity (a day by default). Clients refuse an expired timestamp (a mirror\n" +
				"that stopped updating) and try the next mirror, so run it well within the\n" +
				"validity, e.g. every 6 hours. The index must carry the release keys'\n" +
				"signatures: refresh never vouches for an index they did not sign.",
			exits: []exitCode{exitsOK, failure, exitsUsage},
			run:   mkdeltaRefresh},
	}
}

// readKeys reads secret key files; encrypted ones use the password in
// pwFile.
func readKeys(name string, paths []string, pwFile string, stderr io.Writer) ([]manifest.PrivateKey, int, bool) {
	var pw []byte
	var out []manifest.PrivateKey
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return nil, exitFailure, false
		}
		var kpw []byte
		if minisign.IsEncrypted(text) {
			if pwFile == "" {
				fmt.Fprintf(stderr, "%s: the secret key %s is encrypted: give its password with --password-file FILE, %s\n", name, p, passwordFileHowTo)
				return nil, exitUsage, false
			}
			if pw == nil {
				if pw, err = readPassword(pwFile); err != nil {
					fmt.Fprintf(stderr, "%s: %v\n", name, err)
					return nil, exitFailure, false
				}
			}
			kpw = pw
		}
		k, err := manifest.ParsePrivateKey(text, kpw)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s: %v\n", name, p, err)
			return nil, exitFailure, false
		}
		out = append(out, k)
	}
	return out, exitOK, true
}

// repoDirOK checks --repo of a key command: a bucket URL is checked when
// opened; a directory (a path or file:///DIR) must exist.
func repoDirOK(name, repo string, stderr io.Writer) bool {
	if releasetools.IsRemote(repo) {
		return true
	}
	dir, err := releasetools.LocalPath(repo)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, strings.TrimPrefix(err.Error(), "releasetools: "))
		return false
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		fmt.Fprintf(stderr, "%s: --repo %s: not a directory\n", name, repo)
		return false
	}
	return true
}

func rolesFailed(name string, err error, stderr io.Writer) int {
	fmt.Fprintf(stderr, "%s: %s\n", name, strings.TrimPrefix(err.Error(), "releasetools: repository problem: "))
	return exitFailure
}

func mkdeltaMigrate(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("migrate")
	fs := newFlags(name)
	repo := fs.String("repo", "", "repository `DIR` or URL (file:///DIR, s3://, gs://, azblob://; required)")
	app := fs.String("app", "", "require this application `NAME`")
	var files [3][]string
	var th [3]int
	for i, role := range manifest.Roles {
		fs.StringArrayVar(&files[i], role+"-key", nil, "secret key `FILE` of the "+role+" role (repeat for more keys; at least one)")
		fs.IntVar(&th[i], role+"-threshold", 1, "how many "+role+" keys must sign (`K` of the role's keys)")
	}
	pwFile := fs.String("password-file", "", "the password of encrypted keys, in `FILE`")
	validity := fs.Duration("validity", releasetools.DefaultRootValidity, "how long root 1 stays valid (`DURATION`)")
	tsValidity := fs.Duration("timestamp-validity", releasetools.DefaultTimestampValidity, "how long the timestamp stays valid (`DURATION`)")
	if code, done := parseFlags(cmd, name, fs, args, 0, stdout, stderr); done {
		return code
	}
	if m := missing(required{"--repo", *repo != ""}, required{"--root-key", len(files[1]) > 0}, required{"--release-key", len(files[0]) > 0},
		required{"--timestamp-key", len(files[2]) > 0}); m != "" {
		return usageError(name, stderr, "need %s", m)
	}
	if !repoDirOK(name, *repo, stderr) {
		return exitFailure
	}
	roles, thresholds := map[string][]manifest.PrivateKey{}, map[string]int{}
	for i, role := range manifest.Roles {
		keys, code, ok := readKeys(name, files[i], *pwFile, stderr)
		if !ok {
			return code
		}
		roles[role], thresholds[role] = keys, th[i]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := releasetools.Migrate(ctx, *app, roles, thresholds, releasetools.RolesOptions{Repo: *repo, Validity: *validity, TimestampValidity: *tsValidity, Log: stdout})
	if err != nil {
		return rolesFailed(name, err, stderr)
	}
	fmt.Fprintf(stdout, "%s is a v2 repository: ship %s with the application (\"root\" in deltaup.json), and run `mkdelta refresh` within %s, then regularly\n",
		*repo, manifest.RootPath(root.Version), tsValidity.String())
	return exitOK
}

func mkdeltaKey(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("key")
	fs := newFlags(name)
	repo := fs.String("repo", "", "repository `DIR` or URL (file:///DIR, s3://, gs://, azblob://; required)")
	role := fs.String("role", "", "the role changed: root, release or timestamp")
	pubPath := fs.String("pubkey", "", "public key `FILE` of the key joining the role (add, rotate)")
	old := fs.String("old", "", "key leaving the role (rotate, revoke): its `ID` (16 hex digits, as minisign prints it) or its public key file")
	threshold := fs.Int("threshold", 0, "the role's new threshold `K` (default: unchanged, lowered to the key count if needed)")
	var keyFiles []string
	fs.StringArrayVar(&keyFiles, "key", nil, "secret key `FILE` that signs (repeat: root keys of the current and new root, new release or timestamp keys)")
	pwFile := fs.String("password-file", "", "the password of encrypted keys, in `FILE`")
	validity := fs.Duration("validity", releasetools.DefaultRootValidity, "how long the new root stays valid (`DURATION`)")
	if code, done := parseFlags(cmd, name, fs, args, 1, stdout, stderr); done {
		return code
	}
	action := fs.Arg(0)
	if !slices.Contains([]string{"add", "rotate", "revoke", "renew"}, action) {
		return usageError(name, stderr, "need an action: add, rotate, revoke or renew")
	}
	if m := missing(required{"--repo", *repo != ""}, required{"--key", len(keyFiles) > 0}); m != "" {
		return usageError(name, stderr, "need %s", m)
	}
	var kc releasetools.KeyChange
	if action != "renew" {
		if !slices.Contains(manifest.Roles, *role) {
			return usageError(name, stderr, "--role: want root, release or timestamp")
		}
		kc.Role, kc.Threshold = *role, *threshold
	}
	needPub, needOld := action == "add" || action == "rotate", action == "rotate" || action == "revoke"
	if (*pubPath != "") != needPub || (*old != "") != needOld {
		return usageError(name, stderr, "%s takes %s", action, map[string]string{"add": "--pubkey", "rotate": "--old and --pubkey", "revoke": "--old", "renew": "neither --pubkey nor --old"}[action])
	}
	if needPub {
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
		kc.Add = []manifest.PublicKey{pub}
	}
	if needOld {
		id := strings.ToUpper(*old)
		if text, err := os.ReadFile(*old); err == nil {
			pub, err := manifest.ParsePublicKey(text)
			if err != nil {
				fmt.Fprintf(stderr, "%s: --old %s: %v\n", name, *old, err)
				return exitFailure
			}
			id = pub.ID()
		}
		kc.Remove = []string{id}
	}
	if !repoDirOK(name, *repo, stderr) {
		return exitFailure
	}
	keys, code, ok := readKeys(name, keyFiles, *pwFile, stderr)
	if !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := releasetools.ChangeKeys(ctx, kc, releasetools.RolesOptions{Repo: *repo, Keys: keys, Validity: *validity, Log: stdout})
	if err != nil {
		return rolesFailed(name, err, stderr)
	}
	for _, r := range manifest.Roles {
		ro := root.Roles[r]
		fmt.Fprintf(stdout, "  %-9s %d of %s\n", r, ro.Threshold, strings.Join(ro.KeyIDs, ", "))
	}
	return exitOK
}

func mkdeltaRefresh(name string, args []string, stdout, stderr io.Writer) int {
	cmd := findMkCommand("refresh")
	fs := newFlags(name)
	repo := fs.String("repo", "", "repository `DIR` or URL (file:///DIR, s3://, gs://, azblob://; required)")
	var keyFiles []string
	fs.StringArrayVar(&keyFiles, "key", nil, "timestamp secret key `FILE` (repeat for a threshold above 1; required)")
	pwFile := fs.String("password-file", "", "the password of encrypted keys, in `FILE`")
	validity := fs.Duration("validity", releasetools.DefaultTimestampValidity, "how long the timestamp stays valid (`DURATION`)")
	quiet := fs.BoolP("quiet", "q", false, "print nothing on success")
	if code, done := parseFlags(cmd, name, fs, args, 0, stdout, stderr); done {
		return code
	}
	if m := missing(required{"--repo", *repo != ""}, required{"--key", len(keyFiles) > 0}); m != "" {
		return usageError(name, stderr, "need %s", m)
	}
	if *validity <= 0 || *validity > 366*24*time.Hour {
		return usageError(name, stderr, "--validity %s: give a positive duration up to a year", *validity)
	}
	if !repoDirOK(name, *repo, stderr) {
		return exitFailure
	}
	keys, code, ok := readKeys(name, keyFiles, *pwFile, stderr)
	if !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var log io.Writer
	if !*quiet {
		log = stdout
	}
	if _, err := releasetools.Refresh(ctx, releasetools.RolesOptions{Repo: *repo, Keys: keys, TimestampValidity: *validity, Log: log}); err != nil {
		return rolesFailed(name, err, stderr)
	}
	return exitOK
}
