package delta

// Reference prediction for x86-64 (the second step of exe-bsdiff-cm, after
// the filter; docs/FORMAT.md): a reference in the new file that lies in an
// equivalence (a range of the new file the patch says matches a range of
// the old file) is predicted from the old file's reference at the same
// place, with its target carried over to new coordinates through the
// equivalences; the new operand is then written as the old operand plus
// the error of the prediction. When the prediction is right — the target
// moved exactly as the equivalence that holds it — the new operand equals
// the old one and costs nothing to code, however far the target moved.

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// equiv says new[n, n+l) matches old[o, o+l).
type equiv struct{ n, o, l int64 }

// maxEquivs caps the equivalences of an exe-bsdiff-cm body.
const maxEquivs = 1 << 20

// minEquiv is the shortest add step mkdelta lists as an equivalence (on the
// corpus 256 gave the smallest patches: shorter ones are mostly chance).
const minEquiv = 256

// predictor holds what a prediction needs: the equivalences by new and by
// old position, the filtered old file and the operand offsets of its
// references.
type predictor struct {
	byNew   []equiv // sorted by n, disjoint
	byOld   []equiv // sorted by (o, n)
	fo      []byte
	oldRefs []int32 // operand offsets of the references in fo, increasing
	k       int     // cursor into byNew (offsets arrive in increasing order)
	// mem, when set (methods 8 and 9), remembers the targets already
	// coded; see targetMemory.
	mem *targetMemory
	// oldMap, newMap (methods 8 and 9, may be empty) say where each
	// file's bytes are in memory, so that a target address can be carried
	// through the equivalences, which are in file offsets.
	oldMap, newMap addrMap
}

// targetMemory is what the adaptive prediction of methods 8 and 9 learns
// as the new file is coded (docs/FORMAT.md "Methods 8 and 9"): for each
// old target, the new target it had the last time it was coded, and for
// each 4 KiB region of old targets, the shift of the last one coded there.
// Encoder and decoder fill it from the same values in the same order.
// Both tables are direct-mapped with a fixed size (a later target evicts
// an earlier one with the same slot), so memory is fixed whatever the
// input: 2.2 MiB.
type targetMemory struct {
	last, shift memTable
}

func newTargetMemory() *targetMemory {
	return &targetMemory{last: newMemTable(lastBits), shift: newMemTable(shiftBits)}
}

const (
	lastBits   = 18
	shiftBits  = 14
	shiftShift = 12 // region size of the shift table: 4 KiB
)

// memTable is a direct-mapped table of 1<<bits slots, with a bit per slot
// saying it is used.
type memTable struct {
	slot []memEntry
	used []uint64
	bits uint
}

type memEntry struct{ key, val uint32 }

func newMemTable(bits uint) memTable {
	return memTable{slot: make([]memEntry, 1<<bits), used: make([]uint64, 1<<bits/64), bits: bits}
}

func (m *memTable) index(k uint32) uint32 { return (k * 0x9E3779B1) >> (32 - m.bits) }

func (m *memTable) get(k uint32) (uint32, bool) {
	i := m.index(k)
	e := m.slot[i]
	return e.val, m.used[i/64]&(1<<(i%64)) != 0 && e.key == k
}

func (m *memTable) put(k, v uint32) {
	i := m.index(k)
	m.slot[i] = memEntry{k, v}
	m.used[i/64] |= 1 << (i % 64)
}

// predict returns the predicted new target address of old target address
// va (key is va as a 32-bit word): the new target it had when last coded
// (adaptive only); else va carried through the equivalences; else
// (adaptive only) va moved by the last shift coded in its 4 KiB region;
// else va.
func (p *predictor) predict(key uint32, va int64) uint32 {
	if p.mem != nil {
		if v, ok := p.mem.last.get(key); ok {
			return v
		}
	}
	if tp, ok := p.mapVA(va); ok {
		return uint32(tp)
	}
	if p.mem != nil {
		if sh, ok := p.mem.shift.get(key >> shiftShift); ok {
			return key + sh
		}
	}
	return key
}

// mapVA carries old address va to a new address through the equivalences:
// to an old file offset and back through the address maps when there are
// any (else addresses are file offsets).
func (p *predictor) mapVA(va int64) (int64, bool) {
	if len(p.oldMap) == 0 || len(p.newMap) == 0 {
		return p.mapOld(va)
	}
	off, ok := p.oldMap.toOff(va)
	if !ok {
		return 0, false
	}
	n, ok := p.mapOld(off)
	if !ok {
		return 0, false
	}
	return p.newMap.toVA(n)
}

