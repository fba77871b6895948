package delta

import (
	"bytes"
	"context"
	"github.com/klauspost/compress/zstd"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestScanStats(t *testing.T) {
	old, nw := statsPair(t)
	t0 := time.Now()
	m, err := newMatcher(old)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	ops, err := diffOps(context.Background(), m, nw, workersForTest, nil)
	if err != nil {
		t.Fatal(err)
	}
	t2 := time.Now()
	var add, extra, nz, runs int64
	pos := int64(0)
	prevZero := true
	for _, o := range ops {
		for i := int64(0); i < o.addLen; i++ {
			d := nw[pos+i] - old[o.oldPos+i]
			if d != 0 {
				nz++
				if prevZero {
					runs++
				}
			}
			prevZero = d == 0
		}
		pos += o.addLen + o.extraLen
		add += o.addLen
		extra += o.extraLen
	}
	t.Logf("sa %v scan %v ops %d add %d extra %d nonzero %d nzruns %d total %d/%d", t1.Sub(t0), t2.Sub(t1), len(ops), add, extra, nz, runs, pos, len(nw))
}

func TestCoderStats(t *testing.T) {
	old, nw := statsPair(t)
	m, _ := newMatcher(old)
	ops, _ := diffOps(context.Background(), m, nw, workersForTest, nil)
	t0 := time.Now()
	s := encodeScript(old, nw, ops)
	t1 := time.Now()
	var out bytes.Buffer
	err := decodeScript(old, s, int64(len(nw)), &out)
	t2 := time.Now()
	for i := range 7 {
		t.Logf("cat %d: %d decisions, %.0f bytes", i, counts[i], costs[i]/8)
	}
	t.Logf("cm1 %d bytes enc %v dec %v err %v equal %v", len(s), t1.Sub(t0), t2.Sub(t1), err, bytes.Equal(out.Bytes(), nw))
}

var workersForTest = func() int {
	if os.Getenv("W") == "1" {
		return 1
	}
	return 2
}()

func BenchmarkApplyCorpus(b *testing.B) {
	old, nw := statsPair(b)
	var patch bytes.Buffer
	if _, err := Diff(context.Background(), old, nw, &patch, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := Apply(context.Background(), old, bytes.NewReader(patch.Bytes()), io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDiffPhases(t *testing.T) {
	old, nw := statsPair(t)
	for range 2 {
		t0 := time.Now()
		st, err := Diff(context.Background(), old, nw, io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("total %v index %v scan %v encode %v size %d", time.Since(t0), st.Index, st.Scan, st.Encode, st.PatchSize)
	}
}

func TestSmallDiffCost(t *testing.T) {
	if os.Getenv("DELTAUP_SMALL") == "" {
		t.Skip("set DELTAUP_SMALL=1")
	}
	old := bytes.Repeat([]byte("hello world, version one "), 40)
	nw := bytes.Repeat([]byte("hello world, version two "), 41)
	for range 3 {
		t0 := time.Now()
		st, err := Diff(context.Background(), old, nw, io.Discard, nil)
		t.Logf("%v %v %+v", time.Since(t0), err, st.Candidates)
		t0 = time.Now()
		_, err = zstdEncode(nw, old)
		t.Logf("zstd-dict alone %v %v", time.Since(t0), err)
	}
}

func TestZstdLevels(t *testing.T) {
	if os.Getenv("DELTAUP_SMALL") == "" {
		t.Skip("set DELTAUP_SMALL=1")
	}
	old := bytes.Repeat([]byte("hello world, version one "), 40)
	nw := bytes.Repeat([]byte("hello world, version two "), 41)
	for _, l := range []zstd.EncoderLevel{zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		t0 := time.Now()
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdWindow(len(old), len(nw))), zstd.WithEncoderDictRaw(0, old))
		out := enc.EncodeAll(nw, nil)
		enc.Close()
		t.Logf("%v %v %d", l, time.Since(t0), len(out))
	}
}

// statsPair reads the file pair named by DELTAUP_STATS=OLD,NEW, or skips:
// these are measurement aids for tuning the coder on real releases, not
// tests that CI runs.
func statsPair(tb testing.TB) (old, nw []byte) {
	tb.Helper()
	a, b, ok := strings.Cut(os.Getenv("DELTAUP_STATS"), ",")
	if !ok {
		tb.Skip("set DELTAUP_STATS=old,new")
	}
	var err error
	if old, err = os.ReadFile(a); err != nil {
		tb.Fatal(err)
	}
	if nw, err = os.ReadFile(b); err != nil {
		tb.Fatal(err)
	}
	return old, nw
}
