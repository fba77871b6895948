package apply

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// Fetcher gets one file of the repository. path is relative to the
// repository root ("manifest.json", "manifests/7.json"). Get returns the
// whole body, or fails: with an error wrapping ErrNotFound (or
// fs.ErrNotExist) when no server has the file (HTTP 404), and with one
// wrapping ErrTooLarge (or manifest.ErrTooLarge) when the body is larger
// than max bytes (read no further). Other errors (network, HTTP 5xx) are
// returned as they are. Downloader implements it.
type Fetcher interface {
	Get(ctx context.Context, path string, max int64) ([]byte, error)
}

// Errors of the check.
var (
	// ErrRefused: the repository's manifest was refused (it also matches
	// the manifest package's class: ErrSignature, ErrExpired,
	// ErrRollback, ErrWrongApp, ErrTooLarge, ErrMalformed). Nothing was
	// changed; keep the installed version.
	ErrRefused = errors.New("apply: manifest refused")
	// ErrUnknownVersion: the installed tree matches no release of the
	// manifest (modified locally, or not installed from this repository).
	ErrUnknownVersion = errors.New("apply: installed version unknown")
	// ErrNotInstalled: the application directory does not look like an
	// installation of the app (no client state, the version not detected,
	// most entries belong to no release): nothing is updated there unless
	// Config.Current names the installed version.
	ErrNotInstalled = errors.New("apply: not an installation of the app")
)

// HistoryPath is the repository path of the manifest with sequence seq
// (docs/FORMAT.md, "Repository layout").
func HistoryPath(seq uint64) string {
	return path.Join("manifests", strconv.FormatUint(seq, 10)+".json")
}

