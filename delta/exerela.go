package delta

// Relocation tables (x86-64 ELF): the addend of each Elf64_Rela record of
// a RELA section (.rela.dyn: mostly R_X86_64_RELATIVE, whose addend is the
// address of a function or constant) is predicted like a code reference:
// from the addend of the old record the equivalences put at the same place,
// carried through the equivalences. Their low 32 bits are rewritten, mod
// 2^32 (docs/FORMAT.md, method 4).

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
)

// relaRecord is the size of an Elf64_Rela record; relaAddend the offset of
// its addend.
const (
	relaRecord = 24
	relaAddend = 16
)

// exeRela returns the RELA sections of an x86-64 ELF file (records of 24
// bytes), or nil. Like exeCode it never panics.
func exeRela(b []byte) (rs []codeRange) {
	defer func() {
		if recover() != nil {
			rs = nil
		}
	}()
	if !bytes.HasPrefix(b, []byte("\x7fELF")) {
		return nil
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil || f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return nil
	}
	for _, s := range f.Sections {
		n := s.FileSize - s.FileSize%relaRecord
		if s.Type == elf.SHT_RELA && s.Entsize == relaRecord && n > 0 && s.Offset < uint64(len(b)) && n <= uint64(len(b))-s.Offset {
			rs = append(rs, codeRange{int64(s.Offset), int64(n)})
		}
	}
	rs = normRanges(rs)
	for _, r := range rs { // merged neighbours must still be whole records
		if r.n%relaRecord != 0 {
			return nil
		}
	}
	if len(rs) > maxExeRanges {
		return nil
	}
	return rs
}

// relaPredictor predicts the addends of the new file's RELA records (and,
// in methods 8 and 9, their offsets).
type relaPredictor struct {
	p          *predictor // equivalences and the filtered old file
	oldR, newR []codeRange
	ri         int   // current new range
	next       int64 // offset of the next record to predict
	started    bool
	// offShift is the shift of the last record offset coded (methods 8
	// and 9): record offsets move in runs, as the data they point at does.
	offShift uint32
}

func newRelaPredictor(p *predictor, oldR, newR []codeRange) *relaPredictor {
	q := *p
	q.k = 0
	if p.mem != nil {
		q.mem = newTargetMemory() // the addends learn apart from the code
	}
	return &relaPredictor{p: &q, oldR: oldR, newR: newR}
}

// oldRecord reports whether q is the start of an old record.
func (rp *relaPredictor) oldRecord(q int64) bool {
	for _, r := range rp.oldR {
		if q >= r.off && q+relaRecord <= r.end() {
			return (q-r.off)%relaRecord == 0
		}
	}
	return false
}

// record predicts (fwd) or un-predicts the record at new offset rec, held
// in b: the low 32 bits of its addend and, in methods 8 and 9, of its
// offset.
func (rp *relaPredictor) record(rec int64, b []byte, fwd bool) {
	q0, ok0 := rp.p.oldAtAny(rec)
	q, ok := rp.p.oldAtAny(rec + relaAddend)
	if !ok || !rp.oldRecord(q-relaAddend) {
		return
	}
	q -= relaAddend
	if rp.p.mem != nil && ok0 && q0 == q {
		// The offset: the old record's, moved by the last shift coded
		// (when one equivalence holds the whole record).
		told := binary.LittleEndian.Uint32(rp.p.fo[q:])
		v := binary.LittleEndian.Uint32(b)
		if fwd {
			binary.LittleEndian.PutUint32(b, v-rp.offShift)
			rp.offShift = v - told
		} else {
			a := v + rp.offShift
			binary.LittleEndian.PutUint32(b, a)
			rp.offShift = a - told
		}
	}
	told := binary.LittleEndian.Uint32(rp.p.fo[q+relaAddend:])
	tpred := rp.p.predict(told, int64(told))
	v := binary.LittleEndian.Uint32(b[relaAddend:])
	a := v - told + tpred
	if fwd {
		a = v - tpred + told
		rp.p.learn(told, v)
	} else {
		rp.p.learn(told, a)
	}
	binary.LittleEndian.PutUint32(b[relaAddend:], a)
}

// run transforms the records inside buf (stream offsets [base, base+len))
// in order and returns the offset up to which buf is final.
func (rp *relaPredictor) run(buf []byte, base int64, fwd bool) int64 {
	lim := base + int64(len(buf))
	for rp.ri < len(rp.newR) {
		r := rp.newR[rp.ri]
		if !rp.started {
			rp.next, rp.started = r.off, true
		}
		if rp.next >= r.end() {
			rp.ri++
			rp.started = false
			continue
		}
		if rp.next+relaRecord > lim {
			return max(min(rp.next, lim), base)
		}
		rp.record(rp.next, buf[rp.next-base:rp.next-base+relaRecord], fwd)
		rp.next += relaRecord
	}
	return lim
}

// relaWriter un-predicts the records as the new file streams through.
func relaWriter(w io.Writer, rp *relaPredictor) *stageWriter {
	return &stageWriter{w: w, run: func(buf []byte, base int64) int64 { return rp.run(buf, base, false) }}
}
