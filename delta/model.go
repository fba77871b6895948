package delta

import "math"

// Context-mixing model for the bsdiff edit script (the "cm1" coder of
// docs/FORMAT.md). Each binary decision is predicted by a few adaptive
// counters selected by contexts; a small gated linear mixer combines their
// predictions in the logistic domain, and the range coder codes the bit with
// the mixed probability. Encoder and decoder run the very same model code, so
// they stay in step bit for bit.

var (
	stretchTab [probMax]int32
	squashTab  [4096]int32 // squash(x) for x in [-2048, 2047]
	rateTab    [1024]int32
)

func init() {
	for i := range squashTab {
		x := float64(i-2048) / 256
		v := probMax / (1 + math.Exp(-x))
		squashTab[i] = int32(min(max(v, 1), probMax-1))
	}
	// stretch is the inverse of squash.
	pi := 0
	for x := -2047; x <= 2047; x++ {
		v := int(squash(int32(x)))
		for j := pi; j <= v; j++ {
			stretchTab[j] = int32(x)
		}
		pi = v + 1
	}
	for j := pi; j < probMax; j++ {
		stretchTab[j] = 2047
	}
	for i := range rateTab {
		rateTab[i] = int32(65536 / (float64(i) + 1.6))
	}
}

// costStats enables per-category cost accounting in tests of the model.
const costStats = false

func squash(x int32) int32 {
	if x > 2047 {
		x = 2047
	}
	if x < -2047 {
		x = -2047
	}
	return squashTab[x+2048]
}

// counter is an adaptive probability: 12 bits of P(1) above a 4-bit hit
// count that sets the adaptation rate (fast at first, then 1/(limit+1.6)).
type counter uint16

const counterInit = counter(2048 << 4)

func (c counter) p() int32 { return int32(c >> 4) }

func (c *counter) update(bit int, limit uint32) {
	n := uint32(*c) & 15
	p := int32(*c >> 4)
	if n < limit {
		n++
	}
	target := int32(bit) << 12
	p += (target - p) * rateTab[n] >> 16
	p = min(max(p, 1), probMax-1)
	*c = counter(uint32(p)<<4 | n)
}

func newCounters(n int) []counter {
	t := make([]counter, n)
	if n == 0 {
		return t
	}
	// Filled by doubling copies (memmove), several times faster than a
	// store per counter on the ~1.5 MiB of a model.
	t[0] = counterInit
	for done := 1; done < n; done *= 2 {
		copy(t[done:], t[:done])
	}
	return t
}

// mixer weights for nIn inputs, one set per selector value.
type mixer struct {
	w   []int32
	nIn int
}

func newMixer(nIn, sets int) *mixer {
	m := &mixer{w: make([]int32, nIn*sets), nIn: nIn}
	for i := range m.w {
		m.w[i] = 1 << 16 / int32(nIn)
	}
	return m
}

// coder is either side of the range coder; the model calls bit with its
// probability and the encoder's bit, and gets back the coded bit.
type coder struct {
	enc  *rcEncoder
	dec  *rcDecoder
	cat  int
	cost *[8]float64
	cnt  *[8]int
}

func (c *coder) bit(p1 int32, bit int) int {
	if p1 < 1 {
		p1 = 1
	} else if p1 > probMax-1 {
		p1 = probMax - 1
	}
	if c.dec != nil {
		return c.dec.decode(uint32(p1))
	}
	c.enc.encode(bit, uint32(p1))
	if costStats && c.cost != nil {
		q := float64(p1) / probMax
		if bit == 0 {
			q = 1 - q
		}
		c.cost[c.cat] -= math.Log2(q)
		c.cnt[c.cat]++
	}
	return bit
}

const (
	mixShift = 16
	lrate    = 2
)

// mix3 codes one bit predicted by three counters and weight set ws.
func (c *coder) mix3(a, b, d *counter, w []int32, bit int, limit uint32) int {
	s0, s1, s2 := stretchTab[a.p()], stretchTab[b.p()], stretchTab[d.p()]
	dot := (int64(s0)*int64(w[0]) + int64(s1)*int64(w[1]) + int64(s2)*int64(w[2])) >> mixShift
	pr := squash(int32(dot))
	y := c.bit(pr, bit)
	err := (int32(y<<probBits) - pr) * lrate
	w[0] += (s0*err + 512) >> 10
	w[1] += (s1*err + 512) >> 10
	w[2] += (s2*err + 512) >> 10
	a.update(y, limit)
	b.update(y, limit)
	d.update(y, limit)
	return y
}

func hash32(a, b uint32) uint32 {
	h := a*0x9E3779B1 ^ (b+0x7F4A7C15)*0x85EBCA77
	return h ^ h>>15
}

// mix2 codes one bit predicted by two counters and weight set w.
func (c *coder) mix2(a, b *counter, w []int32, bit int, limit uint32) int {
	s0, s1 := stretchTab[a.p()], stretchTab[b.p()]
	dot := (int64(s0)*int64(w[0]) + int64(s1)*int64(w[1])) >> mixShift
	pr := squash(int32(dot))
	y := c.bit(pr, bit)
	err := (int32(y<<probBits) - pr) * lrate
	w[0] += (s0*err + 512) >> 10
	w[1] += (s1*err + 512) >> 10
	a.update(y, limit)
	b.update(y, limit)
	return y
}
