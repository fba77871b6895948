package apply

import (
	"errors"
	"fmt"

	"github.com/deltaup/deltaup/manifest"
)

// ErrDowngrade: the manifest is older than what this client knows is
// installed or pinned (a sequence below "min_sequence", or a newest
// release below "min_version", the tree's own "version", Config.Current or
// the state's installed version). It comes with ErrRefused and
// manifest.ErrRollback: accepting it would install an older version, a
// replay after the client's state was lost. Nothing was changed and the
// state keeps its sequence; the next mirror is tried.
var ErrDowngrade = errors.New("apply: downgrade refused")

// versionFloor is a version below which nothing is installed, and where
// it comes from (for messages). A pinned floor (min_version) holds even
// against an explicit Config.To; the others record the installed version.
type versionFloor struct {
	version, source string
	pinned          bool
}

// versionFloors returns the floors known before the manifest is read:
// the publisher's "min_version" always; with installed, also the versions
// the client knows are installed: the tree's own record ("version" in
// deltaup.json, shipped in each release and so kept when the backup
// directory is lost), Config.Current and the state's installed version.
func versionFloors(cfg *Config, st *State, installed bool) []versionFloor {
	fs := []versionFloor{{cfg.MinVersion, `the floor pinned in ` + ConfigFileName + ` ("min_version", Config.MinVersion)`, true}}
	if installed {
		fs = append(fs,
			versionFloor{cfg.RecordedVersion, `the installed version recorded in ` + ConfigFileName + ` ("version", Config.RecordedVersion)`, false},
			versionFloor{cfg.Current, "the installed version given (--current, Config.Current)", false},
		)
		if st != nil {
			fs = append(fs, versionFloor{st.Installed, `the version installed last ("installed" in ` + StatePath(cfg.BackupDir) + ")", false})
		}
	}
	return fs
}

// highestFloor returns the highest of fs ("" version when none is set). A
// version that is not semantic fails with ErrConfig.
func highestFloor(fs []versionFloor) (versionFloor, error) {
	var hi versionFloor
	for _, f := range fs {
		if f.version == "" {
			continue
		}
		ref := hi.version
		if ref == "" {
			ref = f.version
		}
		c, err := manifest.Compare(f.version, ref)
		if err != nil {
			return versionFloor{}, fmt.Errorf("%w: %s: %v", ErrConfig, f.source, err)
		}
		if hi.version == "" || c > 0 {
			hi = f
		}
	}
	return hi, nil
}

// checkManifestFloor refuses m (ErrDowngrade, manifest.ErrRollback) when
// its sequence is below cfg.MinSequence or its newest release, in any
// channel, is below the highest version floor. The floors of the installed
// version apply only without an explicit cfg.To. It runs before the state
// records m, so a refused manifest pins nothing.
func checkManifestFloor(cfg *Config, st *State, m *manifest.Manifest) error {
	if m.Sequence < cfg.MinSequence {
		return fmt.Errorf("%w: %w: sequence %d is lower than %d, the floor pinned in %s (\"min_sequence\", Config.MinSequence): an older manifest is being served (stale mirror or replay); keep the installed version and retry later",
			ErrDowngrade, manifest.ErrRollback, m.Sequence, cfg.MinSequence, ConfigFileName)
	}
	fl, err := highestFloor(versionFloors(cfg, st, cfg.To == ""))
	if err != nil || fl.version == "" {
		return err
	}
	rs := m.Sorted("")
	newest := "none"
	if len(rs) > 0 {
		newest = rs[len(rs)-1].Version
		if c, err := manifest.Compare(newest, fl.version); err == nil && c >= 0 {
			return nil
		}
	}
	what := "an older manifest is being served (stale mirror or replay); keep the installed version and retry later"
	if !fl.pinned {
		what = "an older manifest is being served (stale mirror or replay), or the publisher withdrew that version; keep the installed version and retry later, or name an older version explicitly (--to, Config.To) to install it anyway"
	}
	return fmt.Errorf("%w: %w: the newest release of manifest sequence %d is %s, older than %s, %s: %s",
		ErrDowngrade, manifest.ErrRollback, m.Sequence, newest, fl.version, fl.source, what)
}

// checkFloors checks the floor keys of deltaup.json.
func (fc *FileConfig) checkFloors() error {
	for _, v := range []struct{ key, val string }{{"version", fc.Version}, {"min_version", fc.MinVersion}} {
		if v.val == "" {
			continue
		}
		if _, err := manifest.Compare(v.val, v.val); err != nil {
			return fmt.Errorf("%s: %v", v.key, err)
		}
	}
	if fc.MinSequence > manifest.MaxSafeInteger {
		return fmt.Errorf("min_sequence %d is above 2^53-1, the highest sequence a manifest may carry", fc.MinSequence)
	}
	return nil
}

// mergeFloors fills the floor fields of c that are not set from fc.
func (fc *FileConfig) mergeFloors(c *Config) {
	if c.RecordedVersion == "" {
		c.RecordedVersion = fc.Version
	}
	if c.MinVersion == "" {
		c.MinVersion = fc.MinVersion
	}
	if c.MinSequence == 0 {
		c.MinSequence = fc.MinSequence
	}
}
