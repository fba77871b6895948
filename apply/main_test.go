package apply

import (
	"os"
	"sync"
	"testing"
)

// The published test repository (ckNewRepo) is built once per test binary
// and shared, read-only, by every setup that does not need its own:
// publishing it (three versions, archives and patches) was most of the
// cost of a setup, and setups run a few hundred times.
var shared struct {
	once sync.Once
	dir  string // removed by TestMain
	repo *ckRepo
	err  string
}

// persistTB is a testing.TB whose TempDir outlives the test: directories
// under shared.dir.
type persistTB struct{ testing.TB }

func (p persistTB) TempDir() string {
	d, err := os.MkdirTemp(shared.dir, "t")
	if err != nil {
		p.Fatal(err)
	}
	return d
}

// ckSharedRepo returns the shared repository of ckVersions.
func ckSharedRepo(t testing.TB) *ckRepo {
	t.Helper()
	shared.once.Do(func() {
		d, err := os.MkdirTemp("", "deltaup-apply-repo-")
		if err != nil {
			shared.err = err.Error()
			return
		}
		shared.dir = d
		ok := false
		defer func() {
			if !ok && shared.err == "" {
				shared.err = "building the shared test repository failed (see the first test that used it)"
			}
		}()
		shared.repo = ckNewRepo(persistTB{t})
		ok = true
	})
	if shared.repo == nil {
		t.Fatal(shared.err)
	}
	return shared.repo
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}
