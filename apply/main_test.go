package apply

import (
	"os"
	"sync"
	"testing"

	"github.com/deltaup/deltaup/internal/testtmp"
)

// The published test repositories (ckNewRepoPatches) are built once per
// test binary and shared, read-only, by every setup that does not need its
// own: publishing one (three versions, archives and patches) was most of
// the cost of a setup, and setups run a few hundred times.
var shared struct {
	mu    sync.Mutex
	dir   string // removed by TestMain
	repos map[int]*ckRepo
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
func ckSharedRepo(t testing.TB) *ckRepo { return ckSharedRepoPatches(t, 0) }

// ckSharedRepoPatches returns the shared ckNewRepoPatches(patchesFrom).
func ckSharedRepoPatches(t testing.TB, patchesFrom int) *ckRepo {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if r := shared.repos[patchesFrom]; r != nil {
		return r
	}
	if shared.dir == "" {
		d, err := os.MkdirTemp("", "deltaup-apply-repo-")
		if err != nil {
			t.Fatal(err)
		}
		shared.dir, shared.repos = d, map[int]*ckRepo{}
	}
	r := ckNewRepoPatches(persistTB{t}, patchesFrom) // t.Fatal on failure: the next caller tries again
	shared.repos[patchesFrom] = r
	return r
}

func TestMain(m *testing.M) {
	code := testtmp.Wrap(m).Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}
