package apply

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "app.backup")
	st, err := LoadState(dir)
	if err != nil || st.Sequence != 0 || st.App != "" || len(st.Bad) != 0 {
		t.Fatalf("missing state: %+v, %v", st, err)
	}
	st = &State{App: "demo", Sequence: 7, ManifestHash: strings.Repeat("0a", 32), Installed: "1.2.0"}
	st.MarkBad("1.3.0")
	st.MarkBad("1.3.0+build")
	if !st.IsBad("1.3.0") || st.IsBad("1.2.0") || len(st.Bad) != 1 {
		t.Errorf("bad list: %v", st.Bad)
	}
	if err := st.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.App != st.App || got.Sequence != 7 || got.ManifestHash != st.ManifestHash || got.Installed != "1.2.0" || !slices.Equal(got.Bad, []string{"1.3.0"}) {
		t.Errorf("round trip: %+v", got)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != StateFileName {
		t.Errorf("backup dir holds %v", ents)
	}
	if err := (&State{ManifestHash: "xyz"}).Save(dir); !errors.Is(err, ErrState) {
		t.Errorf("saving a bad hash: %v", err)
	}

	for name, body := range map[string]string{
		"unknown key":     `{"app":"demo","seq":1}`,
		"trailing":        `{"app":"demo"}x`,
		"uppercase hash":  `{"manifest_hash":"` + strings.Repeat("0A", 32) + `"}`,
		"short hash":      `{"manifest_hash":"00"}`,
		"bad version":     `{"installed":"v1"}`,
		"bad bad version": `{"bad":["1.0"]}`,
		"negative seq":    `{"sequence":-1}`,
		"too large":       `{"app":"` + strings.Repeat("a", MaxStateSize) + `"}`,
	} {
		os.WriteFile(StatePath(dir), []byte(body), 0o644)
		if _, err := LoadState(dir); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
}
