package apply

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestStatus(t *testing.T) {
	repo := ckNewRepo(t)
	m := repo.manifest(t)
	app := filepath.Join(t.TempDir(), "app")
	repo.install(t, "1.1.0", app)
	rep, err := Status(context.Background(), app, m, nil)
	if err != nil || !rep.Exact || rep.Version != "1.1.0" || len(rep.Modified)+len(rep.Missing)+len(rep.Extra) != 0 {
		t.Fatalf("installed tree: %+v, %v", rep, err)
	}

	os.WriteFile(filepath.Join(app, "README.md"), []byte("edited\n"), 0o644)
	os.Chmod(filepath.Join(app, "bin", "app"), 0o700)
	os.Remove(filepath.Join(app, "lib", "core.js"))
	os.WriteFile(filepath.Join(app, "notes.txt"), []byte("mine"), 0o644)
	rep, err = Status(context.Background(), app, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Exact || rep.Version != "1.1.0" ||
		!slices.Equal(rep.Modified, []string{"README.md", "bin/app"}) ||
		!slices.Equal(rep.Missing, []string{"lib/core.js"}) ||
		!slices.Equal(rep.Extra, []string{"notes.txt"}) {
		t.Errorf("modified tree: %+v", rep)
	}
}
