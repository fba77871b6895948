package fallback_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/deltaup/deltaup/fallback"
)

// TestArchiveWindow: an archive's zstd window is the smallest power of two
// from 1 MiB that holds its tar stream (the decoder allocates a history
// of that size, not 32 MiB), and its blocks are byte for byte the ones a
// 32 MiB window gives: only the frame header's window descriptor differs.
// The trees repeat data at long distances, so a window too small for the
// stream would lose matches and differ.
func TestArchiveWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sizes  []int // file sizes; each file repeats the previous one's data shifted
		window int
		framed bool
	}{
		{"tiny", []int{200 << 10}, 1 << 20, false},
		{"just under 2 MiB", []int{600 << 10, 600 << 10, 600 << 10}, 2 << 20, false},
		{"long names", []int{900 << 10, 900 << 10}, 2 << 20, false},
		{"framed", []int{700 << 10, 700 << 10, 700 << 10, 700 << 10}, 4 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ents []fent
			base := pseudoRandom(7, 64<<10)
			for i, n := range tc.sizes {
				var b bytes.Buffer
				for b.Len() < n { // compressible at long range only: repeats of base, shifted per file
					b.Write(base[i*97:])
					b.Write(base[:i*97])
				}
				name := fmt.Sprintf("f%d.bin", i)
				if tc.name == "long names" {
					name = strings.Repeat("n", 200) + name // PAX header
				}
				ents = append(ents, file(name, 0o644, string(b.Bytes()[:n])))
			}
			root := t.TempDir()
			makeTree(t, root, ents)
			arch, st := writeArchive(t, root, fallback.TarZst, &fallback.WriteOptions{Framed: tc.framed})
			if st.TarBytes > int64(tc.window) {
				t.Fatalf("tar stream %d bytes over the expected window %d", st.TarBytes, tc.window)
			}
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			for i, fr := range st.Frames {
				got := arch[fr.Offset : fr.Offset+fr.Size]
				var h zstd.Header
				if err := h.Decode(got); err != nil {
					t.Fatal(err)
				}
				if h.SingleSegment { // a one-block frame names its content size instead
					continue
				}
				if h.WindowSize != uint64(tc.window) {
					t.Fatalf("frame %d: window %d, want %d", i, h.WindowSize, tc.window)
				}
				raw, err := dec.DecodeAll(got, nil)
				if err != nil {
					t.Fatal(err)
				}
				var wide bytes.Buffer
				enc, err := zstd.NewWriter(&wide, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
					zstd.WithWindowSize(fallback.ZstdWindow), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
				if err != nil {
					t.Fatal(err)
				}
				enc.Write(raw)
				if err := enc.Close(); err != nil {
					t.Fatal(err)
				}
				w := wide.Bytes()
				// magic (4), frame header descriptor (1), window descriptor (1)
				if len(w) != len(got) || !bytes.Equal(w[:5], got[:5]) || !bytes.Equal(w[6:], got[6:]) {
					t.Fatalf("frame %d: %d bytes with the sized window, %d with 32 MiB, or other blocks", i, len(got), len(w))
				}
			}
		})
	}
}
