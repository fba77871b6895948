package delta

// Pointers in data (methods 8 and 9): in the pointer ranges the patch
// lists (mkdelta: the new file's mapped segments outside the code ranges
// and the relocation tables), each 8-byte word at an offset that is a
// multiple of 8 is predicted when the equivalence holding it maps it to an
// old word that is an address inside the old file's address map: its low
// 32 bits as a relocation addend's are (docs/FORMAT.md "Methods 8 and 9").
// Vtables, string slices, GOT entries and Go's type data hold such
// pointers; where their targets moved, every one of them differed.

import (
	"encoding/binary"
	"io"
)

// ptrPredictor predicts the pointers of the new file's pointer ranges.
type ptrPredictor struct {
	p       *predictor // equivalences, old file, address maps; its own memory
	ranges  []codeRange
	ri      int
	next    int64
	started bool
}

func newPtrPredictor(p *predictor, ranges []codeRange) *ptrPredictor {
	q := *p
	q.k = 0
	q.mem = newTargetMemory()
	return &ptrPredictor{p: &q, ranges: ranges}
}

// word predicts (fwd) or un-predicts the word at new offset op, held in b.
func (pp *ptrPredictor) word(op int64, b []byte, fwd bool) {
	q, ok := pp.p.oldAtAnyN(op, 8)
	if !ok {
		return
	}
	told64 := binary.LittleEndian.Uint64(pp.p.fo[q:])
	if _, ok := pp.p.oldMap.toOff(int64(told64)); !ok {
		return // not an address in the old file
	}
	told := uint32(told64)
	tpred := pp.p.predict(told, int64(told64))

	v := binary.LittleEndian.Uint32(b)
	a := v - told + tpred
	if fwd {
		a = v - tpred + told
		pp.p.learn(told, v)
	} else {
		pp.p.learn(told, a)
	}
	binary.LittleEndian.PutUint32(b, a)
}

// run transforms the words inside buf (stream offsets [base, base+len))
// in order and returns the offset up to which buf is final.
func (pp *ptrPredictor) run(buf []byte, base int64, fwd bool) int64 {
	lim := base + int64(len(buf))
	for pp.ri < len(pp.ranges) {
		r := pp.ranges[pp.ri]
		if !pp.started {
			pp.next, pp.started = (r.off+7)&^7, true
		}
		if pp.next+8 > r.end() {
			pp.ri++
			pp.started = false
			continue
		}
		if pp.next+8 > lim {
			return max(min(pp.next, lim), base)
		}
		pp.word(pp.next, buf[pp.next-base:pp.next-base+8], fwd)
		pp.next += 8
	}
	return lim
}

// ptrWriter un-predicts the pointers as the new file streams through.
type ptrWriter struct {
	w  io.Writer
	pp *ptrPredictor
	h  holdBack
}

func (u *ptrWriter) undo(buf []byte, base int64) int64 { return u.pp.run(buf, base, false) }

func (u *ptrWriter) Write(p []byte) (int, error) {
	if err := u.h.write(u.w, p, u.undo); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (u *ptrWriter) flush() error { return u.h.flush(u.w, u.undo) }

// pointerRanges returns the new file's pointer ranges: the segments of m
// minus the code ranges and the relocation tables (nil when there are more
// than maxExeRanges).
func pointerRanges(m addrMap, code, rela []codeRange) []codeRange {
	var segs []codeRange
	for _, s := range m {
		segs = append(segs, codeRange{s.off, s.n})
	}
	segs = normRanges(segs)
	cut := normRanges(append(append([]codeRange(nil), code...), rela...))
	var out []codeRange
	for _, s := range segs {
		cur := s.off
		for _, c := range cut {
			if c.end() <= cur || c.off >= s.end() {
				continue
			}
			if c.off > cur {
				out = append(out, codeRange{cur, c.off - cur})
			}
			cur = max(cur, c.end())
		}
		if cur < s.end() {
			out = append(out, codeRange{cur, s.end() - cur})
		}
	}
	if len(out) > maxExeRanges {
		return nil
	}
	return out
}