// learn records that old target told is tnew in the new file.
func (p *predictor) learn(told, tnew uint32) {
	if p.mem != nil {
		p.mem.last.put(told, tnew)
		p.mem.shift.put(told>>shiftShift, tnew-told)
	}
}

// newPredictor indexes eqs (sorted by n and disjoint in new) over the
// filtered old file fo and its code ranges.
func newPredictor(arch int, eqs []equiv, fo []byte, oldR []codeRange, adapt bool) *predictor {
	p := &predictor{byNew: eqs, fo: fo}
	if adapt {
		p.mem = newTargetMemory()
	}
	p.byOld = append([]equiv(nil), eqs...)
	sort.SliceStable(p.byOld, func(i, j int) bool { return p.byOld[i].o < p.byOld[j].o })
	if arch == exeArchArm64 {
		for _, r := range oldR {
			for cur := (r.off + 3) &^ 3; cur+4 <= r.end(); cur += 4 {
				if binary.LittleEndian.Uint32(fo[cur:])&0xFC000000 == 0x94000000 {
					p.oldRefs = append(p.oldRefs, int32(cur))
				}
			}
		}
		return p
	}
	for _, r := range oldR {
		for cur := r.off; cur < r.end(); {
			if !x86First[fo[cur]] {
				cur++
				continue
			}
			k, n := x86Ref(fo[cur:min(cur+7, int64(len(fo)))], r.end()-cur)
			if k != 0 {
				p.oldRefs = append(p.oldRefs, int32(cur+k))
			}
			cur += n
		}
	}
	return p
}

// apply predicts the operand at new offset op (offsets must come in
// increasing order) and returns v with the prediction applied (fwd) or
// undone. Operands outside the filter's 25-bit set are left alone, and the
// map is a bijection on that set, so the filter's own test still tells
// converted operands apart.
func (p *predictor) apply(op int64, v uint32, fwd bool) uint32 {
	if (v+1<<24)>>25 != 0 {
		return v
	}
	q, ok := p.oldAt(op)
	if !ok {
		return v
	}
	told := binary.LittleEndian.Uint32(p.fo[q:])
	if (told+1<<24)>>25 != 0 {
		return v
	}
	// The filtered operands are file offsets of the targets as seen from
	// the reference's segment: in addresses, plus that segment's shift.
	dOld, dNew := p.oldMap.shift(q), p.newMap.shift(op)
	key := told + uint32(dOld)
	tpred := p.predict(key, int64(int32(told))+dOld) - uint32(dNew)
	var a uint32
	if fwd {
		a = v - tpred + told
	} else {
		a = v - told + tpred
	}
	a &= 1<<25 - 1
	if a&(1<<24) != 0 {
		a |= 0xFE000000
	}
	if fwd {
		p.learn(key, v+uint32(dNew))
	} else {
		p.learn(key, a+uint32(dNew))
	}
	return a
}

// oldAt returns the old offset q that the equivalence holding new
// [op, op+4) maps op to, if there is one and the old file has a reference
// at q.
func (p *predictor) oldAt(op int64) (int64, bool) {
	q, ok := p.oldAtAny(op)
	if !ok {
		return 0, false
	}
	i := sort.Search(len(p.oldRefs), func(i int) bool { return int64(p.oldRefs[i]) >= q })
	return q, i < len(p.oldRefs) && int64(p.oldRefs[i]) == q
}

// oldAtAny returns the old offset q that the equivalence holding new
// [op, op+4) maps op to, if there is one (offsets in increasing order).
func (p *predictor) oldAtAny(op int64) (int64, bool) { return p.oldAtAnyN(op, 4) }

// oldAtAnyN is oldAtAny for the n bytes at op.
func (p *predictor) oldAtAnyN(op, n int64) (int64, bool) {
	for p.k < len(p.byNew) && p.byNew[p.k].n+p.byNew[p.k].l < op+n {
		p.k++
	}
	if p.k >= len(p.byNew) || p.byNew[p.k].n > op {
		return 0, false
	}
	e := p.byNew[p.k]
	return op - e.n + e.o, true
}

