package delta

// A binary arithmetic (range) coder in the style of LZMA's: 32-bit range,
// carry propagation through a cached byte, probabilities of 12 bits. The
// encoder writes exactly as many bytes as the decoder reads, so a decoder can
// tell a truncated stream (it ran out) and trailing bytes (some are left).

const (
	probBits = 12
	probMax  = 1 << probBits
	rcTop    = 1 << 24
)

type rcEncoder struct {
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int64
	out       []byte
}

func newEncoder() *rcEncoder {
	return &rcEncoder{rng: 0xFFFFFFFF, cacheSize: 1}
}

// encode codes bit with p1, the probability that bit is 1, in (0, probMax).
func (e *rcEncoder) encode(bit int, p1 uint32) {
	bound := (e.rng >> probBits) * p1
	if bit != 0 {
		e.rng = bound
	} else {
		e.low += uint64(bound)
		e.rng -= bound
	}
	for e.rng < rcTop {
		e.rng <<= 8
		e.shiftLow()
	}
}

func (e *rcEncoder) shiftLow() {
	if uint32(e.low) < 0xFF000000 || e.low>>32 != 0 {
		carry := byte(e.low >> 32)
		temp := e.cache
		for {
			e.out = append(e.out, temp+carry)
			temp = 0xFF
			e.cacheSize--
			if e.cacheSize == 0 {
				break
			}
		}
		e.cache = byte(e.low >> 24)
	}
	e.cacheSize++
	e.low = (e.low & 0x00FFFFFF) << 8
}

// finish flushes the coder and returns the stream.
func (e *rcEncoder) finish() []byte {
	for range 5 {
		e.shiftLow()
	}
	return e.out
}

type rcDecoder struct {
	code    uint32
	rng     uint32
	in      []byte
	pos     int
	overrun bool // the stream ended before the decoder was done
}

func newDecoder(in []byte) *rcDecoder {
	d := &rcDecoder{rng: 0xFFFFFFFF, in: in}
	for range 5 {
		d.code = d.code<<8 | uint32(d.next())
	}
	return d
}

func (d *rcDecoder) next() byte {
	if d.pos >= len(d.in) {
		d.overrun = true
		return 0
	}
	b := d.in[d.pos]
	d.pos++
	return b
}

func (d *rcDecoder) decode(p1 uint32) int {
	bound := (d.rng >> probBits) * p1
	var bit int
	if d.code < bound {
		d.rng = bound
		bit = 1
	} else {
		d.code -= bound
		d.rng -= bound
	}
	for d.rng < rcTop {
		d.rng <<= 8
		d.code = d.code<<8 | uint32(d.next())
	}
	return bit
}
