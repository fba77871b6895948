package delta

import (
	"bufio"
	"fmt"
	"io"
	"math/bits"
)

// scriptModel codes a bsdiff edit script (control triples, difference bytes
// and extra bytes) as one range-coded stream ("cm1" in docs/FORMAT.md).
//
// What makes it smaller than bzip2 on bsdiff's streams: both sides know the
// old file, so the difference bytes are predicted from the old bytes under
// them (the bytes of an instruction whose address field moved), from the
// recent pattern of changed bytes, and from the last non-zero difference
// (code that moved by the same amount changes its references by the same
// amount); extra bytes use order-1 and order-2 contexts of the new file.
type scriptModel struct {
	c coder

	ints []counter // control integers: per field, bit-length tree and leading mantissa bits

	s1, s2, s3 []counter // superblock of 32 difference bytes all zero?
	smix       *mixer
	b1, b2, b3 []counter // block of 8 difference bytes all zero?
	bmix       *mixer
	z1, z2, z3 []counter // difference is zero?
	zmix       *mixer
	r1, r2, r3 []counter // non-zero difference repeats the last one?
	rmix       *mixer
	v1, v2, v3 []counter // non-zero difference value, bit by bit
	vmix       *mixer
	e1, e2, e3 []counter // extra bytes, bit by bit
	emix       *mixer

	// cm2 only (nil in cm1): the flag "the non-zero difference equals the
	// one last coded, by the 8-bit tree, over the same old byte".
	cm2    bool
	pred   [256]byte // per old byte, the last value coded by the tree
	p1, p2 []counter
	pmix   *mixer

	shist  uint32 // one bit per recent superblock: 1 = some difference
	bhist  uint32 // one bit per recent block: 1 = some difference
	rhist  uint32 // one bit per recent non-zero difference: 1 = repeat
	zhist  uint32 // one bit per recent difference byte: 1 = non-zero
	lastNZ uint32 // last non-zero difference byte
	prev   uint32 // last two output bytes
}

const (
	fieldAdd = iota
	fieldExtra
	fieldSeek
	numFields

	intTreeSize = 128                                        // bit lengths 0..64
	intMantSize = 64 * 16                                    // per bit length, the first 3 bits below the top one as a tree
	intLowSize  = 64                                         // lower mantissa bits, by position
	intFieldSz  = intTreeSize + intMantSize + intLowSize + 2 // + sign
)

// Counter adaptation limits (the rate settles at 1/(limit+1.6)): the
// statistics of a patch change from region to region, so fast adaptation
// wins; measured on esbuild pairs, limits of 10-15 beat 127 by 10-15%.
const (
	limitFast = 12 // zero/non-zero and repeat flags
	limitSlow = 12 // integers, values, extra bytes
)

// Sizes (log2 counters) of the hashed-context tables: larger tables predict
// a little better (16/18/20 gave 3-4% smaller patches) but miss the CPU
// caches more often and slow decoding down about 2x.
const (
	hBlk  = 12
	hZero = 14
	hVal  = 16
)

// newScriptModelCoder is newScriptModel for cm1 (cm2 false) or cm2, which
// adds 256 KiB of tables.
func newScriptModelCoder(cm2 bool) *scriptModel {
	m := newScriptModel()
	if cm2 {
		m.cm2 = true
		m.p1 = newCounters(1 << 16)
		m.p2 = newCounters(1 << 16)
		m.pmix = newMixer(3, 4)
	}
	return m
}

func newScriptModel() *scriptModel {
	return &scriptModel{
		ints: newCounters(numFields * intFieldSz),
		s1:   newCounters(1 << hBlk),
		s2:   newCounters(1 << hBlk),
		s3:   newCounters(1 << hBlk),
		smix: newMixer(3, 4),
		b1:   newCounters(1 << 16),
		b2:   newCounters(1 << hBlk),
		b3:   newCounters(1 << hBlk),
		bmix: newMixer(3, 4),
		r1:   newCounters(1 << 12),
		r2:   newCounters(1 << 16),
		r3:   newCounters(1 << hBlk),
		rmix: newMixer(3, 4),
		z1:   newCounters(1 << 16),
		z2:   newCounters(1 << 16),
		z3:   newCounters(1 << hZero),
		zmix: newMixer(3, 4),
		v1:   newCounters(1 << 16),
		v2:   newCounters(1 << 16),
		v3:   newCounters(1 << hVal),
		vmix: newMixer(3, 8),
		e1:   newCounters(1 << 16),
		e2:   newCounters(1 << hVal),
		e3:   newCounters(1 << 16),
		emix: newMixer(3, 8),
	}
}

