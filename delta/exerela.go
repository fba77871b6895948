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

// relaPredictor predicts the addends of the new file's RELA records.
type relaPredictor struct {
	p          *predictor // equivalences and the filtered old file
	oldR, newR []codeRange
	ri         int   // current new range
	next       int64 // offset of the next addend to predict
	started    bool
}

func newRelaPredictor(p *predictor, oldR, newR []codeRange) *relaPredictor {
	q := *p
	q.k = 0
	return &relaPredictor{p: &q, oldR: oldR, newR: newR}
}

// oldAddend reports whether q is the addend offset of an old record.
func (rp *relaPredictor) oldAddend(q int64) bool {
	for _, r := range rp.oldR {
		if rec := q - relaAddend; rec >= r.off && rec+relaRecord <= r.end() {
			return (rec-r.off)%relaRecord == 0
		}
	}
	return false
}

// field predicts (fwd) or un-predicts the low 32 bits v of the addend at
// new offset op.
func (rp *relaPredictor) field(op int64, v uint32, fwd bool) uint32 {
	q, ok := rp.p.oldAtAny(op)
	if !ok || !rp.oldAddend(q) {
		return v
	}
	told := binary.LittleEndian.Uint32(rp.p.fo[q:])
	tpred := told
	if tp, ok := rp.p.mapOld(int64(told)); ok {
		tpred = uint32(tp)
	}
	if fwd {
		return v - tpred + told
	}
	return v - told + tpred
}

// run transforms the addends inside buf (stream offsets [base, base+len))
// in order and returns the offset up to which buf is final.
func (rp *relaPredictor) run(buf []byte, base int64, fwd bool) int64 {
	lim := base + int64(len(buf))
	for rp.ri < len(rp.newR) {
		r := rp.newR[rp.ri]
		if !rp.started {
			rp.next, rp.started = r.off+relaAddend, true
		}
		if rp.next >= r.end() {
			rp.ri++
			rp.started = false
			continue
		}
		if rp.next+4 > lim {
			return min(rp.next, lim)
		}
		p := buf[rp.next-base : rp.next-base+4]
		binary.LittleEndian.PutUint32(p, rp.field(rp.next, binary.LittleEndian.Uint32(p), fwd))
		rp.next += relaRecord
	}
	return lim
}

// relaWriter un-predicts the addends as the new file streams through.
type relaWriter struct {
	w  io.Writer
	rp *relaPredictor
	h  holdBack
}

func (u *relaWriter) undo(buf []byte, base int64) int64 { return u.rp.run(buf, base, false) }

func (u *relaWriter) Write(p []byte) (int, error) {
	if err := u.h.write(u.w, p, u.undo); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (u *relaWriter) flush() error { return u.h.flush(u.w, u.undo) }
