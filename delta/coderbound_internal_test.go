package delta

// A measurement aid for issue 10, item 3 ("literals and non-zero difference
// bytes through a byte-oriented coder"): on a real pair it prints how many
// bytes cm1 spends on the non-zero difference bytes and on the extra
// (literal) bytes, beside what a byte-oriented entropy coder (tANS/rANS,
// which codes a byte at once from a per-context frequency table) could reach
// at best: the empirical entropy of the same bytes under static histograms
// (what a table-driven coder achieves, plus the tables it must transmit,
// counted at 8 bits per used symbol) and under adaptive counts. Like the
// other tests of stats_internal_test.go it is skipped unless DELTAUP_STATS
// names a pair; cm1's per-category costs are filled only when costStats
// (model.go) is set to true.

import (
	"context"
	"math"
	"testing"
)

// staticBytes is the entropy in bytes of syms under one static histogram
// per context, and the cost of those tables at tableBits per used
// (context, symbol).
func staticBytes(syms, ctx []int, tableBits float64) (float64, float64) {
	h := map[int]map[int]int{}
	tot := map[int]int{}
	for i, s := range syms {
		c := ctx[i]
		if h[c] == nil {
			h[c] = map[int]int{}
		}
		h[c][s]++
		tot[c]++
	}
	var bits, table float64
	for c, m := range h {
		for _, n := range m {
			bits -= float64(n) * math.Log2(float64(n)/float64(tot[c]))
			table += tableBits
		}
	}
	return bits / 8, table / 8
}

// adaptiveBytes is the cost in bytes of syms under adaptive counts per
// context (every symbol starts at 0.02), as an adaptive multi-symbol range
// coder codes them.
func adaptiveBytes(syms, ctx []int) float64 {
	freq := map[int]*[256]float64{}
	tot := map[int]float64{}
	var bits float64
	for i, s := range syms {
		c := ctx[i]
		f := freq[c]
		if f == nil {
			f = new([256]float64)
			for j := range f {
				f[j] = 0.02
			}
			freq[c] = f
			tot[c] = 256 * 0.02
		}
		bits -= math.Log2(f[s] / tot[c])
		f[s]++
		tot[c]++
	}
	return bits / 8
}

func TestByteCoderBound(t *testing.T) {
	old, nw := statsPair(t)
	if ex := prepareExe(old, nw); ex != nil {
		// The exe methods code the filtered files (before the reference
		// prediction, which changes some more bytes to zero).
		old, nw = ex.fo, ex.fn
		t.Log("executable: the filtered files")
	}
	m, err := newMatcher(old)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := diffOps(context.Background(), m, nw, workersForTest, nil)
	if err != nil {
		t.Fatal(err)
	}
	costs, counts = [8]float64{}, [8]int{}
	s := encodeScript(old, nw, ops)
	var vals, vOld, vLast, vZero, exts, eP1, eZero []int
	var np int64
	last := 0
	var prev byte
	for _, o := range ops {
		for i := int64(0); i < o.addLen; i++ {
			ob := old[o.oldPos+i]
			d := int(nw[np+i] - ob)
			if d != 0 {
				vals = append(vals, d)
				vOld = append(vOld, int(ob))
				vLast = append(vLast, last)
				vZero = append(vZero, 0)
				last = d
			}
		}
		np += o.addLen
		if np > 0 {
			prev = nw[np-1]
		}
		for i := int64(0); i < o.extraLen; i++ {
			exts = append(exts, int(nw[np+i]))
			eP1 = append(eP1, int(prev))
			eZero = append(eZero, 0)
			prev = nw[np+i]
		}
		np += o.extraLen
	}
	t.Logf("cm1 stream %d bytes", len(s))
	for i := range 7 {
		t.Logf("cat %d: %d decisions, %.0f bytes", i, counts[i], costs[i]/8)
	}
	t.Logf("non-zero diffs %d; cm1 cost (rep flag + value bits) %.0f bytes", len(vals), (costs[2]+costs[6])/8)
	b0, t0 := staticBytes(vals, vZero, 8)
	b1, t1 := staticBytes(vals, vOld, 8)
	cl := make([]int, len(vals))
	for i := range vals {
		cl[i] = vOld[i] >> 4
	}
	b2, t2 := staticBytes(vals, cl, 8)
	t.Logf("values static o0 %.0f+%.0f; static ctx=old byte %.0f+%.0f; static ctx=old>>4 (16 clusters) %.0f+%.0f", b0, t0, b1, t1, b2, t2)
	t.Logf("values adaptive o0 %.0f; adaptive ctx=old %.0f; adaptive ctx=last %.0f", adaptiveBytes(vals, vZero), adaptiveBytes(vals, vOld), adaptiveBytes(vals, vLast))
	t.Logf("extras %d; cm1 cost %.0f bytes", len(exts), costs[3]/8)
	e0, et0 := staticBytes(exts, eZero, 8)
	e1, et1 := staticBytes(exts, eP1, 8)
	t.Logf("extras static o0 %.0f+%.0f; static o1 %.0f+%.0f; adaptive o0 %.0f, adaptive o1 %.0f", e0, et0, e1, et1, adaptiveBytes(exts, eZero), adaptiveBytes(exts, eP1))
}
