package apply

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// Configuration defaults and names.
const (
	// DefaultChannel is the channel followed when Config.Channel is empty.
	DefaultChannel = "stable"
	// ConfigFileName is the configuration file in the application
	// directory. It ships with the application, as part of its published
	// tree.
	ConfigFileName = "deltaup.json"
	// MaxConfigFileSize caps deltaup.json.
	MaxConfigFileSize = 64 << 10
	// BackupSuffix is appended to the application directory to form the
	// default backup directory (a sibling: /opt/app -> /opt/app.backup).
	BackupSuffix = ".backup"
)

// ErrConfig: the configuration is incomplete or invalid (Config.Validate,
// LoadConfigFile, FileConfig.Merge).
var ErrConfig = errors.New("apply: configuration")

// Config is what the updater needs to know. Call Validate before use: it
// checks the fields and fills the defaults.
type Config struct {
	// AppDir is the application's installation directory (required).
	AppDir string
	// BackupDir holds the previous version during a swap and the client
	// state (state.json). Default: the sibling AppDir + ".backup". Neither
	// may lie inside the other.
	BackupDir string
	// Servers are the repository base URLs (http or https), tried in order
	// (required, at least one).
	Servers []string
	// PublicKey is the trusted minisign key of the publisher (required).
	PublicKey manifest.PublicKey
	// Root, when set, is a root document of the application's repository
	// (root/1.json or a later version) as shipped with the application:
	// the client then follows repository v2 (docs/FORMAT.md, "Repository
	// v2: roles"): it walks to the newest root, trusts the keys and
	// thresholds it names, and polls the tiny timestamp; PublicKey is not
	// needed. deltaup.json: "root", a file relative to the application
	// directory.
	Root []byte
	// App is the application name the manifest must carry (required).
	App string
	// Channel is the channel followed; default DefaultChannel.
	Channel string
	// Platform is the build followed in a repository that publishes
	// several ("linux-amd64", "windows-amd64", …; docs/FORMAT.md,
	// "Platforms in one repository"). Empty: a v2 client (Root) follows
	// DefaultPlatform (GOOS-GOARCH) when the repository publishes it, else
	// the platform-less build; a v1 client the platform-less build. Set,
	// exactly that platform's sub-repository (ErrPlatform when the
	// repository has none). deltaup.json: "platform"; deltaup --platform.
	Platform string
	// Current is the installed version when known; empty means detect it
	// by scanning AppDir (DetectVersion).
	Current string
	// To is the target version; empty means the latest of Channel that is
	// not marked bad. An explicit To is honoured even when marked bad, and
	// may be lower than the installed version (downgrade by full archive).
	To string
	// LimitRate caps the download rate in bytes per second; 0 means none.
	LimitRate int64
	// RecordedVersion is the version the application's tree records for
	// itself ("version" in deltaup.json, written into each release by its
	// publisher); MinVersion and MinSequence are floors pinned by the
	// publisher ("min_version", "min_sequence"). A manifest with a lower
	// sequence, or whose newest release is below MinVersion (or, unless To
	// is set, below RecordedVersion, Current or the state's installed
	// version), is refused (ErrDowngrade); when the installed tree matches
	// no release, no target below RecordedVersion, MinVersion or the
	// state's installed version is offered unless To asks for it.
	RecordedVersion string
	MinVersion      string
	MinSequence     uint64
	// Relaunch, when set, is the command (program and arguments) started
	// after a successful update.
	Relaunch []string
	// TrustSharedDirs lets the update run although another user can write
	// the application directory or rename entries in a directory above it
	// or above the backup directory (owned by that user, or writable
	// without the sticky bit; for root, group-writable counts too). Off,
	// such a layout is refused with ErrUnsafeAppDir: that user could
	// replace files under the updater, and a root updater would then run
	// them. The backup directory itself must be the updater's own in any
	// case (ErrUnsafeBackupDir). CLI: --trust-shared-dirs.
	TrustSharedDirs bool
	// HTTPClient is used for every request; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	root        *manifest.Root       // Root, parsed by Validate
	releaseKeys []manifest.PublicKey // the release keys of the root accepted last (v2)
	indexDir    string               // the platform whose index was accepted last ("": none)
}

