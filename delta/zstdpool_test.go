package delta

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestZstdEncodePooled: an encoder taken from the pool, whatever it coded
// before (with another dictionary, or none), codes exactly the bytes a new
// encoder does, and they decode back.
func TestZstdEncodePooled(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	text := func(n int) []byte {
		words := []string{"function ", "return ", "const ", "x", "y", "(", ")", "{", "}", ";\n", "=> ", "42"}
		var b bytes.Buffer
		for b.Len() < n {
			b.WriteString(words[rng.IntN(len(words))])
		}
		return b.Bytes()[:n]
	}
	fresh := func(newb, dict []byte) []byte {
		opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false), zstd.WithWindowSize(zstdWindow(len(dict), len(newb))), zstd.WithLowerEncoderMem(true)}
		if len(dict) > 0 {
			opts = append(opts, zstd.WithEncoderDictRaw(0, dict))
		}
		enc, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(newb, nil)
	}
	zstdPools.Clear()
	for i := range 40 {
		n := []int{10, 900, 3000, 20000, 100000}[i%5]
		old := text(n + rng.IntN(500))
		newb := append(bytes.Clone(old[:len(old)/2]), text(n/3+1)...)
		newb = append(newb, old[len(old)/2:]...)
		dict := old
		if i%3 == 2 {
			dict = nil
		}
		got, err := zstdEncode(newb, dict)
		if err != nil {
			t.Fatal(err)
		}
		if want := fresh(newb, dict); !bytes.Equal(got, want) {
			t.Fatalf("pair %d (%d bytes, dict %d): pooled encoder gave %d bytes, a new one %d", i, len(newb), len(dict), len(got), len(want))
		}
		opts := []zstd.DOption{}
		if dict != nil {
			opts = append(opts, zstd.WithDecoderDictRaw(0, dict))
		}
		dec, err := zstd.NewReader(nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		back, err := dec.DecodeAll(got, nil)
		dec.Close()
		if err != nil || !bytes.Equal(back, newb) {
			t.Fatalf("pair %d: decodes to %d bytes, %v", i, len(back), err)
		}
	}
}