// codeInt codes v >= 0 for field f: its bit length, then its bits below the
// top one, the first three under context, the rest by position.
func (m *scriptModel) codeInt(f int, v uint64) uint64 {
	t := m.ints[f*intFieldSz:]
	nb := bits.Len64(v)
	// bit length 0..64 as a 7-bit tree.
	node := 1
	for k := 6; k >= 0; k-- {
		b := m.c.bit(t[node].p(), (nb>>k)&1)
		t[node].update(b, limitSlow)
		node = node<<1 | b
	}
	nb = node - intTreeSize
	if nb > 64 {
		nb = 64 // only a hostile stream gets here; the caller's bounds reject it
	}
	if nb <= 1 {
		return uint64(nb)
	}
	mant := t[intTreeSize:]
	low := t[intTreeSize+intMantSize:]
	out := uint64(1)
	ctx := 1
	for i := nb - 2; i >= 0; i-- {
		var c *counter
		if nb-2-i < 3 {
			c = &mant[(nb-1)*16+ctx]
			ctx <<= 1 // the bit just coded is 0 here
		} else {
			c = &low[i]
		}
		b := m.c.bit(c.p(), int(v>>uint(i))&1)
		c.update(b, limitSlow)
		if nb-2-i < 3 {
			ctx |= b
		}
		out = out<<1 | uint64(b)
	}
	return out
}

// codeSeek codes a signed seek as sign and magnitude.
func (m *scriptModel) codeSeek(s int64) int64 {
	u := uint64(s)
	neg := 0
	if s < 0 {
		u = uint64(-s)
		neg = 1
	}
	mag := m.codeInt(fieldSeek, u)
	if mag == 0 {
		return 0
	}
	c := &m.ints[fieldSeek*intFieldSz+intFieldSz-1]
	neg = m.c.bit(c.p(), neg)
	c.update(neg, limitSlow)
	if mag > 1<<62 {
		mag = 1 << 62
	}
	if neg == 1 {
		return -int64(mag)
	}
	return int64(mag)
}

// codeSuper codes the n <= 32 difference bytes d[:n] over old[pos:pos+n]:
// whether they are all zero, then block by block. d[:n] ends up holding the
// coded bytes.
func (m *scriptModel) codeSuper(old []byte, pos int64, n int, d *[32]byte) {
	nz := 0
	for _, b := range d[:n] {
		if b != 0 {
			nz = 1
			break
		}
	}
	var w0, w1 uint32
	if n >= 8 {
		w0 = uint32(old[pos]) | uint32(old[pos+1])<<8 | uint32(old[pos+2])<<16 | uint32(old[pos+3])<<24
		w1 = uint32(old[pos+4]) | uint32(old[pos+5])<<8 | uint32(old[pos+6])<<16 | uint32(old[pos+7])<<24
	}
	sh := m.shist
	m.c.cat = 5
	nz = m.c.mix3(&m.s1[sh&(1<<hBlk-1)], &m.s2[hash32(w0, uint32(n))>>(32-hBlk)], &m.s3[hash32(w1, sh&1)>>(32-hBlk)], m.smix.w[(sh&3)*3:], nz, limitFast)
	m.shist = sh<<1 | uint32(nz)
	if nz == 0 {
		m.zhist <<= uint(n)
		m.bhist <<= uint((n + 7) / 8)
		*d = [32]byte{}
		return
	}
	seen := false
	for k := 0; k < n; k += 8 {
		bn := min(8, n-k)
		blk := (*[8]byte)(d[k : k+8])
		last := k+bn == n
		m.codeDiffs(old, pos+int64(k), bn, blk, last && !seen)
		if !seen {
			for _, b := range blk[:bn] {
				if b != 0 {
					seen = true
					break
				}
			}
		}
	}
}

// codeDiffs codes the n <= 8 difference bytes d[:n] over old[pos:pos+n]:
// first whether they are all zero, then each one's zero flag and value. It
// returns with d[:n] holding the coded bytes (the decoder passes zeros).
func (m *scriptModel) codeDiffs(old []byte, pos int64, n int, d *[8]byte, implied bool) {
	nz := 1
	if !implied {
		nz = 0
		for _, b := range d[:n] {
			if b != 0 {
				nz = 1
				break
			}
		}
		nz = m.codeBlock(old[pos:pos+int64(n)], nz)
	} else {
		m.bhist = m.bhist<<1 | 1
	}
	if nz == 0 {
		m.zhist <<= uint(n)
		*d = [8]byte{}
		return
	}
	seen := false
	for k := range n {
		p := pos + int64(k)
		o := uint32(old[p])
		var o1, o2, o3 uint32
		if p >= 3 {
			o1, o2, o3 = uint32(old[p-1]), uint32(old[p-2]), uint32(old[p-3])
		}
		zh := m.zhist
		isNZ := 1
		if k < n-1 || seen {
			isNZ = 0
			if d[k] != 0 {
				isNZ = 1
			}
			m.c.cat = 1
			i1 := o<<8 | o1
			i2 := (zh&0xff)<<8 | o
			i3 := hash32(o|o1<<8|o2<<16|o3<<24, zh&0x3) >> (32 - hZero)
			isNZ = m.c.mix3(&m.z1[i1], &m.z2[i2], &m.z3[i3], m.zmix.w[(zh&3)*3:], isNZ, limitFast)
		}
		m.zhist = zh<<1 | uint32(isNZ)
		if isNZ == 0 {
			d[k] = 0
			continue
		}
		seen = true
		d[k] = byte(m.codeValue(uint32(d[k]), o, o1, zh))
	}
}