// Validate checks c and fills the defaults: Channel, BackupDir,
// HTTPClient, Now. AppDir and BackupDir are cleaned. It fails with
// ErrConfig and a message naming the field. Calling it again is harmless.
func (c *Config) Validate() error {
	if c.AppDir == "" {
		return fmt.Errorf("%w: the application directory is not set (AppDir)", ErrConfig)
	}
	c.AppDir = filepath.Clean(c.AppDir)
	if c.BackupDir == "" {
		c.BackupDir = c.AppDir + BackupSuffix
	}
	c.BackupDir = filepath.Clean(c.BackupDir)
	if inside, err := pathWithin(c.AppDir, c.BackupDir); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	} else if inside {
		return fmt.Errorf("%w: the backup directory %s lies inside the application directory %s: choose a directory outside it (default: %s)", ErrConfig, c.BackupDir, c.AppDir, c.AppDir+BackupSuffix)
	}
	if inside, err := pathWithin(c.BackupDir, c.AppDir); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	} else if inside {
		return fmt.Errorf("%w: the application directory %s lies inside the backup directory %s: choose a backup directory beside it (default: %s)", ErrConfig, c.AppDir, c.BackupDir, c.AppDir+BackupSuffix)
	}
	if len(c.Servers) == 0 {
		return fmt.Errorf("%w: no repository server configured (Servers, or \"servers\" in %s)", ErrConfig, ConfigFileName)
	}
	for _, s := range c.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: server %q is not an http:// or https:// URL", ErrConfig, s)
		}
	}
	if err := c.parseRoot(); err != nil {
		return err
	}
	if err := c.checkPlatform(); err != nil {
		return err
	}
	if c.PublicKey.Equal(manifest.PublicKey{}) && c.root == nil {
		return fmt.Errorf("%w: no trusted public key configured (PublicKey, or \"pubkey\" in %s; or a root document: Root, \"root\")", ErrConfig, ConfigFileName)
	}
	if c.App == "" {
		return fmt.Errorf("%w: the application name is not set (App, or \"app\" in %s)", ErrConfig, ConfigFileName)
	}
	if c.Channel == "" {
		c.Channel = DefaultChannel
	}
	// Versions as tags write them (v1.2.3) are read as 1.2.3.
	for _, v := range []struct {
		field string
		val   *string
	}{{"Current", &c.Current}, {"To", &c.To}, {"RecordedVersion", &c.RecordedVersion}, {"MinVersion", &c.MinVersion}} {
		if *v.val == "" {
			continue
		}
		n, err := manifest.NormalizeVersion(*v.val)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfig, v.field, err)
		}
		*v.val = n
	}
	if c.LimitRate < 0 {
		return fmt.Errorf("%w: negative rate limit %d", ErrConfig, c.LimitRate)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// now returns c.Now() or time.Now() when unset.
func (c *Config) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// pathWithin reports whether p is dir itself or lies below it (lexically,
// after making both absolute).
func pathWithin(dir, p string) (bool, error) {
	ad, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	ap, err := filepath.Abs(p)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(ad, ap)
	if err != nil {
		return false, nil // different volumes
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))), nil
}

// FileConfig is deltaup.json, the configuration file in the application
// directory: every field is optional. Unknown keys are refused.
type FileConfig struct {
	App     string   `json:"app,omitempty"`
	Servers []string `json:"servers,omitempty"`
	// PubKey is a path to a minisign .pub file (relative to the
	// application directory, or absolute), or the key itself (the .pub
	// file's text or the bare base64 key).
	PubKey    string   `json:"pubkey,omitempty"`
	Channel   string   `json:"channel,omitempty"`
	BackupDir string   `json:"backup_dir,omitempty"` // relative to the application directory's parent, or absolute
	Relaunch  []string `json:"relaunch,omitempty"`
	LimitRate int64    `json:"limit_rate,omitempty"` // bytes per second
	// Version is the version of the release this file ships in; MinVersion
	// and MinSequence are floors for the manifest (Config.RecordedVersion,
	// MinVersion, MinSequence; docs/FORMAT.md, "deltaup.json").
	Version     string `json:"version,omitempty"`
	MinVersion  string `json:"min_version,omitempty"`
	MinSequence uint64 `json:"min_sequence,omitempty"`
	// Root is the path of the repository's root document shipped with the
	// application (relative to the application directory, or absolute):
	// Config.Root.
	Root string `json:"root,omitempty"`
	// Platform is the build followed (Config.Platform).
	Platform string `json:"platform,omitempty"`

	// Dir is the application directory the file was read from (not a
	// JSON key); Found reports whether the file exists.
	Dir   string `json:"-"`
	Found bool   `json:"-"`
}

