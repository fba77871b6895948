package releasetools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"aead.dev/minisign"
	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
	"github.com/deltaup/deltaup/manifest"
)

// VerifyOptions tune Verify. The zero value is valid.
type VerifyOptions struct {
	// App, when set, is the application the manifest must name.
	App string
	// Now returns the current time (for the expiry check); nil means time.Now.
	Now func() time.Time
	// Log, when set, receives one line per artifact checked.
	Log io.Writer
	// Platform, when set, verifies that platform's sub-repository
	// (REPO/PLATFORM/) instead of the platform-less build; in a v2
	// repository against the timestamp's entry for it. Each platform is
	// verified on its own (ListPlatforms names them).
	Platform string
}

// Fault is one problem Verify found.
type Fault struct {
	Path string // repository path of the artifact or document at fault
	Err  error
}

func (f Fault) String() string { return f.Path + ": " + f.Err.Error() }

// VerifyReport is what Verify checked and found.
type VerifyReport struct {
	App                         string
	Sequence                    uint64
	Expires                     time.Time
	Releases, Archives, Patches int      // how many were checked
	Faults                      []Fault  // every problem; empty means the repository is sound
	Orphans                     []string // artifact files no release references (harmless leftovers)
	// Strays lie outside the repository layout (at the top level, or in
	// manifests/), yet a static host serves them: the lock file of an
	// older mkdelta, temporary files of an interrupted publish, anything
	// copied there by mistake. A directory is listed once, as "DIR/". A
	// minisign secret key among them is a Fault as well.
	Strays []string
	// Routes holds, for every release, how many patches take it to the
	// newest release of its channel (0 for the newest); NoRoute lists the
	// releases that no chain of patches takes there (their clients
	// download the newest's full archive).
	Routes  map[string]int
	NoRoute []string
}

// OK reports whether no fault was found.
func (r *VerifyReport) OK() bool { return len(r.Faults) == 0 }

// Verify checks a repository end to end with the publisher's public key:
// the root manifest's signature, canonical form and validity period, then
// every artifact's size and SHA-256, and that every full archive extracts to
// exactly the tree the manifest lists and every patch rebuilds exactly its
// target's tree from its base's tree. It returns an error only when it
// cannot read a trustworthy manifest at all; everything else is a Fault in
// the report. It changes nothing in the repository.
//
// Cost: every archive extracted and every patch applied once, in a
// temporary directory beside the repository.
func Verify(ctx context.Context, repo string, pub manifest.PublicKey, opts VerifyOptions) (*VerifyReport, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", args...)
		}
	}
	if err := checkPlatform(opts.Platform); err != nil {
		return nil, err
	}
	st, done, err := useStore(ctx, repo)
	if err != nil {
		return nil, err
	}
	defer done()
	top, tmpDir := repo, st.TempDir()
	repo, st, release, err := usePlatform(ctx, repo, st, opts.Platform)
	if err != nil {
		return nil, err
	}
	defer release()
	raw, err := readFile(repo, manifest.ManifestName, manifest.MaxManifestSize)
	if err != nil {
		if plats, perr := ListPlatforms(ctx, top); perr == nil && len(plats) > 0 && opts.Platform == "" {
			return nil, fmt.Errorf("%w: %v: the repository holds platforms %s: verify each with --platform", ErrRepo, err, strings.Join(plats, ", "))
		}
		return nil, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	sig, err := readFile(repo, manifest.SignatureName, manifest.MaxSignatureSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRepo, err)
	}
	if _, err := manifest.Verify(pub, raw, sig); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (if a publish was interrupted, run publish again or restore from %s/)", ErrRepo, manifest.ManifestName, err, HistoryDir)
	}
	m, err := manifest.ParseUnverified(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRepo, manifest.ManifestName, err)
	}
	rep := &VerifyReport{App: m.App, Sequence: m.Sequence, Expires: m.Expires}
	fault := func(p string, err error) {
		logf("FAULT %s: %v", p, err)
		rep.Faults = append(rep.Faults, Fault{Path: p, Err: err})
	}
	if opts.App != "" && m.App != opts.App {
		fault(manifest.ManifestName, fmt.Errorf("names app %q, want %q", m.App, opts.App))
	}
	if t := now(); !t.Before(m.Expires) {
		fault(manifest.ManifestName, fmt.Errorf("expired at %s: clients refuse it; publish or re-sign", m.Expires.Format(time.RFC3339)))
	}
	for _, f := range verifyRoles(top, repo, opts.Platform, m, raw, now()) {
		fault(f.Path, f.Err)
	}

	tmp, err := os.MkdirTemp(tmpDir, ".deltaup-verify-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	referenced := map[string]bool{}
	trees := map[string]string{} // version -> extracted tree (from its first good archive)
	byVersion := map[string]*manifest.Release{}
	for i := range m.Releases {
		byVersion[m.Releases[i].Version] = &m.Releases[i]
	}
	versions := make([]string, 0, len(byVersion))
	for v := range byVersion {
		versions = append(versions, v)
	}
	sort.Slice(versions, func(i, j int) bool {
		c, _ := manifest.Compare(versions[i], versions[j])
		return c < 0
	})
	entriesOf := map[string][]tree.Entry{}
	for _, v := range versions {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := byVersion[v]
		rep.Releases++
		if r.FileList != nil {
			referenced[r.FileList.Path] = true
		}
		entries, err := releaseEntries(repo, r)
		if err != nil {
			p := manifest.ManifestName
			if r.FileList != nil {
				p = r.FileList.Path
			}
			fault(p, fmt.Errorf("release %s: file list: %w", v, err))
			continue
		}
		if tree.Digest(entries) != r.TreeDigest {
			fault(manifest.ManifestName, fmt.Errorf("release %s: tree digest does not match its file list", v))
			continue
		}
		entriesOf[v] = entries
		for j, a := range r.Archives {
			referenced[a.Path] = true
			rep.Archives++
			dest := filepath.Join(tmp, fmt.Sprintf("%s.archive%d", v, j))
			if err := extractArchive(ctx, repo, a, entries, dest); err != nil {
				fault(a.Path, err)
				continue
			}
			logf("ok %s", a.Path)
			if trees[v] == "" {
				trees[v] = dest
			} else if err := os.RemoveAll(dest); err != nil {
				return nil, err
			}
		}
		refs, err := verifyFrameIndex(ctx, repo, pub, m.App, r, entries)
		for _, p := range refs {
			referenced[p] = true
		}
		if err != nil {
			fault(refs[0], err)
		} else if len(refs) > 0 {
			logf("ok %s", refs[0])
		}
	}
	for _, v := range versions {
		r := byVersion[v]
		for _, p := range r.Patches {
			referenced[p.Path] = true
			rep.Patches++
			base := trees[p.From]
			if base == "" {
				fault(p.Path, fmt.Errorf("cannot check: no sound archive of its base %s", p.From))
				continue
			}
			if err := checkPatch(ctx, repo, p, base, r.TreeDigest, filepath.Join(tmp, "out")); err != nil {
				fault(p.Path, err)
				continue
			}
			logf("ok %s", p.Path)
		}
	}
	rep.Routes, rep.NoRoute = patchRoutes(m)
	objs, err := st.List(ctx)
	if err != nil {
		return nil, err
	}
	rep.Orphans = orphans(objs, referenced)
	rep.Strays = strays(st, objs)
	for _, p := range rep.Strays {
		if isSecretKey(ctx, st, p) {
			fault(p, errors.New("a minisign secret key, served to anyone: remove it, and make a new key pair (mkdelta keygen) if it was ever served"))
		}
	}
	return rep, nil
}