// mapOld carries old offset t to new coordinates through the last
// equivalence (by old start) that starts at or before it, if it holds t.
func (p *predictor) mapOld(t int64) (int64, bool) {
	j := sort.Search(len(p.byOld), func(i int) bool { return p.byOld[i].o > t }) - 1
	if j >= 0 && t < p.byOld[j].o+p.byOld[j].l {
		return t - p.byOld[j].o + p.byOld[j].n, true
	}
	return 0, false
}

// applyBL is apply for an arm64 BL at new offset op whose filtered imm26 is
// a target word index: predicted from the old BL at the same place, its
// target carried through the equivalences (when the shift keeps word
// alignment); all 2^26 values take part, so it is a bijection outright.
func (p *predictor) applyBL(op int64, imm uint32, fwd bool) uint32 {
	q, ok := p.oldAt(op)
	if !ok {
		return imm
	}
	told := binary.LittleEndian.Uint32(p.fo[q:]) & 0x03FFFFFF
	dOld, dNew := p.oldMap.shift(q), p.newMap.shift(op)
	key := told*4 + uint32(dOld)
	tpred := told
	if tp := p.predict(key, int64(told)*4+dOld) - uint32(dNew); tp != told*4 && tp&3 == 0 {
		tpred = (tp >> 2) & 0x03FFFFFF
	}
	var a uint32
	if fwd {
		a = imm
		imm = (imm - tpred + told) & 0x03FFFFFF
	} else {
		imm = (imm - told + tpred) & 0x03FFFFFF
		a = imm
	}
	p.learn(key, a*4+uint32(dNew))
	return imm
}

// equivsOf lists the add steps of ops of at least minEquiv bytes.
func equivsOf(ops []op) []equiv {
	var eqs []equiv
	var np int64
	for _, o := range ops {
		if o.addLen >= minEquiv && len(eqs) < maxEquivs {
			eqs = append(eqs, equiv{np, o.oldPos, o.addLen})
		}
		np += o.addLen + o.extraLen
	}
	return eqs
}

// appendEquivs codes eqs: uvarint count, then per equivalence uvarint gap
// in new (from the end of the previous one), varint old start minus the
// previous old end, uvarint length.
func appendEquivs(b []byte, eqs []equiv) []byte {
	b = binary.AppendUvarint(b, uint64(len(eqs)))
	var pn, po int64
	for _, e := range eqs {
		b = binary.AppendUvarint(b, uint64(e.n-pn))
		b = binary.AppendVarint(b, e.o-po)
		b = binary.AppendUvarint(b, uint64(e.l))
		pn, po = e.n+e.l, e.o+e.l
	}
	return b
}

// parseEquivs reads what appendEquivs wrote and checks every equivalence
// against the file sizes (non-empty, in order and disjoint in new, inside
// both files); it returns the rest of p.
func parseEquivs(p []byte, oldSize, newSize int64) ([]equiv, []byte, error) {
	bad := func(what string) ([]equiv, []byte, error) {
		return nil, nil, fmt.Errorf("%w: exe-bsdiff-cm: %s", ErrCorrupt, what)
	}
	cnt, k := binary.Uvarint(p)
	if k <= 0 {
		return bad("truncated equivalence table")
	}
	p = p[k:]
	if cnt > maxEquivs {
		return bad(fmt.Sprintf("%d equivalences (at most %d)", cnt, maxEquivs))
	}
	var eqs []equiv
	var pn, po int64
	for range cnt {
		gap, k1 := binary.Uvarint(p)
		if k1 <= 0 {
			return bad("truncated equivalence table")
		}
		d, k2 := binary.Varint(p[k1:])
		if k2 <= 0 {
			return bad("truncated equivalence table")
		}
		l, k3 := binary.Uvarint(p[k1+k2:])
		if k3 <= 0 {
			return bad("truncated equivalence table")
		}
		p = p[k1+k2+k3:]
		if gap > uint64(newSize) || l == 0 || l > uint64(newSize) || d < -oldSize || d > oldSize {
			return bad("equivalence outside the files")
		}
		n, o := pn+int64(gap), po+d
		if n+int64(l) > newSize || o < 0 || o > oldSize || int64(l) > oldSize-o {
			return bad("equivalence outside the files")
		}
		eqs = append(eqs, equiv{n, o, int64(l)})
		pn, po = n+int64(l), o+int64(l)
	}
	return eqs, p, nil
}
