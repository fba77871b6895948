package releasetools

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPublishNoSolid: where tree-wide matching wins (new files made of
// code from several old files), publish writes a version-2 (solid)
// bundle, and with NoSolid a version-1 one that older clients read.
func TestPublishNoSolid(t *testing.T) {
	priv, _, _ := testKey(t)
	now := time.Now().UTC()
	rng := rand.New(rand.NewPCG(5, 6))
	chunk := func() string {
		var b strings.Builder
		for b.Len() < 6000 {
			fmt.Fprintf(&b, "function f%d(a) { return a + %d; }\n", rng.IntN(1e6), rng.IntN(1e6))
		}
		return b.String()
	}
	a, b, c := chunk(), chunk(), chunk()
	oldDir, newDir := t.TempDir(), t.TempDir()
	writeTree(t, oldDir, map[string]string{"src/a.js": a, "src/b.js": b, "src/c.js": c})
	// Every new file mixes the old ones: no single old file explains it.
	writeTree(t, newDir, map[string]string{"src/a.js": b + a, "src/b.js": c + b, "src/c.js": a + c})
	for _, tc := range []struct {
		noSolid bool
		version byte
	}{{false, 2}, {true, 1}} {
		t.Run(fmt.Sprint("NoSolid=", tc.noSolid), func(t *testing.T) {
			repo := t.TempDir()
			publish(t, repo, "1.0.0", oldDir, priv, now)
			res, err := Publish(context.Background(), newDir, PublishOptions{Repo: repo, App: "demo", Version: "1.1.0", Key: priv,
				NoSolid: tc.noSolid, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Release.Patches) != 1 {
				t.Fatalf("patches: %+v", res.Release.Patches)
			}
			raw, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(res.Release.Patches[0].Path)))
			if err != nil || len(raw) < 5 {
				t.Fatal(err)
			}
			if raw[4] != tc.version {
				t.Fatalf("bundle version %d, want %d (%d bytes)", raw[4], tc.version, len(raw))
			}
		})
	}
}
