package releasetools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaup/deltaup/manifest"
)

// noise returns n deterministic incompressible bytes from seed.
func noise(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// TestPublishFrameIndex: every release gets a signed frame index. A tree
// of distinct files gets one framed tar.zst (framing costs nothing there);
// a tree of near-identical large files keeps its one-frame tar.zst for
// full downloads and a framed copy beside it. Verify checks both and
// lists neither as an orphan; a damaged frame or index is a fault of the
// index.
func TestPublishFrameIndex(t *testing.T) {
	priv, pub, _ := testKey(t)
	repo := filepath.Join(t.TempDir(), "repo")
	now := time.Now().UTC()
	distinct, similar := t.TempDir(), t.TempDir()
	files := map[string]string{"README.md": "read me\n", "bin/run": "->app"}
	for i := range 30 {
		files[fmt.Sprintf("small/%02d.txt", i)] = strings.Repeat(fmt.Sprintf("small %d ", i), 100)
	}
	files["bin/app"] = "x:" + string(noise(1, 200<<10))
	files["lib/big.bin"] = string(noise(2, 100<<10))
	writeTree(t, distinct, files)
	same := string(noise(3, 150<<10))
	writeTree(t, similar, map[string]string{"a.js": same + "a", "a.mjs": same + "b", "b.js": same + "c"})
	publish(t, repo, "1.0.0", distinct, priv, now)
	publish(t, repo, "1.1.0", similar, priv, now)
	m := mustManifest(t, repo)
	for _, tc := range []struct {
		version  string
		separate bool
	}{{"1.0.0", false}, {"1.1.0", true}} {
		r, _ := m.Release(tc.version)
		ip, _ := manifest.FrameIndexPath(r)
		raw, err := os.ReadFile(filepath.Join(repo, ip))
		if err != nil {
			t.Fatalf("%s: %v", tc.version, err)
		}
		sig, _ := os.ReadFile(filepath.Join(repo, ip+manifest.FrameIndexSigSuffix))
		x, err := manifest.OpenFrameIndex(raw, sig, pub, "demo", r, len(r.Files))
		if err != nil {
			t.Fatalf("%s: %v", tc.version, err)
		}
		zst := r.Archives[0]
		if (x.Archive.Path != zst.Path) != tc.separate {
			t.Errorf("%s: index archive %s, release archive %s; want separate %v", tc.version, x.Archive.Path, zst.Path, tc.separate)
		}
		if !tc.separate && (x.Archive != zst.Artifact || len(x.Frames) < 3) {
			t.Errorf("%s: the release's tar.zst is not the framed one: %+v, %d frames", tc.version, x.Archive, len(x.Frames))
		}
		if tc.separate {
			if x.Archive.Path != FramedArchivePath("demo", tc.version) || x.Archive.Size <= zst.Size {
				t.Errorf("%s: framed copy %+v, archive %+v", tc.version, x.Archive, zst.Artifact)
			}
		}
		arc, _ := os.ReadFile(filepath.Join(repo, x.Archive.Path))
		for i, s := range x.Spans() {
			if sha256.Sum256(arc[s.Offset:s.Offset+s.Size]) != s.SHA256 {
				t.Errorf("%s: frame %d hash", tc.version, i)
			}
		}
		t.Logf("%s: tar.zst %d bytes, framed %d bytes in %d frames, index %d bytes", tc.version, zst.Size, x.Archive.Size, len(x.Frames), len(raw))
	}
	rep, err := Verify(context.Background(), repo, pub, VerifyOptions{})
	if err != nil || !rep.OK() || len(rep.Orphans) != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// A damaged frame of the framed copy, then a damaged index.
	r, _ := m.Release("1.1.0")
	ip, _ := manifest.FrameIndexPath(r)
	flip(t, filepath.Join(repo, FramedArchivePath("demo", "1.1.0")))
	rep, _ = Verify(context.Background(), repo, pub, VerifyOptions{})
	if len(rep.Faults) != 1 || rep.Faults[0].Path != ip {
		t.Errorf("damaged framed copy: %v", rep.Faults)
	}
	flip(t, filepath.Join(repo, FramedArchivePath("demo", "1.1.0")))
	idx := filepath.Join(repo, ip)
	raw, _ := os.ReadFile(idx)
	os.WriteFile(idx, bytes.Replace(raw, []byte(`"entries":1`), []byte(`"entries":2`), 1), 0o644)
	rep, _ = Verify(context.Background(), repo, pub, VerifyOptions{})
	if len(rep.Faults) != 1 || rep.Faults[0].Path != ip || !strings.Contains(rep.Faults[0].Err.Error(), "signature") {
		t.Errorf("edited index: %v", rep.Faults)
	}
}