// LoadConfigFile reads <appDir>/deltaup.json. A missing file is not an
// error: it returns an empty FileConfig with Found false. The file is
// capped at MaxConfigFileSize and decoded strictly (unknown keys, trailing
// data and a negative limit_rate are refused with ErrConfig).
func LoadConfigFile(appDir string) (*FileConfig, error) {
	fc := &FileConfig{Dir: appDir}
	p := filepath.Join(appDir, ConfigFileName)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return fc, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxConfigFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxConfigFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrConfig, p, MaxConfigFileSize)
	}
	if err := decodeStrictJSON(raw, fc); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (keys: app, servers, pubkey, root, platform, channel, backup_dir, relaunch, limit_rate, version, min_version, min_sequence)", ErrConfig, p, err)
	}
	if fc.LimitRate < 0 {
		return nil, fmt.Errorf("%w: %s: negative limit_rate", ErrConfig, p)
	}
	if err := fc.checkFloors(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, p, err)
	}
	fc.Dir, fc.Found = appDir, true
	return fc, nil
}

// decodeStrictJSON decodes exactly one JSON value into v, refusing
// unknown fields and trailing data.
func decodeStrictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// Merge fills the fields of c that are not set (zero) from fc: values set
// explicitly in c, e.g. from command-line flags, win. The public key is
// read (from a file relative to fc.Dir, or the key text itself) only when
// c has none. A nil fc changes nothing.
func (fc *FileConfig) Merge(c *Config) error {
	if fc == nil {
		return nil
	}
	if c.App == "" {
		c.App = fc.App
	}
	if len(c.Servers) == 0 {
		c.Servers = append([]string(nil), fc.Servers...)
	}
	if c.Channel == "" {
		c.Channel = fc.Channel
	}
	if c.Platform == "" {
		c.Platform = fc.Platform
	}
	fc.mergeBackupDir(c)
	if len(c.Relaunch) == 0 {
		c.Relaunch = append([]string(nil), fc.Relaunch...)
	}
	if c.LimitRate == 0 {
		c.LimitRate = fc.LimitRate
	}
	fc.mergeFloors(c)
	if len(c.Root) == 0 && fc.Root != "" {
		root, err := fc.rootFile()
		if err != nil {
			return err
		}
		c.Root = root
	}
	if c.PublicKey.Equal(manifest.PublicKey{}) && fc.PubKey != "" {
		k, err := fc.publicKey()
		if err != nil {
			return err
		}
		c.PublicKey = k
	}
	return nil
}

// mergeBackupDir sets c.BackupDir, when not set, from BackupDir (relative
// to the application directory's parent).
func (fc *FileConfig) mergeBackupDir(c *Config) {
	if c.BackupDir == "" && fc.BackupDir != "" {
		b := filepath.FromSlash(fc.BackupDir)
		if !filepath.IsAbs(b) && fc.Dir != "" {
			b = filepath.Join(filepath.Dir(filepath.Clean(fc.Dir)), b)
		}
		c.BackupDir = b
	}
}

// publicKey resolves PubKey: the key text itself, else a file.
func (fc *FileConfig) publicKey() (manifest.PublicKey, error) {
	if k, err := manifest.ParsePublicKey([]byte(fc.PubKey)); err == nil {
		return k, nil
	}
	p := filepath.FromSlash(fc.PubKey)
	if !filepath.IsAbs(p) {
		p = filepath.Join(fc.Dir, p)
	}
	f, err := os.Open(p)
	if err != nil {
		return manifest.PublicKey{}, fmt.Errorf("%w: pubkey %q is neither a minisign public key nor a readable key file: %v", ErrConfig, fc.PubKey, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 4<<10))
	if err != nil {
		return manifest.PublicKey{}, err
	}
	k, err := manifest.ParsePublicKey(raw)
	if err != nil {
		return manifest.PublicKey{}, fmt.Errorf("%w: %s: %v", ErrConfig, p, err)
	}
	return k, nil
}
