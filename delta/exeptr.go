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
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// Kinds of data words a dataPredictor predicts.
const (
	wordPointer = iota // 8 bytes: an address (low 32 bits predicted)
	wordRel32          // 4 bytes: an offset from the word's own address
	wordBased          // 4 bytes: an offset from its table's base address
)

// dataPredictor predicts the words of one kind in the new file's pointer
// ranges.
type dataPredictor struct {
	p       *predictor // equivalences, old file, address maps; its own memory
	ranges  []codeRange
	kind    int
	width   int64
	oldCode []codeRange // wordRel32: the old code ranges, which targets must fall in
	bases   [][2]uint64 // wordBased: per range, the table's old and new base addresses
	ri      int
	next    int64
	started bool
}

func newDataPredictor(p *predictor, ranges []codeRange, kind int) *dataPredictor {
	q := *p
	q.k = 0
	q.mem = newTargetMemory()
	w := int64(8)
	if kind != wordPointer {
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
	switch dp.kind {
	case wordPointer:
		_, ok = m.toOff(int64(told))
		return int64(told), 0, ok
	case wordBased:
		b := dp.bases[dp.ri]
		va = int64(b[0] + uint64(int64(int32(told))))
		_, ok = m.toOff(va)
		return va, uint32(b[1]), ok
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
			if dp.kind == wordBased {
				dp.next = r.off // tables are words from their start
			}
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

// newDataPredictors returns the predictors of the pointer ranges and the
// tables, in the order the writer runs them: pointers, relative words,
// then the tables' words.
func newDataPredictors(p *predictor, ranges, oldCode []codeRange, tabs []baseTable) []*dataPredictor {
	ptr := newDataPredictor(p, ranges, wordPointer)
	rel := newDataPredictor(p, ranges, wordRel32)
	rel.oldCode = oldCode
	out := []*dataPredictor{ptr, rel}
	if len(tabs) > 0 {
		rs := make([]codeRange, len(tabs))
		bases := make([][2]uint64, len(tabs))
		for i, t := range tabs {
			rs[i], bases[i] = codeRange{t.off, t.n}, [2]uint64{t.oldBase, t.newBase}
		}
		tb := newDataPredictor(p, rs, wordBased)
		tb.bases = bases
		out = append(out, tb)
	}
	return out
}

// maxTables caps the base-relative tables of a body.
const maxTables = 16

// baseTable is a table of 4-byte words in the new file at [off, off+n),
// each an offset from the table's base address (newBase; oldBase in the
// old file): .eh_frame_hdr's search table (ELF).
type baseTable struct {
	off, n           int64
	oldBase, newBase uint64
}

// appendTables codes tabs: uvarint count, then per table uvarint offset
// (from the end of the previous one), uvarint length, uvarint old base,
// uvarint new base.
func appendTables(b []byte, tabs []baseTable) []byte {
	b = binary.AppendUvarint(b, uint64(len(tabs)))
	var prev int64
	for _, t := range tabs {
		for _, v := range []uint64{uint64(t.off - prev), uint64(t.n), t.oldBase, t.newBase} {
			b = binary.AppendUvarint(b, v)
		}
		prev = t.off + t.n
	}
	return b
}

// parseTables reads what appendTables wrote and checks it: at most
// maxTables, each non-empty, a multiple of 4 long, in order, disjoint and
// inside a file of size bytes (bases are free). It returns the rest of p.
func parseTables(p []byte, size int64) ([]baseTable, []byte, error) {
	bad := func(what string) ([]baseTable, []byte, error) {
		return nil, nil, fmt.Errorf("%w: exe body: table list: %s", ErrCorrupt, what)
	}
	cnt, k := binary.Uvarint(p)
	if k <= 0 {
		return bad("truncated")
	}
	p = p[k:]
	if cnt > maxTables {
		return bad(fmt.Sprintf("%d tables (at most %d)", cnt, maxTables))
	}
	var tabs []baseTable
	var prev uint64
	for range cnt {
		var v [4]uint64
		for i := range v {
			if v[i], k = binary.Uvarint(p); k <= 0 {
				return bad("truncated")
			}
			p = p[k:]
		}
		gap, n := v[0], v[1]
		if n == 0 || n%4 != 0 || gap > uint64(size)-prev || n > uint64(size)-prev-gap {
			return bad(fmt.Sprintf("table outside the %d-byte file or not whole words", size))
		}
		tabs = append(tabs, baseTable{int64(prev + gap), int64(n), v[2], v[3]})
		prev += gap + n
	}
	return tabs, p, nil
}

// exeTables returns the base-relative tables of new file newb that old
// file old has too (matched by kind), sorted (nil when none).
func exeTables(old, newb []byte) []baseTable {
	o, n := fileTables(old), fileTables(newb)
	var out []baseTable
	for kind, nt := range n {
		if ot, ok := o[kind]; ok && nt.n > 0 {
			out = append(out, baseTable{off: nt.off, n: nt.n, oldBase: ot.newBase, newBase: nt.newBase})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].off < out[j].off })
	for i := 1; i < len(out); i++ {
		if out[i].off < out[i-1].off+out[i-1].n {
			return nil
		}
	}
	return out
}

// fileTables finds the tables of one file by kind (".eh_frame_hdr"; PE's
// .pdata, image-relative, made the corpus's Go PE pair larger), each with
// its base in newBase. It never panics.
func fileTables(b []byte) (t map[string]baseTable) {
	defer func() {
		if recover() != nil {
			t = nil
		}
	}()
	t = map[string]baseTable{}
	size := uint64(len(b))
	switch {
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			return nil
		}
		s := f.Section(".eh_frame_hdr")
		// version 1, eh_frame_ptr sdata4 (pcrel or not), fde_count
		// udata4, table datarel|sdata4: the table follows 12 bytes in.
		if s == nil || s.Type != elf.SHT_PROGBITS || s.Offset >= size || s.Size < 12 || s.Size > size-s.Offset {
			return t
		}
		h := b[s.Offset:]
		if h[0] != 1 || h[1]&0x0F != 0x0B || h[2] != 0x03 || h[3] != 0x3B {
			return t
		}
		cnt := uint64(binary.LittleEndian.Uint32(h[8:]))
		if cnt == 0 || cnt > (s.Size-12)/8 {
			return t
		}
		t[".eh_frame_hdr"] = baseTable{off: int64(s.Offset + 12), n: int64(cnt * 8), newBase: s.Addr}
	}
	return t
}

// dataWriter un-predicts the data words as the new file streams through.
func dataWriter(w io.Writer, dp *dataPredictor) *stageWriter {
	return &stageWriter{w: w, run: func(buf []byte, base int64) int64 { return dp.run(buf, base, false) }}
}

// pointerRanges returns the new file's pointer ranges: the segments of m
// minus the code ranges and the relocation tables (nil when there are more
// than maxExeRanges).
func pointerRanges(m addrMap, code, rela []codeRange, tabs []baseTable) []codeRange {
	for _, t := range tabs {
		rela = append(append([]codeRange(nil), rela...), codeRange{t.off, t.n})
	}
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