// FetchManifest fetches manifest.json and manifest.json.minisig through f
// and opens them (manifest.Open) for cfg.App with cfg.PublicKey, cfg.Now
// and the sequence and hash recorded in st. When the root pair does not
// verify, it follows the signature's trusted comment ("deltaup manifest
// app:APP sequence:N ...", not trusted yet) to manifests/N.json and opens
// that with the same signature: a publish caught between its last two
// renames. On success it records the manifest's sequence and content hash
// (and cfg.App) in st; the caller saves st. A refusal wraps ErrRefused and
// the manifest package's class, and leaves st unchanged; a fetch error
// (network, server) is returned wrapped, without ErrRefused. A manifest
// older than the client's floors (cfg.MinSequence, cfg.MinVersion, and
// without cfg.To the installed version as recorded: cfg.RecordedVersion,
// cfg.Current, st.Installed) is refused too (ErrDowngrade with
// manifest.ErrRollback), so a client whose state was lost is not taken
// back by a replayed manifest.
//
// With a Downloader of several mirrors, each mirror is tried in turn until
// one serves a manifest that is accepted: a mirror serving an old (validly
// signed) manifest, garbage or nothing does not stop the update; when every
// mirror fails, the first mirror's error is returned.
func FetchManifest(ctx context.Context, cfg *Config, f Fetcher, st *State) (*manifest.Manifest, error) {
	d, ok := f.(*Downloader)
	if !ok || len(d.Mirrors) < 2 {
		return fetchManifestFrom(ctx, cfg, f, st)
	}
	var first error
	for i := range d.Mirrors {
		one := *d
		one.Mirrors = d.Mirrors[i : i+1]
		m, err := fetchManifestFrom(ctx, cfg, &one, st)
		if err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

func fetchManifestFrom(ctx context.Context, cfg *Config, f Fetcher, st *State) (*manifest.Manifest, error) {
	if st == nil {
		st = &State{}
	}
	if cfg.App == "" {
		return nil, fmt.Errorf("%w: the application name is not set", ErrConfig)
	}
	if st.App != "" && st.App != cfg.App {
		return nil, fmt.Errorf("%w: the state file belongs to application %q, not %q: the backup directory is shared; give each application its own", ErrState, st.App, cfg.App)
	}
	if cfg.root == nil && len(cfg.Root) > 0 {
		if err := cfg.parseRoot(); err != nil {
			return nil, err
		}
	}
	if cfg.root != nil {
		m, commit, err := fetchRolesFrom(ctx, cfg, f, st)
		if err != nil {
			return nil, err
		}
		if err := checkManifestFloor(cfg, st, m); err != nil {
			if errors.Is(err, ErrConfig) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		commit()
		h := m.ContentHash()
		st.App, st.Sequence, st.ManifestHash = cfg.App, m.Sequence, hex.EncodeToString(h[:])
		return m, nil
	}
	seen, err := st.seenHash()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	}
	opts := manifest.OpenOptions{App: cfg.App, Now: cfg.now(), MinSequence: st.Sequence, SeenHash: seen}
	// A v1 client with an explicit platform reads that platform's
	// sub-repository; the sequence remembered counts only for it.
	dir := cfg.Platform
	if st.IndexPlatform != dir {
		opts.MinSequence, opts.SeenHash = 0, [32]byte{}
	}
	if dir != "" {
		f = subFetcher{f: f, dir: dir}
	}

	raw, err := f.Get(ctx, manifest.ManifestName, manifest.MaxManifestSize+1)
	if err != nil {
		return nil, fetchError(manifest.ManifestName, err)
	}
	sig, err := f.Get(ctx, manifest.SignatureName, manifest.MaxSignatureSize+1)
	if fetchNotFound(err) {
		sig = nil // Open refuses it: missing signature
	} else if err != nil {
		return nil, fetchError(manifest.SignatureName, err)
	}
	m, err := manifest.Open(raw, sig, cfg.PublicKey, opts)
	if err != nil && errors.Is(err, manifest.ErrSignature) {
		if m2, ok := openTorn(ctx, cfg, f, sig, opts); ok {
			m, err = m2, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err := checkManifestFloor(cfg, st, m); err != nil {
		if errors.Is(err, ErrConfig) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	rebase(m, dir)
	cfg.indexDir = dir
	h := m.ContentHash()
	st.App, st.Sequence, st.ManifestHash, st.IndexPlatform = cfg.App, m.Sequence, hex.EncodeToString(h[:]), dir
	return m, nil
}

func fetchNotFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotFound)
}

// fetchError wraps a Fetcher error; an oversized document is a refusal.
// The Downloader's errors already say which document failed and what to
// do; those of another Fetcher get the document's name.
func fetchError(name string, err error) error {
	if errors.Is(err, manifest.ErrTooLarge) {
		return fmt.Errorf("%w: %s: %w: the server does not serve a deltaup repository, or a damaged one; check the server URL", ErrRefused, name, err)
	}
	if errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w: %w: %s is larger than its cap: the server does not serve a deltaup repository, or a damaged one; check the server URL: %w", ErrRefused, manifest.ErrTooLarge, name, err)
	}
	if _, ok := errors.AsType[*mirrorsError](err); ok {
		return fmt.Errorf("apply: %w", err)
	}
	return fmt.Errorf("apply: fetching %s: %w", name, err)
}

// openTorn tries manifests/N.json, N from the signature's trusted comment.
func openTorn(ctx context.Context, cfg *Config, f Fetcher, sig []byte, opts manifest.OpenOptions) (*manifest.Manifest, bool) {
	seq, ok := commentSequence(sig, cfg.App)
	if !ok || seq < opts.MinSequence {
		return nil, false
	}
	raw, err := f.Get(ctx, HistoryPath(seq), manifest.MaxManifestSize+1)
	if err != nil {
		return nil, false
	}
	m, err := manifest.Open(raw, sig, cfg.PublicKey, opts)
	if err != nil || m.Sequence != seq {
		return nil, false
	}
	return m, true
}

// commentSequence reads N from a signature file's trusted comment
// "deltaup manifest app:APP sequence:N ...", when APP is app.
func commentSequence(sig []byte, app string) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(sig))
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimRight(sc.Text(), "\r"), "trusted comment: ")
		if !ok {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || fields[0] != "deltaup" || fields[1] != "manifest" || fields[2] != "app:"+app {
			return 0, false
		}
		n, ok := strings.CutPrefix(fields[3], "sequence:")
		if !ok {
			return 0, false
		}
		seq, err := strconv.ParseUint(n, 10, 64)
		if err != nil || seq == 0 || seq > manifest.MaxSafeInteger {
			return 0, false
		}
		return seq, true
	}
	return 0, false
}

