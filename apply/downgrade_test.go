package apply

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// dgRepo: ckVersions published with each release's deltaup.json recording
// its own version, served twice: "current" as published (sequence 3,
// newest 1.2.0) and "old" replaying the validly signed manifest of
// sequence 2 (newest 1.1.0), as a stale mirror or an attacker would.
type dgRepo struct {
	repo         *ckRepo
	current, old string // server URLs
}

// dgConfigJSON is the demo deltaup.json with extra members appended.
func dgConfigJSON(extra string) string {
	s := `{"app":"demo","servers":["https://updates.example.com/demo/"],"pubkey":"deltaup.pub","channel":"stable"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func dgNewRepo(t *testing.T) *dgRepo {
	t.Helper()
	r := ckEmptyRepo(t)
	for i, v := range ckVersions {
		dir := ckTree(t, i, r.pubFile)
		ckWriteFiles(t, dir, map[string]string{ConfigFileName: dgConfigJSON(`"version":"` + v + `"`)})
		r.trees[v] = dir
		r.publish(t, v, dir)
	}
	cur := filepath.Join(t.TempDir(), "current")
	ckCopyDir(t, r.dir, cur)
	old := filepath.Join(t.TempDir(), "old")
	ckCopyDir(t, r.dir, old)
	for root, hist := range map[string]string{manifest.ManifestName: "2.json", manifest.SignatureName: "2.json.minisig"} {
		b, err := os.ReadFile(filepath.Join(old, "manifests", hist))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(old, root), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &dgRepo{repo: r, current: ckServe(t, cur).URL, old: ckServe(t, old).URL}
}

// config installs version into a new app directory (its deltaup.json
// replaced by deltaupJSON unless empty) and returns the Config the CLI
// would build: servers and key given, the rest from deltaup.json.
func (d *dgRepo) config(t *testing.T, version, deltaupJSON string, servers ...string) *Config {
	t.Helper()
	app := filepath.Join(t.TempDir(), "app")
	d.repo.install(t, version, app)
	if deltaupJSON != "" {
		ckWriteFiles(t, app, map[string]string{ConfigFileName: deltaupJSON})
	}
	cfg := &Config{AppDir: app, Servers: servers, PublicKey: d.repo.pub,
		Now: func() time.Time { return d.repo.now.Add(time.Hour) }}
	fc, err := LoadConfigFile(app)
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Merge(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCheckNoDowngrade: the tester's report: with no state (a fresh
// install, or the backup directory deleted) an older, validly signed
// manifest offered 1.1.0 over 1.2.0 and pinned its sequence. Every record
// of the installed version, and the floors of deltaup.json, refuse it now;
// an explicit To still installs an older version; upgrades are unchanged.
func TestCheckNoDowngrade(t *testing.T) {
	d := dgNewRepo(t)
	noRecord := dgConfigJSON("")
	cases := []struct {
		name      string
		installed string
		deltaup   string // the app's deltaup.json; "" keeps the release's own (with "version")
		old       bool   // serve the replayed manifest of sequence 2
		edit      bool   // modify the installed tree: it matches no release
		set       func(*Config)
		state     *State // saved before the check (nil: none, a fresh state)
		refused   bool
		// when accepted:
		target, floor string
		upToDate      bool
		archive       bool // the route is the full archive
	}{
		// Nothing records the version: the replay is indistinguishable
		// from an update (why the release must ship "version").
		{name: "replay, no record", installed: "1.2.0", deltaup: noRecord, old: true, target: "1.1.0", archive: true},
		{name: "replay, version in deltaup.json", installed: "1.2.0", old: true, refused: true},
		{name: "replay, Config.Current", installed: "1.2.0", deltaup: noRecord, old: true, set: func(c *Config) { c.Current = "1.2.0" }, refused: true},
		{name: "replay, installed in state.json", installed: "1.2.0", deltaup: noRecord, old: true, state: &State{App: "demo", Installed: "1.2.0"}, refused: true},
		{name: "replay, min_sequence", installed: "1.2.0", deltaup: dgConfigJSON(`"min_sequence":3`), old: true, refused: true},
		{name: "replay, min_version", installed: "1.2.0", deltaup: dgConfigJSON(`"min_version":"1.2.0"`), old: true, refused: true},
		{name: "replay, min_version by Config", installed: "1.2.0", deltaup: noRecord, old: true, set: func(c *Config) { c.MinVersion = "1.1.1" }, refused: true},
		{name: "replay, min_sequence met", installed: "1.2.0", deltaup: dgConfigJSON(`"min_sequence":2`), old: true, target: "1.1.0", archive: true},
		{name: "replay, min_version met", installed: "1.2.0", deltaup: dgConfigJSON(`"min_version":"1.1.0"`), old: true, target: "1.1.0", floor: "1.1.0", archive: true},
		{name: "replay, To asks for the older version", installed: "1.2.0", old: true, set: func(c *Config) { c.To = "1.1.0" }, target: "1.1.0", floor: "1.2.0", archive: true},
		{name: "replay, To does not lift min_version", installed: "1.2.0", deltaup: dgConfigJSON(`"min_version":"1.2.0"`), old: true, set: func(c *Config) { c.To = "1.1.0" }, refused: true},
		{name: "current, installed newest", installed: "1.2.0", upToDate: true},
		{name: "current, upgrade", installed: "1.0.0", target: "1.2.0"},
		{name: "current, modified tree, record is a floor", installed: "1.2.0", edit: true, state: &State{App: "demo", Bad: []string{"1.2.0"}}, floor: "1.2.0", upToDate: true},
		{name: "current, modified tree, no record", installed: "1.2.0", deltaup: noRecord, edit: true, state: &State{App: "demo", Bad: []string{"1.2.0"}}, target: "1.1.0", archive: true},
		{name: "current, modified tree, older record", installed: "1.1.0", edit: true, target: "1.2.0", floor: "1.1.0", archive: true},
		{name: "current, modified tree, To below the record", installed: "1.2.0", edit: true, set: func(c *Config) { c.To = "1.0.0" }, target: "1.0.0", floor: "1.2.0", archive: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, seq := d.current, uint64(3)
			if c.old {
				srv, seq = d.old, 2
			}
			cfg := d.config(t, c.installed, c.deltaup, srv)
			if c.edit {
				// An edited file of the release (an added file of the user's
				// alone would still be detected as its release).
				ckWriteFiles(t, cfg.AppDir, map[string]string{"README.md": "edited by the user\n"})
			}
			if c.set != nil {
				c.set(cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if c.state != nil {
				if err := c.state.Save(cfg.BackupDir); err != nil {
					t.Fatal(err)
				}
			}
			stateBefore, _ := os.ReadFile(StatePath(cfg.BackupDir))
			appBefore := ckDigest(t, cfg.AppDir)

			res, err := Check(context.Background(), cfg, ckFetcher{base: srv})
			if c.refused {
				if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrDowngrade) || !errors.Is(err, manifest.ErrRollback) {
					t.Fatalf("got %+v, %v; want ErrRefused, ErrDowngrade and manifest.ErrRollback", res, err)
				}
				t.Log(err)
				if stateAfter, _ := os.ReadFile(StatePath(cfg.BackupDir)); !bytes.Equal(stateBefore, stateAfter) {
					t.Errorf("state file changed (pinned the refused manifest):\n%s\n%s", stateBefore, stateAfter)
				}
				if ckDigest(t, cfg.AppDir) != appBefore {
					t.Error("app directory changed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.UpToDate != c.upToDate || res.Floor != c.floor || (!c.upToDate && res.Target != c.target) {
				t.Fatalf("got target %q up to date %v floor %q (current %q); want %q %v %q", res.Target, res.UpToDate, res.Floor, res.Current, c.target, c.upToDate, c.floor)
			}
			if !c.upToDate {
				if res.Route == nil {
					t.Fatal("no route")
				}
				if isArchive := len(res.Route.Steps) == 1 && res.Route.Steps[0].Kind == StepArchive; isArchive != c.archive {
					t.Errorf("route %+v: archive %v, want %v", res.Route, isArchive, c.archive)
				}
			}
			if st, err := LoadState(cfg.BackupDir); err != nil || st.Sequence != seq {
				t.Errorf("state after the check: %+v, %v; want sequence %d", st, err, seq)
			}
		})
	}
}

// TestDowngradeLostState: the whole flow the tester ran. An app updated
// from 1.0.0 to 1.2.0 loses its backup directory; a mirror replays the
// manifest of sequence 2. Prepare refuses it (nothing staged, no state
// pinned); with a second mirror serving the current manifest, the update
// goes on from there and finds 1.2.0 installed.
func TestDowngradeLostState(t *testing.T) {
	ctx := context.Background()
	d := dgNewRepo(t)
	cfg := d.config(t, "1.0.0", "", d.current)
	u := &Updater{Config: *cfg}
	if p, err := u.Prepare(ctx); err != nil || p.Journal == nil || p.Check.Target != "1.2.0" {
		t.Fatalf("Prepare 1.0.0 -> 1.2.0: %+v, %v", p, err)
	}
	if in, err := u.Install(ctx); err != nil || !in.Confirmed {
		t.Fatalf("Install: %+v, %v", in, err)
	}
	if ckDigest(t, cfg.AppDir) != ckDigest(t, d.repo.trees["1.2.0"]) {
		t.Fatal("app directory is not release 1.2.0")
	}

	// The backup directory is lost; the installed tree's own deltaup.json
	// (now 1.2.0's) is what the next run reads.
	backup := cfg.AppDir + BackupSuffix
	if err := os.RemoveAll(backup); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		servers []string
		refused bool
	}{
		{"replaying mirror only", []string{d.old}, true},
		{"replaying mirror, then the current one", []string{d.old, d.current}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &Config{AppDir: cfg.AppDir, Servers: c.servers, PublicKey: d.repo.pub, Now: cfg.Now}
			fc, err := LoadConfigFile(cfg.AppDir)
			if err != nil {
				t.Fatal(err)
			}
			if err := fc.Merge(cfg); err != nil {
				t.Fatal(err)
			}
			appBefore := ckDigest(t, cfg.AppDir)
			u := &Updater{Config: *cfg, Downloader: &Downloader{Mirrors: c.servers, Retries: -1}}
			p, err := u.Prepare(ctx)
			if c.refused {
				if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrDowngrade) {
					t.Fatalf("Prepare: %+v, %v; want ErrRefused and ErrDowngrade", p, err)
				}
				t.Log(err)
				if _, err := os.Stat(StatePath(backup)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("state file written after the refusal: %v", err)
				}
			} else {
				if err != nil || !p.Check.UpToDate || p.Check.Current != "1.2.0" || !p.Check.Detected {
					t.Fatalf("Prepare: %+v, %v; want up to date at 1.2.0", p, err)
				}
				if st, err := LoadState(backup); err != nil || st.Sequence != 3 {
					t.Errorf("state: %+v, %v; want sequence 3", st, err)
				}
			}
			if _, err := LoadJournal(backup); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("journal after the check: %v", err)
			}
			if _, err := os.Stat(filepath.Join(backup, stagingDir)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("staging directory: %v", err)
			}
			if ckDigest(t, cfg.AppDir) != appBefore {
				t.Error("app directory changed")
			}
		})
	}
}

// TestConfigFileFloors: the floor keys of deltaup.json load, are checked
// and merge into Config (set fields win).
func TestConfigFileFloors(t *testing.T) {
	cases := []struct {
		name, json string
		preset     Config
		ok         bool
		want       Config // the floor fields after Merge
	}{
		{"all keys", `{"version":"5.7.2","min_version":"5.7.0","min_sequence":41}`, Config{}, true,
			Config{RecordedVersion: "5.7.2", MinVersion: "5.7.0", MinSequence: 41}},
		{"none", `{}`, Config{}, true, Config{}},
		{"set fields win", `{"version":"5.7.2","min_version":"5.7.0","min_sequence":41}`,
			Config{RecordedVersion: "6.0.0", MinVersion: "6.0.0", MinSequence: 50}, true,
			Config{RecordedVersion: "6.0.0", MinVersion: "6.0.0", MinSequence: 50}},
		{"version not semantic", `{"version":"v5.7"}`, Config{}, false, Config{}},
		{"min_version not semantic", `{"min_version":"latest"}`, Config{}, false, Config{}},
		{"min_sequence negative", `{"min_sequence":-1}`, Config{}, false, Config{}},
		{"min_sequence above 2^53-1", `{"min_sequence":9007199254740992}`, Config{}, false, Config{}},
		{"min_sequence not a number", `{"min_sequence":"3"}`, Config{}, false, Config{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(c.json), 0o644); err != nil {
				t.Fatal(err)
			}
			fc, err := LoadConfigFile(dir)
			if !c.ok {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("got %v, want ErrConfig", err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := c.preset
			if err := fc.Merge(&got); err != nil {
				t.Fatal(err)
			}
			if got.RecordedVersion != c.want.RecordedVersion || got.MinVersion != c.want.MinVersion || got.MinSequence != c.want.MinSequence {
				t.Errorf("merged %q %q %d, want %q %q %d", got.RecordedVersion, got.MinVersion, got.MinSequence,
					c.want.RecordedVersion, c.want.MinVersion, c.want.MinSequence)
			}
		})
	}
	// Config.Validate refuses the floor versions that are not semantic.
	pub, _ := ckKey(t)
	for _, c := range []Config{{RecordedVersion: "x"}, {MinVersion: "1.2"}} {
		c.AppDir, c.Servers, c.App, c.PublicKey = t.TempDir(), []string{"https://u.example.com/"}, "demo", pub
		if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Version") {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
}