// strays lists what lies in the repository outside the layout: at the
// top level anything but the root pair and the artifact and history
// directories (a directory once, as "DIR/"), in manifests/ anything but
// SEQ.json and SEQ.json.minisig.
func strays(st Store, objs []Object) []string {
	seen := map[string]bool{}
	plats := platformsIn(objs)
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, o := range objs {
		first, inDirectory := topLevel(o.Path)
		switch {
		case !inDirectory && (first == manifest.ManifestName || first == manifest.SignatureName || v2TopName.MatchString(first)):
		case inDirectory && (first == ArchivesDir || first == PatchesDir || first == FileListsDir || first == manifest.DeltaDir || first == manifest.ReleaseIndexDir || first == manifest.ReleaseDocDir):
		case inDirectory && (first == HistoryDir || first == manifest.RootDir || first == manifest.PolicyDir):
			if name := strings.TrimPrefix(o.Path, first+"/"); !historyName.MatchString(name) {
				add(o.Path)
			}
		case inDirectory && isLeaseStray(st, first+"/"):
		case inDirectory && slices.Contains(plats, first):
			// A platform's sub-repository: verified with --platform.
		case inDirectory:
			add(first + "/")
		default:
			add(o.Path)
		}
	}
	sort.Strings(out)
	return out
}

var historyName = regexp.MustCompile(`^[0-9]+\.json(\.([0-9A-F]{16}\.)?minisig)?$`)

// v2TopName matches the v2 documents at the top level: the timestamp and
// its signatures, the current release policy.
var v2TopName = regexp.MustCompile(`^(timestamp\.json(\.[0-9A-F]{16}\.minisig)?|policy\.json)$`)

// isSecretKey reports whether the object at p is a minisign secret key
// (encrypted or not).
func isSecretKey(ctx context.Context, st Store, p string) bool {
	if strings.HasSuffix(p, "/") {
		return false
	}
	b, err := st.Get(ctx, p, 4096)
	if err != nil {
		return false
	}
	var k minisign.PrivateKey
	return bytes.HasPrefix(b, []byte("untrusted comment:")) && minisign.IsEncrypted(b) || k.UnmarshalText(b) == nil
}

func checkPatch(ctx context.Context, repo string, p manifest.Patch, base string, want [32]byte, out string) error {
	f, err := openArtifact(repo, p.Artifact)
	if err != nil {
		return err
	}
	defer f.Close()
	defer os.RemoveAll(out)
	info, err := delta.ApplyBundle(ctx, base, f, out, &delta.BundleApplyOptions{NoSync: true})
	if err != nil {
		return err
	}
	if info.NewDigest != want {
		return fmt.Errorf("rebuilds tree %x, release %s lists %x", info.NewDigest[:8], p.To, want[:8])
	}
	return nil
}

// orphans lists the objects in the artifact directories that no release
// references.
func orphans(objs []Object, referenced map[string]bool) []string {
	var out []string
	for _, o := range objs {
		if isArtifactPath(o.Path) && !referenced[o.Path] {
			out = append(out, o.Path)
		}
	}
	return out
}
