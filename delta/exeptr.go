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
	"sort"
)

// Kinds of data words a dataPredictor predicts.
const (
	wordPointer = iota // 8 bytes: an address (low 32 bits predicted)
	wordRel32          // 4 bytes: an offset from the word's own address
)

// dataPredictor predicts the words of one kind in the new file's pointer
// ranges.
type dataPredictor struct {
	p       *predictor // equivalences, old file, address maps; its own memory
	ranges  []codeRange
	kind    int
	width   int64
	oldCode []codeRange // wordRel32: the old code ranges, which targets must fall in
	ri      int
	next    int64
	started bool
}

func newDataPredictor(p *predictor, ranges []codeRange, kind int) *dataPredictor {
	q := *p
	q.k = 0
	q.mem = newTargetMemory()
	w := int64(8)
	if kind == wordRel32 {
		w = 4
	}
	return &dataPredictor{p: &q, ranges: ranges, kind: kind, width: w}
}

// inCode reports whether old file offset off is in a code range.
func (dp *dataPredictor) inCode(off int64) bool {
	i := sort.Search(len(dp.oldCode), func(i int) bool { return dp.oldCode[i].end() > off })
	return i < len(dp.oldCode) && dp.oldCode[i].off <= off
}

// target returns the old target address of the word told at old offset q
// and the base it is relative to in the new file at op, if the word is one
// of the predictor's kind.
func (dp *dataPredictor) target(q, op int64, told uint64) (va int64, newBase uint32, ok bool) {
	m := dp.p.oldMap
	if dp.kind == wordPointer {
		_, ok = m.toOff(int64(told))
		return int64(told), 0, ok
	}
	self, ok1 := m.toVA(q)
	selfNew, ok2 := dp.p.newMap.toVA(op)
	if ok1 && ok2 {
		va = self + int64(int32(told))
		if off, ok := m.toOff(va); ok && dp.inCode(off) {
			return va, uint32(selfNew), true
		}
	}
	return 0, 0, false
}

// word predicts (fwd) or un-predicts the word at new offset op, held in b:
// its low 32 bits become a − p + t, with t the old word's and p the
// predicted new word (the predicted new target minus the base).
func (dp *dataPredictor) word(op int64, b []byte, fwd bool) {
	q, ok := dp.p.oldAtAnyN(op, dp.width)
	if !ok {
		return
	}
	var told64 uint64
	if dp.width == 8 {
		told64 = binary.LittleEndian.Uint64(dp.p.fo[q:])
	} else {
		told64 = uint64(binary.LittleEndian.Uint32(dp.p.fo[q:]))
	}
	va, base, ok := dp.target(q, op, told64)
	if !ok {
		return
	}
	told := uint32(told64)
	key := uint32(va)
	tpred := dp.p.predict(key, va) - base
	v := binary.LittleEndian.Uint32(b)
	a := v - told + tpred
	if fwd {
		a = v - tpred + told
		dp.p.learn(key, v+base)
	} else {
		dp.p.learn(key, a+base)
	}
	binary.LittleEndian.PutUint32(b, a)
}

// run transforms the words inside buf (stream offsets [base, base+len))
// in order and returns the offset up to which buf is final.
func (dp *dataPredictor) run(buf []byte, base int64, fwd bool) int64 {
	lim := base + int64(len(buf))
	w := dp.width
	for dp.ri < len(dp.ranges) {
		r := dp.ranges[dp.ri]
		if !dp.started {
			dp.next, dp.started = (r.off+w-1)/w*w, true
		}
		if dp.next+w > r.end() {
			dp.ri++
			dp.started = false
			continue
		}
		if dp.next+w > lim {
			return max(min(dp.next, lim), base)
		}
		dp.word(dp.next, buf[dp.next-base:dp.next-base+w], fwd)
		dp.next += w
	}
	return lim
}

// newDataPredictors returns the predictors of the pointer ranges, in the
// order the writer runs them: pointers, then relative words.
func newDataPredictors(p *predictor, ranges, oldCode []codeRange) []*dataPredictor {
	ptr := newDataPredictor(p, ranges, wordPointer)
	rel := newDataPredictor(p, ranges, wordRel32)
	rel.oldCode = oldCode
	return []*dataPredictor{ptr, rel}
}

// dataWriter un-predicts the data words as the new file streams through.
type dataWriter struct {
	w  io.Writer
	dp *dataPredictor
	h  holdBack
}

func (u *dataWriter) undo(buf []byte, base int64) int64 { return u.dp.run(buf, base, false) }

func (u *dataWriter) Write(p []byte) (int, error) {
	if err := u.h.write(u.w, p, u.undo); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (u *dataWriter) flush() error { return u.h.flush(u.w, u.undo) }

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
