package apply

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/manifest"
)

// State file name and cap.
const (
	// StateFileName is the client state file, in the backup directory.
	StateFileName = "state.json"
	// MaxStateSize caps state.json when loading.
	MaxStateSize = 1 << 20
)

// ErrState: the state file is unreadable, oversized or malformed, or
// belongs to another application.
var ErrState = errors.New("apply: client state")

// State is what the client remembers between runs, in
// <BackupDir>/state.json (never inside the application directory, whose
// tree must match a release exactly).
type State struct {
	// App is the application the state belongs to ("" before the first
	// successful check).
	App string `json:"app"`
	// Sequence is the highest manifest sequence accepted; ManifestHash the
	// lowercase hex SHA-256 of that manifest (Manifest.ContentHash).
	// Together they refuse replayed and forked manifests.
	Sequence     uint64 `json:"sequence"`
	ManifestHash string `json:"manifest_hash"`
	// IndexPlatform is the platform whose index Sequence and ManifestHash
	// are of ("" for the platform-less build): each platform's index has
	// its own sequence, so they are compared only with an index of the
	// same platform (docs/FORMAT.md, "Platforms in one repository").
	IndexPlatform string `json:"index_platform,omitempty"`
	// Repository v2 (Config.Root): the version and SHA-256 of the newest
	// root accepted (its bytes are kept in the document cache, CachePath);
	// the highest timestamp sequence accepted and that timestamp's hash;
	// and the fingerprints of the timestamp and release keys under which
	// TimestampSequence and Sequence were accepted: when a new root
	// changes a role's keys, the sequences remembered for it are forgotten
	// (what undoes a fast-forward made with a stolen key).
	RootVersion       uint64 `json:"root_version,omitempty"`
	RootHash          string `json:"root_hash,omitempty"`
	TimestampSequence uint64 `json:"timestamp_sequence,omitempty"`
	TimestampHash     string `json:"timestamp_hash,omitempty"`
	TimestampKeys     string `json:"timestamp_keys,omitempty"`
	ReleaseKeys       string `json:"release_keys,omitempty"`
	// The release policy (v2): the sequence and SHA-256 of the newest one
	// accepted, under the release keys ReleaseKeys (docs/FORMAT.md,
	// "Release policy"); and this install's random id (32 lowercase hex
	// digits), created once, which places it in or out of each rollout.
	PolicySequence uint64 `json:"policy_sequence,omitempty"`
	PolicyHash     string `json:"policy_hash,omitempty"`
	InstallID      string `json:"install_id,omitempty"`
	// Installed is the version installed, as last detected or applied.
	Installed string `json:"installed"`
	// Bad lists versions that failed after an update and were rolled
	// back; they are not offered again (unless asked for explicitly), a
	// newer version is.
	Bad []string `json:"bad"`

	cache  *docCache        // documents to keep with the state (Save writes them first)
	policy *manifest.Policy // the release policy accepted by the last FetchManifest (v2), nil when none
}

// StatePath returns the path of the state file in backupDir.
func StatePath(backupDir string) string { return filepath.Join(backupDir, StateFileName) }

// LoadState reads <backupDir>/state.json. A missing file gives the zero
// State. The file is capped at MaxStateSize and decoded strictly (unknown
// keys, trailing data, a hash that is not 64 lowercase hex digits or a
// version that is not semantic fail with ErrState).
func LoadState(backupDir string) (*State, error) {
	p := StatePath(backupDir)
	f, err := openNoFollow(p, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrState, p, err)
	}
	if len(raw) > MaxStateSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes: it is not a state file written by deltaup; move it away", ErrState, p, MaxStateSize)
	}
	var st State
	if err := decodeStrictJSON(raw, &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %v: move it away (the next check starts afresh)", ErrState, p, err)
	}
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v: move it away (the next check starts afresh)", ErrState, p, err)
	}
	return &st, nil
}

func (s *State) check() error {
	if s.ManifestHash != "" {
		if _, err := s.seenHash(); err != nil {
			return err
		}
	}
	for _, h := range []struct{ key, val string }{{"root_hash", s.RootHash}, {"timestamp_hash", s.TimestampHash}, {"policy_hash", s.PolicyHash}} {
		if _, err := decodeHash(h.key, h.val); err != nil {
			return err
		}
	}
	if err := checkInstallID(s.InstallID); err != nil {
		return err
	}
	for _, v := range append([]string{s.Installed}, s.Bad...) {
		if v == "" {
			continue
		}
		if _, err := manifest.Compare(v, v); err != nil {
			return err
		}
	}
	return nil
}

// seenHash decodes ManifestHash (zero when empty).
func (s *State) seenHash() ([32]byte, error) {
	var h [32]byte
	if s.ManifestHash == "" {
		return h, nil
	}
	b, err := hex.DecodeString(s.ManifestHash)
	if err != nil || len(b) != 32 || hex.EncodeToString(b) != s.ManifestHash {
		return h, fmt.Errorf("manifest_hash %q is not 64 lowercase hex digits", s.ManifestHash)
	}
	copy(h[:], b)
	return h, nil
}

// Save writes the state to <backupDir>/state.json atomically (temporary
// file, fsync, rename, fsync of the directory), creating backupDir.
func (s *State) Save(backupDir string) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("%w: refusing to save: %v", ErrState, err)
	}
	out := *s
	if out.Bad == nil {
		out.Bad = []string{}
	}
	b, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := os.MkdirAll(backupDir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrState, err)
	}
	if err := s.cache.save(backupDir); err != nil {
		return fmt.Errorf("%w: %v", ErrState, err)
	}
	return delta.WriteFileAtomic(StatePath(backupDir), 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// IsBad reports whether version v is marked bad (by semver precedence).
func (s *State) IsBad(v string) bool {
	return slices.ContainsFunc(s.Bad, func(b string) bool { return sameVersion(b, v) })
}

// MarkBad adds v to the bad versions (once).
func (s *State) MarkBad(v string) {
	if !s.IsBad(v) {
		s.Bad = append(s.Bad, v)
	}
}

// sameVersion compares by semver precedence (v1.2.3 reads as 1.2.3),
// falling back to string equality for strings that do not parse.
func sameVersion(a, b string) bool {
	if n, err := manifest.NormalizeVersion(a); err == nil {
		a = n
	}
	if n, err := manifest.NormalizeVersion(b); err == nil {
		b = n
	}
	c, err := manifest.Compare(a, b)
	if err != nil {
		return a == b
	}
	return c == 0
}