// DetectVersion scans the tree at appDir (every entry, files hashed) and
// returns the version of the release whose tree digest it has. It fails
// with ErrUnknownVersion when none matches (see Status for what differs).
// fileLists is not needed for an exact match and may be nil. Cost: reads
// every file of appDir once.
func DetectVersion(ctx context.Context, appDir string, m *manifest.Manifest, fileLists func(*manifest.Release) ([]byte, error)) (string, error) {
	_, d, err := scanApp(ctx, appDir)
	if err != nil {
		return "", err
	}
	if r := releaseByDigest(m, d); r != nil {
		return r.Version, nil
	}
	return "", fmt.Errorf("%w: the tree in %s matches none of the %d releases of %s (modified, or not installed from this repository): an update will download the full archive; `deltaup status --online` lists the differences", ErrUnknownVersion, appDir, len(m.Releases), m.App)
}

func scanApp(ctx context.Context, appDir string) ([]tree.Entry, [32]byte, error) {
	es, err := tree.Scan(ctx, appDir, appScan)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("apply: scanning the application directory: %w", err)
	}
	return es, tree.Digest(es), nil
}

func releaseByDigest(m *manifest.Manifest, d [32]byte) *manifest.Release {
	for i := range m.Releases {
		if m.Releases[i].TreeDigest == d {
			return &m.Releases[i]
		}
	}
	return nil
}

// CheckResult is the outcome of CheckUpdate.
type CheckResult struct {
	Manifest *manifest.Manifest
	// Current is the installed version ("" when unknown: the tree matches
	// no release); Detected reports that it was found by scanning: the
	// tree has every entry of that release unchanged, and maybe entries of
	// the user's besides (Extra).
	Current  string
	Detected bool
	// Closest, when Current is unknown, is the release the tree differs
	// least from (see Status); when Current was given (Config.Current) and
	// some of its files differ on disk, Closest is Current. Modified and
	// Missing list the paths of it that differ (sorted). Extra lists the entries on disk that no release
	// installed (the Current or Closest release lists none of them): the
	// update leaves them in place, or moves them into the backup directory
	// when the new release needs their paths; it never deletes them.
	Closest                  string
	Modified, Missing, Extra []string
	// Floor, when Current is unknown, is the highest version the client
	// knows it has at least (Config.RecordedVersion, Config.MinVersion,
	// State.Installed; "" when none): no target below it is offered unless
	// Config.To asks for it.
	Floor string
	// Target is the version to install; "" when every candidate is
	// marked bad.
	Target string
	// Skipped lists newer versions of the channel passed over because
	// they are marked bad.
	Skipped []string
	// UpToDate: nothing to do (Current is Target, or Target is not newer
	// and was not asked for explicitly).
	UpToDate bool
	// Route is the cheapest way to Target; nil when UpToDate.
	Route *Route
	// Reason, when Current is unknown or Closest is set, says why Route is
	// what it is: the tree matches no release, or which files differ from
	// Closest and
	// whether repairing them from Closest's archive (a StepRepair, then
	// patches) or the full archive costs less, or why no repair was
	// possible (no frame index, no patch chain from Closest).
	Reason string

	// The release policy, in a v2 repository that publishes one
	// (docs/FORMAT.md, "Release policy"). Critical: Target is marked
	// critical (offered whatever its rollout). Required: the installed
	// version is below MinimumVersion, the lowest the publisher supports;
	// Target is then at least that when a release at or above it may be
	// installed. CurrentPulled: the installed version was pulled; Target is
	// then the next release that may be installed, when there is one.
	// Notes and NotesURL are Target's release notes. Withheld lists the
	// newer versions of the channel not offered (pulled, halted, or this
	// install not in their rollout yet).
	Critical, Required, CurrentPulled bool
	MinimumVersion                    string
	Notes, NotesURL                   string
	Withheld                          []Withheld

	lists map[string][]byte // file-list documents fetched by the check, by path
}