// codeValue codes a non-zero difference byte v over old byte o.
func (m *scriptModel) codeValue(v, o, o1, zh uint32) uint32 {
	m.c.cat = 2
	rh := m.rhist
	rep := 0
	if v == m.lastNZ {
		rep = 1
	}
	rep = m.c.mix3(&m.r1[o<<2|rh&3], &m.r2[m.lastNZ<<8|o], &m.r3[hash32(o1<<8|o, zh&0xf)>>(32-hBlk)], m.rmix.w[(zh&3)*3:], rep, limitFast)
	m.rhist = rh<<1 | uint32(rep)
	if rep == 1 {
		return m.lastNZ
	}
	if pv := uint32(m.pred[o]); m.cm2 && pv != 0 && pv != m.lastNZ {
		// cm2: "equal to the value last coded over this old byte", under
		// (old byte, that value) and (last non-zero difference, that value).
		m.c.cat = 7
		hit := 0
		if v == pv {
			hit = 1
		}
		hit = m.c.mix2(&m.p1[o<<8|pv], &m.p2[m.lastNZ<<8|pv], m.pmix.w[(zh&3)*3:], hit, limitFast)
		if hit == 1 {
			m.lastNZ = pv
			return pv
		}
	}
	m.c.cat = 6
	h := hash32(o|o1<<8, m.lastNZ) >> (32 - hVal + 8) << 8
	node := uint32(1)
	for k := 7; k >= 0; k-- {
		b := m.c.mix2(&m.v1[o<<8|node], &m.v2[m.lastNZ<<8|node], m.vmix.w[k*3:], int(v>>uint(k))&1, limitSlow)
		_ = h
		node = node<<1 | uint32(b)
	}
	v = node & 0xff
	m.lastNZ = v
	m.pred[o] = byte(v)
	return v
}

// codeExtra codes one literal byte of the new file.
func (m *scriptModel) codeExtra(e uint32) uint32 {
	p1 := m.prev & 0xff
	m.c.cat = 3
	h := hash32(m.prev&0xffff, 0x5bd1) >> (32 - hVal + 8) << 8
	node := uint32(1)
	for k := 7; k >= 0; k-- {
		b := m.c.mix3(&m.e1[p1<<8|node], &m.e2[h|node], &m.e3[node], m.emix.w[k*3:], int(e>>uint(k))&1, limitSlow)
		node = node<<1 | uint32(b)
	}
	return node & 0xff
}

// codeBlock codes whether the n <= 8 difference bytes over old[0:n] are
// all zero; prev holds up to 4 old bytes before them.
func (m *scriptModel) codeBlock(old []byte, nz int) int {
	var w0, w1 uint32
	for i, b := range old {
		if i < 4 {
			w0 |= uint32(b) << (8 * i)
		} else {
			w1 |= uint32(b) << (8 * (i - 4))
		}
	}
	bh := m.bhist
	m.c.cat = 4
	nz = m.c.mix3(&m.b1[(bh&0xff)<<8|w0&0xff], &m.b2[hash32(w0, uint32(len(old)))>>(32-hBlk)], &m.b3[hash32(w1, bh&3)>>(32-hBlk)], m.bmix.w[(bh&3)*3:], nz, limitFast)
	m.bhist = bh<<1 | uint32(nz)
	return nz
}

func (m *scriptModel) push(b byte) { m.prev = m.prev<<8 | uint32(b) }

// push2 records the last two bytes of an add region (or one, when it has one).
func (m *scriptModel) push2(b []byte) {
	for _, c := range b {
		m.push(c)
	}
}

// encodeScript codes ops (which rebuild newb from old) as a cm1 stream.
func encodeScript(old, newb []byte, ops []op) []byte {
	return encodeScriptCoder(old, newb, ops, false)
}

