package apply

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/deltaup/deltaup/manifest"
)

func ckKey(t *testing.T) (manifest.PublicKey, []byte) {
	t.Helper()
	pubFile, _, err := manifest.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := manifest.ParsePublicKey(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	return k, pubFile
}

func TestConfigValidate(t *testing.T) {
	key, _ := ckKey(t)
	root := t.TempDir()
	good := func() *Config {
		return &Config{AppDir: filepath.Join(root, "app") + string(filepath.Separator), Servers: []string{"https://example.com/repo/"}, PublicKey: key, App: "demo"}
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.AppDir != filepath.Join(root, "app") || c.BackupDir != filepath.Join(root, "app.backup") || c.Channel != DefaultChannel ||
		c.HTTPClient != http.DefaultClient || c.Now == nil {
		t.Errorf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("second Validate: %v", err)
	}
	// Versions as tags write them are normalized.
	c.Current, c.To, c.MinVersion = "v1.2.3", "V2.0.0-rc.1", "v1.0.0"
	if err := c.Validate(); err != nil || c.Current != "1.2.3" || c.To != "2.0.0-rc.1" || c.MinVersion != "1.0.0" {
		t.Errorf("v-prefixed versions: %v %q %q %q", err, c.Current, c.To, c.MinVersion)
	}
	for _, bad := range []struct {
		name string
		edit func(c *Config)
	}{
		{"no app dir", func(c *Config) { c.AppDir = "" }},
		{"no servers", func(c *Config) { c.Servers = nil }},
		{"ftp server", func(c *Config) { c.Servers = []string{"ftp://example.com/"} }},
		{"relative server", func(c *Config) { c.Servers = []string{"example.com/repo"} }},
		{"no key", func(c *Config) { c.PublicKey = manifest.PublicKey{} }},
		{"no app", func(c *Config) { c.App = "" }},
		{"backup inside app", func(c *Config) { c.BackupDir = filepath.Join(c.AppDir, "backup") }},
		{"app inside backup", func(c *Config) { c.BackupDir = root }},
		{"backup is app", func(c *Config) { c.BackupDir = c.AppDir }},
		{"bad current", func(c *Config) { c.Current = "v1.0" }},
		{"bad to", func(c *Config) { c.To = "latest" }},
		{"negative rate", func(c *Config) { c.LimitRate = -1 }},
	} {
		c := good()
		bad.edit(c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", bad.name, err)
		}
	}
	// A sibling whose name starts like the app dir is not inside it.
	c = good()
	c.BackupDir = filepath.Join(root, "app-backup")
	if err := c.Validate(); err != nil {
		t.Errorf("sibling backup dir: %v", err)
	}
}

func TestConfigFile(t *testing.T) {
	key, pubFile := ckKey(t)
	root := t.TempDir()
	app := filepath.Join(root, "app")
	os.MkdirAll(filepath.Join(app, "etc"), 0o755)

	// Missing file: empty, not an error.
	fc, err := LoadConfigFile(app)
	if err != nil || fc.Found {
		t.Fatalf("missing file: %+v, %v", fc, err)
	}

	os.WriteFile(filepath.Join(app, "etc", "release.pub"), pubFile, 0o644)
	os.WriteFile(filepath.Join(app, ConfigFileName), []byte(`{"app":"demo","servers":["https://a.example/","https://b.example/"],
		"pubkey":"etc/release.pub","channel":"beta","backup_dir":"keep","relaunch":["bin/app","--updated"],"limit_rate":1000}`), 0o644)
	fc, err = LoadConfigFile(app)
	if err != nil || !fc.Found {
		t.Fatalf("load: %+v, %v", fc, err)
	}
	c := &Config{AppDir: app}
	if err := fc.Merge(c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.App != "demo" || !slices.Equal(c.Servers, []string{"https://a.example/", "https://b.example/"}) || !c.PublicKey.Equal(key) ||
		c.Channel != "beta" || c.BackupDir != filepath.Join(root, "keep") || !slices.Equal(c.Relaunch, []string{"bin/app", "--updated"}) || c.LimitRate != 1000 {
		t.Errorf("merged: %+v", c)
	}

	// Explicit fields (flags) win.
	other, _ := ckKey(t)
	c = &Config{AppDir: app, App: "flag", Servers: []string{"http://flag.example/"}, PublicKey: other, Channel: "stable", BackupDir: "/b", LimitRate: 5, Relaunch: []string{"x"}}
	if err := fc.Merge(c); err != nil {
		t.Fatal(err)
	}
	if c.App != "flag" || c.Servers[0] != "http://flag.example/" || !c.PublicKey.Equal(other) || c.Channel != "stable" || c.BackupDir != "/b" || c.LimitRate != 5 || c.Relaunch[0] != "x" {
		t.Errorf("flags lost: %+v", c)
	}

	// The key text itself.
	os.WriteFile(filepath.Join(app, ConfigFileName), []byte(`{"pubkey":"`+key.String()+`"}`), 0o644)
	c = &Config{AppDir: app}
	if fc, err = LoadConfigFile(app); err != nil {
		t.Fatal(err)
	}
	if err := fc.Merge(c); err != nil || !c.PublicKey.Equal(key) {
		t.Errorf("inline key: %v", err)
	}

	for name, body := range map[string]string{
		"unknown key":   `{"app":"demo","server":"x"}`,
		"trailing data": `{"app":"demo"} {}`,
		"not an object": `[1]`,
		"negative rate": `{"limit_rate":-1}`,
		"too large":     `{"app":"` + string(make([]byte, MaxConfigFileSize)) + `"}`,
	} {
		os.WriteFile(filepath.Join(app, ConfigFileName), []byte(body), 0o644)
		if _, err := LoadConfigFile(app); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	// A key path that does not exist.
	os.WriteFile(filepath.Join(app, ConfigFileName), []byte(`{"pubkey":"nope.pub"}`), 0o644)
	fc, _ = LoadConfigFile(app)
	if err := fc.Merge(&Config{}); !errors.Is(err, ErrConfig) {
		t.Errorf("missing key file: %v", err)
	}
}

// The deltaup.json shipped in a published tree configures the client.
func TestConfigFileShipped(t *testing.T) {
	repo := ckNewRepo(t)
	app := filepath.Join(t.TempDir(), "app")
	repo.install(t, "1.1.0", app)
	fc, err := LoadConfigFile(app)
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{AppDir: app}
	if err := fc.Merge(c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.App != "demo" || !c.PublicKey.Equal(repo.pub) {
		t.Errorf("config: %+v", c)
	}
}