// CheckUpdate fetches and verifies the manifest (FetchManifest, which
// updates st on success), determines the installed version (cfg.Current,
// else DetectVersion on cfg.AppDir; unknown → only the full archive
// applies), the target (cfg.To, else the newest release of cfg.Channel not
// in st.Bad) and plans the route. The caller saves st. It never offers a
// version lower than the installed one unless cfg.To asks for it: when the
// tree matches no release, the floor is the application's own record of
// its version (cfg.RecordedVersion, cfg.MinVersion, st.Installed; see
// CheckResult.Floor), and a manifest older than it is refused (FetchManifest).
// In a v2 repository with a release policy, the target is also chosen by
// it (rollouts, halts, pulls, critical, the minimum version: see
// CheckResult and pickTarget), a route never passes through a pulled
// version, and the install gets its random id (State.InstallID) on its
// first check.
func CheckUpdate(ctx context.Context, cfg *Config, f Fetcher, st *State) (*CheckResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil {
		st = &State{}
	}
	floor, err := highestFloor(versionFloors(cfg, st, true))
	if err != nil {
		return nil, err
	}
	fresh := st.Sequence == 0 && st.Installed == ""
	m, err := FetchManifest(ctx, cfg, f, st)
	if err != nil {
		return nil, err
	}
	pol := st.policy
	if pol != nil {
		st.ensureInstallID()
	}
	res := &CheckResult{Manifest: m, Current: cfg.Current}
	if res.Current != "" {
		if r, err := m.Release(res.Current); err == nil {
			res.Current = r.Version
		}
	} else {
		// One scan of the app directory serves the exact match and, when
		// there is none, the comparison with every release.
		es, d, err := scanApp(ctx, cfg.AppDir)
		if err != nil {
			return nil, err
		}
		if r := releaseByDigest(m, d); r != nil {
			res.Current, res.Detected = r.Version, true
		} else if err := res.closest(ctx, cfg, f, es, fresh); err != nil {
			return nil, err
		}
	}
	explicit := cfg.To != ""
	if explicit {
		r, err := m.Release(cfg.To)
		if err != nil {
			return nil, fmt.Errorf("apply: target version: %w", err)
		}
		res.Target = r.Version
	} else {
		if _, err := m.Latest(cfg.Channel); err != nil {
			return nil, fmt.Errorf("apply: channel %s: %w", cfg.Channel, err)
		}
		known := res.Current
		if known == "" {
			known = floor.version
		}
		res.pickTarget(m.Sorted(cfg.Channel), pol, st, known)
	}
	if err := res.applyPolicy(pol, explicit); err != nil {
		return nil, err
	}
	avoid := avoidVersions(st.Bad, pol)
	switch {
	case res.Target == "":
		res.UpToDate = true
		return res, nil
	case res.Current != "":
		c, err := manifest.Compare(res.Current, res.Target)
		if err != nil {
			return nil, err
		}
		if c == 0 || (c > 0 && !explicit) {
			res.UpToDate = true
			return res, nil
		}
	case floor.version != "":
		res.Floor = floor.version
		c, err := manifest.Compare(floor.version, res.Target)
		if err != nil {
			return nil, err
		}
		if c > 0 && !explicit {
			res.UpToDate = true
			return res, nil
		}
	}
	res.Route, err = Plan(m, res.Current, res.Target, avoid)
	if err != nil {
		return nil, err
	}
	switch {
	case res.Current == "":
		if err := res.planRepair(ctx, cfg, f, avoid); err != nil {
			return nil, err
		}
	case !res.Detected && res.Route.usesPatches():
		if err := res.checkCurrent(ctx, cfg, f, avoid); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// checkCurrent checks a tree whose version cfg.Current names before its
// patches are planned on: they apply to that release's exact tree only.
// One scan of the app directory (its cost: hashing every file) tells:
//   - the release's tree, maybe with the user's own entries besides (Extra:
//     the update keeps them): the patch route stands;
//   - some of the release's files modified or missing (Closest is then
//     Current): repair them from its archive's frames and patch on
//     (planRepair), or take the full archive when that costs less; Reason
//     says which and why.
//
// Without this check such a tree took the patch route, which failed on the
// first changed file and fell back to the full archive.
func (res *CheckResult) checkCurrent(ctx context.Context, cfg *Config, f Fetcher, bad []string) error {
	rel, err := res.Manifest.Release(res.Current)
	if err != nil {
		return err
	}
	es, d, err := scanApp(ctx, cfg.AppDir)
	if err != nil {
		return err
	}
	if d == rel.TreeDigest {
		return nil
	}
	var doc []byte
	if rel.FileList != nil {
		if doc, err = f.Get(ctx, rel.FileList.Path, manifest.MaxFileListSize); err != nil {
			return fmt.Errorf("apply: file list of %s: %w", rel.Version, err)
		}
	}
	want, err := rel.Entries(doc)
	if err != nil {
		return err
	}
	mod, miss, extra := diffEntries(want, es)
	res.Extra = extra
	if len(mod) == 0 && len(miss) == 0 {
		return nil
	}
	res.Closest, res.Modified, res.Missing = rel.Version, mod, miss
	if rel.FileList != nil {
		res.lists = map[string][]byte{rel.FileList.Path: doc}
	}
	// The patches cannot apply to this tree: the full archive is the
	// route unless planRepair finds a repair that costs less.
	if res.Route, err = Plan(res.Manifest, "", res.Target, bad); err != nil {
		return err
	}
	return res.planRepair(ctx, cfg, f, bad)
}

// closest handles a tree that matches no release exactly: it compares it
// with every release (Status, fetching file lists with f). A release whose
// every entry is on disk unchanged is the installed version, the rest are
// the user's entries (Extra). Otherwise the closest release and what
// differs are recorded; a directory that does not look like an
// installation (fresh client state, and more entries that belong to no
// release than entries that match) is refused with ErrNotInstalled.
func (res *CheckResult) closest(ctx context.Context, cfg *Config, f Fetcher, es []tree.Entry, fresh bool) error {
	kept := 0
	rep, err := statusOf(es, res.Manifest, func(r *manifest.Release) ([]byte, error) {
		doc, err := f.Get(ctx, r.FileList.Path, manifest.MaxFileListSize)
		if err == nil && kept+len(doc) <= manifest.MaxFileListSize { // kept for a repair (planRepair)
			if res.lists == nil {
				res.lists = map[string][]byte{}
			}
			res.lists[r.FileList.Path], kept = doc, kept+len(doc)
		}
		return doc, err
	})
	if err != nil {
		return err
	}
	if r, err := res.Manifest.Release(rep.Version); err == nil && r.FileList != nil && res.lists[r.FileList.Path] != nil {
		res.lists = map[string][]byte{r.FileList.Path: res.lists[r.FileList.Path]}
	} else {
		res.lists = nil
	}
	if rep.Version == "" {
		return nil
	}
	res.Extra = rep.Extra
	if len(rep.Modified) == 0 && len(rep.Missing) == 0 {
		res.Current, res.Detected = rep.Version, true
		return nil
	}
	res.Closest, res.Modified, res.Missing = rep.Version, rep.Modified, rep.Missing
	if matched := rep.Entries - len(rep.Modified) - len(rep.Extra); fresh && len(rep.Extra) > matched {
		return fmt.Errorf("%w: %s does not look like an installation of %s: %d of its %d entries belong to no release (closest: %s, %d entries match) and the backup directory holds no state; nothing was changed; check --app-dir, or give --current VERSION if it is an installation",
			ErrNotInstalled, cfg.AppDir, res.Manifest.App, len(rep.Extra), rep.Entries, rep.Version, matched)
	}
	return nil
}

// Check runs CheckUpdate with the state kept in cfg.BackupDir: it loads
// the state, checks, and on success saves the accepted manifest's
// sequence and hash and the detected installed version. On any error the
// state file is left as it was.
func Check(ctx context.Context, cfg *Config, f Fetcher) (*CheckResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := secureDirs(cfg, true); err != nil {
		return nil, err
	}
	st, err := LoadState(cfg.BackupDir)
	if err != nil {
		return nil, err
	}
	res, err := CheckUpdate(ctx, cfg, f, st)
	if errors.Is(err, ErrNotInstalled) {
		dropFreshBackup(cfg.BackupDir)
	}
	if err != nil {
		return nil, err
	}
	if res.Detected {
		st.Installed = res.Current
	}
	if err := st.Save(cfg.BackupDir); err != nil {
		return nil, err
	}
	return res, nil
}
