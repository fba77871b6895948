package fallback

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestEncoderReuse: an archive written with an encoder that already wrote
// other archives (of another tree, and of the same one) is byte for byte
// the archive a new encoder writes, framed or not.
func TestEncoderReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	mk := func(seed byte) string {
		root := t.TempDir()
		for i := range 12 {
			data := make([]byte, 1000+rng.IntN(60<<10)) // several frames
			for j := range data {
				data[j] = "abcdefgh"[rng.IntN(8)] + seed
			}
			if err := os.WriteFile(filepath.Join(root, string(rune('a'+i))), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	x, y := mk(0), mk(1)
	write := func(root string, framed bool) []byte {
		var b bytes.Buffer
		if _, err := Write(context.Background(), &b, root, TarZst, &WriteOptions{Framed: framed}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for _, framed := range []bool{false, true} {
		encoderPools.Clear()
		fresh := write(x, framed)
		write(y, framed) // reuses the encoder x's archive gave back
		write(x, framed)
		if again := write(x, framed); !bytes.Equal(again, fresh) {
			t.Errorf("framed=%v: a reused encoder wrote %d bytes, a new one %d (or other bytes)", framed, len(again), len(fresh))
		}
	}
}
