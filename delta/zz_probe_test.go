package delta_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/deltaup/deltaup/delta"
)

func mkpair(n int) ([]byte, []byte) {
	r := rand.New(rand.NewPCG(1, 2))
	old := make([]byte, n)
	for i := range old {
		if r.IntN(4) == 0 {
			old[i] = byte(r.IntN(256))
		} else {
			old[i] = byte(r.IntN(16))
		}
	}
	nw := append([]byte(nil), old[:n/3]...)
	blk := make([]byte, 3000)
	for i := range blk { blk[i] = byte(r.IntN(256)) }
	nw = append(nw, blk...)
	nw = append(nw, old[n/3:]...)
	for i := 0; i < len(nw)-4; i += 997 { nw[i] ^= 0x11; nw[i+1]++ }
	return old, nw
}

func TestProbeFlip(t *testing.T) {
	old, nw := mkpair(200 << 10)
	for _, m := range []delta.Method{delta.MethodBsdiffCM, delta.MethodZstdDict, delta.MethodZstd} {
		var p bytes.Buffer
		t0 := time.Now()
		st, err := delta.Diff(context.Background(), old, nw, &p, &delta.DiffOptions{Methods: []delta.Method{m}})
		if err != nil { t.Fatal(err) }
		t1 := time.Now()
		pb := p.Bytes()
		var out bytes.Buffer
		if _, err := delta.Apply(context.Background(), old, bytes.NewReader(pb), &out, nil); err != nil { t.Fatal(err) }
		t.Logf("%v size %d diff %v apply %v", st.Method, len(pb), t1.Sub(t0), time.Since(t1))
		ok, corrupt, hash := 0, 0, 0
		t2 := time.Now()
		for i := 100; i < len(pb); i++ {
			for _, x := range []byte{1, 0x80} {
			q := append([]byte(nil), pb...)
			q[i] ^= x
			_, err := delta.Apply(context.Background(), old, bytes.NewReader(q), &out, nil)
			switch {
			case err == nil: ok++; t.Logf("flip at %d/%d x %x no error", i, len(pb), x)
			case errors.Is(err, delta.ErrCorrupt): corrupt++
			case errors.Is(err, delta.ErrHashMismatch): hash++
			default: t.Errorf("flip %d: %v", i, err)
			}
			if i > 100+3000 && i < len(pb)-3000 { i += 50 }
			}
		}
		t.Logf("ok %d corrupt %d hash %d in %v", ok, corrupt, hash, time.Since(t2))
	}
}
