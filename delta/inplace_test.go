package delta

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

// TestInPlaceEdit: a file rebuilt with a few bytes changed in place (a
// version string) skips the suffix arrays, and its patch still rebuilds
// the new file exactly in both formats; anything else takes the scan.
func TestInPlaceEdit(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	old := make([]byte, 256<<10)
	for i := range old {
		old[i] = byte(rng.IntN(16)) // compressible, like code
	}
	edit := func(n int, grow int) []byte {
		b := append(bytes.Clone(old), make([]byte, grow)...)
		for range n {
			i := rng.IntN(len(old))
			b[i] ^= 0x5a
		}
		return b
	}
	limit := len(old) / 1024
	cases := []struct {
		name string
		old  []byte
		new  []byte
		want bool
	}{
		{"identical", old, bytes.Clone(old), true},
		{"version bump", old, edit(6, 0), true},
		{"at the limit", old, func() []byte { // exactly limit bytes differ
			b := bytes.Clone(old)
			for i := range limit {
				b[i*997%len(b)] ^= 1
			}
			return b
		}(), true},
		{"one over the limit", old, func() []byte {
			b := bytes.Clone(old)
			for i := range limit + 1 {
				b[i*997%len(b)] ^= 1
			}
			return b
		}(), false},
		{"other length", old, edit(3, 1), false},
		{"small file", old[:1000], append([]byte{old[0] ^ 1}, old[1:1000]...), false},
		{"shifted", old, append([]byte{9}, old[:len(old)-1]...), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := inPlaceEdit(c.old, c.new); got != c.want {
				t.Fatalf("inPlaceEdit = %v, want %v", got, c.want)
			}
			for _, f := range []Format{FormatNative, FormatBSDIFF40} {
				var patch bytes.Buffer
				st, err := Diff(context.Background(), c.old, c.new, &patch, &DiffOptions{Format: f})
				if err != nil {
					t.Fatal(err)
				}
				if c.want && (st.Index != 0 || st.Scan != 0) {
					t.Errorf("%v: in-place edit built the suffix array (index %v, scan %v)", f, st.Index, st.Scan)
				}
				if c.want && f == FormatNative && st.PatchSize > 1024 {
					t.Errorf("native patch of an in-place edit is %d bytes", st.PatchSize)
				}
				var out bytes.Buffer
				if _, err := Apply(context.Background(), c.old, &patch, &out, nil); err != nil {
					t.Fatalf("%v: apply: %v", f, err)
				}
				if !bytes.Equal(out.Bytes(), c.new) {
					t.Fatalf("%v: the patch does not rebuild the new file", f)
				}
			}
		})
	}
}
