package delta_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deltaup/deltaup/delta"
)

// TestBundleCorpus makes and applies bundles between real release trees
// (prettier 3.3.0 -> 3.3.3: 53 files; esbuild 0.25.0 -> 0.25.12: a 10 MB
// binary, package.json, README.md) and checks that the bundle costs at
// most 1% more than the per-file patches it carries.
func TestBundleCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus bundles skipped in -short mode")
	}
	for _, tc := range []struct {
		pkg, from, to string
		noSolid       bool
	}{
		{"prettier", "3.3.0", "3.3.3", false},
		// One 10 MB binary changes: the per-file form (the solid pass would
		// diff it a second time, against the same old file).
		{"esbuild", "0.25.0", "0.25.12", true},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			oldDir := filepath.Join(corpusDir(), tc.pkg, tc.from)
			newDir := filepath.Join(corpusDir(), tc.pkg, tc.to)
			for _, d := range []string{oldDir, newDir} {
				if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
					t.Skip("corpus absent: run ../shared/corpus/fetch.sh")
				}
			}
			ctx := context.Background()
			bundle := filepath.Join(t.TempDir(), "b.dupb")
			t0 := time.Now()
			st, err := delta.DiffBundleFile(ctx, oldDir, newDir, bundle, &delta.BundleOptions{NoSolid: tc.noSolid})
			if err != nil {
				t.Fatal(err)
			}
			t1 := time.Now()
			out := filepath.Join(t.TempDir(), "out")
			info, err := delta.ApplyBundleFile(ctx, oldDir, bundle, out, nil)
			if err != nil {
				t.Fatalf("ApplyBundle: %v", err)
			}
			t2 := time.Now()
			diffTrees(t, out, newDir)
			if info.NewDigest != st.NewDigest || info.BundleCounts != st.BundleCounts {
				t.Errorf("BundleInfo %+v, stats %+v", info, st)
			}
			overhead := st.BundleSize - st.PayloadSize
			// Solid entries carry their size and SHA-256 (about 40 bytes).
			if float64(st.BundleSize) > 1.01*float64(st.PayloadSize)+40*float64(st.Solid) {
				t.Errorf("bundle %d bytes is more than 1%% above its %d bytes of patches", st.BundleSize, st.PayloadSize)
			}
			t.Logf("%s %s -> %s: %d entries %+v; new tree %d bytes; bundle %d bytes (%.2f%% of the tree) = patches %d + %d (%.2f%%); diff %v, apply %v",
				tc.pkg, tc.from, tc.to, len(st.Entries), st.BundleCounts, st.NewSize, st.BundleSize,
				100*float64(st.BundleSize)/float64(st.NewSize), st.PayloadSize, overhead,
				100*float64(overhead)/float64(st.PayloadSize), t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond))
		})
	}
}