// encodeScriptCoder codes ops as a cm1 stream, or a cm2 one when cm2 is set.
func encodeScriptCoder(old, newb []byte, ops []op, cm2 bool) []byte {
	m := newScriptModelCoder(cm2)
	m.c.enc = newEncoder()
	m.c.enc.out = make([]byte, 0, len(newb)/32+1024)
	m.c.cost = &costs
	m.c.cnt = &counts
	var np, curOld int64
	for _, o := range ops {
		if o.addLen == 0 && o.extraLen == 0 {
			continue
		}
		m.c.cat = 0
		m.codeInt(fieldAdd, uint64(o.addLen))
		m.codeInt(fieldExtra, uint64(o.extraLen))
		m.codeSeek(o.oldPos - curOld)
		op := o.oldPos
		var d [32]byte
		for i := int64(0); i < o.addLen; i += 32 {
			n := int(min(32, o.addLen-i))
			for k := range n {
				d[k] = newb[np+i+int64(k)] - old[op+i+int64(k)]
			}
			m.codeSuper(old, op+i, n, &d)
		}
		if o.addLen >= 2 {
			m.push2(newb[np+o.addLen-2 : np+o.addLen])
		} else if o.addLen == 1 {
			m.push(newb[np])
		}
		np += o.addLen
		for i := int64(0); i < o.extraLen; i++ {
			m.codeExtra(uint32(newb[np+i]))
			m.push(newb[np+i])
		}
		np += o.extraLen
		curOld = o.oldPos + o.addLen
	}
	return m.c.enc.finish()
}

// decodeScript rebuilds the new file of newSize bytes from old and a cm1
// stream, writing it to w through a 64 KiB buffer (nothing in proportion to
// newSize is allocated). It checks every control value against the sizes
// before it touches memory and fails with ErrCorrupt on any violation, on a
// stream that ends early (found within 32 bytes of output) and on bytes left
// over; a write error stops it at once.
func decodeScript(old, stream []byte, newSize int64, w io.Writer) error {
	return decodeScriptCoder(old, stream, newSize, w, false)
}

// decodeScriptCoder is decodeScript for a cm1 stream, or a cm2 one when
// cm2 is set; the checks are the same.
func decodeScriptCoder(old, stream []byte, newSize int64, w io.Writer, cm2 bool) error {
	m := newScriptModelCoder(cm2)
	m.c.dec = newDecoder(stream)
	bw := bufio.NewWriterSize(w, 64<<10)
	oldSize := int64(len(old))
	var np, curOld int64
	for np < newSize {
		add := m.codeInt(fieldAdd, 0)
		extra := m.codeInt(fieldExtra, 0)
		seek := m.codeSeek(0)
		if m.c.dec.overrun {
			return fmt.Errorf("%w: edit script ends early at output offset %d", ErrCorrupt, np)
		}
		if add == 0 && extra == 0 {
			return fmt.Errorf("%w: empty edit step at output offset %d", ErrCorrupt, np)
		}
		rem := uint64(newSize - np)
		if add > rem || extra > rem-add {
			return fmt.Errorf("%w: edit step of %d+%d bytes at output offset %d overruns the %d-byte output", ErrCorrupt, add, extra, np, newSize)
		}
		op := curOld + seek
		if seek < -oldSize || seek > oldSize || op < 0 || op > oldSize || int64(add) > oldSize-op {
			return fmt.Errorf("%w: edit step reads old bytes [%d,%d) outside the %d-byte old file", ErrCorrupt, op, op+int64(add), oldSize)
		}
		var d [32]byte
		var nb [32]byte
		for i := int64(0); i < int64(add); i += 32 {
			n := int(min(32, int64(add)-i))
			d = [32]byte{}
			m.codeSuper(old, op+i, n, &d)
			for k := range n {
				nb[k] = old[op+i+int64(k)] + d[k]
			}
			if m.c.dec.overrun {
				return fmt.Errorf("%w: edit script ends early at output offset %d", ErrCorrupt, np+i)
			}
			if _, err := bw.Write(nb[:n]); err != nil {
				return fmt.Errorf("delta: writing output: %w", err)
			}
			if n >= 2 {
				m.push2(nb[n-2 : n])
			} else {
				m.push(nb[0])
			}
		}
		np += int64(add)
		// A step may claim up to the whole output: stop as soon as the
		// stream has run out or the writer failed, not at the step's end.
		for i := uint64(0); i < extra; i++ {
			e := byte(m.codeExtra(0))
			if m.c.dec.overrun {
				return fmt.Errorf("%w: edit script ends early at output offset %d", ErrCorrupt, np+int64(i))
			}
			if err := bw.WriteByte(e); err != nil {
				return fmt.Errorf("delta: writing output: %w", err)
			}
			m.push(e)
		}
		np += int64(extra)
		curOld = op + int64(add)
		if m.c.dec.overrun {
			return fmt.Errorf("%w: edit script ends early at output offset %d", ErrCorrupt, np)
		}
	}
	if m.c.dec.pos != len(stream) {
		return fmt.Errorf("%w: %d bytes of edit script left after the output was complete", ErrCorrupt, len(stream)-m.c.dec.pos)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("delta: writing output: %w", err)
	}
	return nil
}

var costs [8]float64
var counts [8]int
