package delta

// Executable-aware filtering (method exe-bsdiff-cm, docs/FORMAT.md): in the
// code sections of an x86-64 or arm64 executable, the relative operands of
// branches and calls are rewritten as absolute targets before diffing, so a
// call to a function that did not move is the same bytes in old and new
// even where the calling code moved. The idea is xz's BCJ filters; unlike
// them, only the code ranges named in the patch are touched (data that
// happens to hold an E8 byte stays put), and the ranges come from the
// executable's own section table on the diff side only: the client never
// parses an executable, it only filters the byte ranges the verified patch
// lists.

import (
	"bytes"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// Architectures of an exe-bsdiff-cm body.
const (
	exeArchX86_64 = 1
	exeArchArm64  = 2
)

// maxExeRanges caps the code ranges one side of an exe-bsdiff-cm body may
// list.
const maxExeRanges = 256

// codeRange is a range [off, off+n) of file offsets holding machine code.
type codeRange struct{ off, n int64 }

func (r codeRange) end() int64 { return r.off + r.n }

// exeCode returns the architecture and the code ranges of the ELF, PE or
// Mach-O file b (x86-64 or arm64; a fat Mach-O is not handled), or arch 0
// when b is none of these or its tables do not parse. It never panics: a
// panic inside debug/* on a hostile file counts as "not understood".
func exeCode(b []byte) (arch int, ranges []codeRange) {
	defer func() {
		if recover() != nil {
			arch, ranges = 0, nil
		}
	}()
	if len(b) < 64 {
		return 0, nil
	}
	r := bytes.NewReader(b)
	add := func(off, n uint64) {
		if n == 0 || off >= uint64(len(b)) {
			return
		}
		n = min(n, uint64(len(b))-off)
		ranges = append(ranges, codeRange{int64(off), int64(n)})
	}
	switch {
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		f, err := elf.NewFile(r)
		if err != nil {
			return 0, nil
		}
		switch f.Machine {
		case elf.EM_X86_64:
			arch = exeArchX86_64
		case elf.EM_AARCH64:
			arch = exeArchArm64
		default:
			return 0, nil
		}
		for _, s := range f.Sections {
			if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 {
				add(s.Offset, s.FileSize)
			}
		}
	case bytes.HasPrefix(b, []byte("MZ")):
		f, err := pe.NewFile(r)
		if err != nil {
			return 0, nil
		}
		switch f.Machine {
		case pe.IMAGE_FILE_MACHINE_AMD64:
			arch = exeArchX86_64
		case pe.IMAGE_FILE_MACHINE_ARM64:
			arch = exeArchArm64
		default:
			return 0, nil
		}
		for _, s := range f.Sections {
			if s.Characteristics&pe.IMAGE_SCN_CNT_CODE != 0 {
				add(uint64(s.Offset), uint64(s.Size))
			}
		}
	default:
		f, err := macho.NewFile(r)
		if err != nil {
			return 0, nil
		}
		switch f.Cpu {
		case macho.CpuAmd64:
			arch = exeArchX86_64
		case macho.CpuArm64:
			arch = exeArchArm64
		default:
			return 0, nil
		}
		for _, s := range f.Sections {
			// S_ATTR_PURE_INSTRUCTIONS | S_ATTR_SOME_INSTRUCTIONS
			if s.Flags&0x80000400 != 0 && s.Offset != 0 {
				add(uint64(s.Offset), s.Size)
			}
		}
	}
	ranges = normRanges(ranges)
	if len(ranges) == 0 || len(ranges) > maxExeRanges {
		return 0, nil
	}
	return arch, ranges
}

// normRanges sorts ranges and merges overlapping or touching ones.
func normRanges(rs []codeRange) []codeRange {
	sort.Slice(rs, func(i, j int) bool { return rs[i].off < rs[j].off })
	var out []codeRange
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && r.off <= out[k].end() {
			out[k].n = max(out[k].end(), r.end()) - out[k].off
			continue
		}
		out = append(out, r)
	}
	return out
}

// exeFilter rewrites the branch operands of a stream in place, in order: it
// is fed windows of the stream and says how far it could go.
type exeFilter struct {
	arch   int
	ranges []codeRange
	enc    bool
	// pred, when set (x86-64 only), is undone (enc false) before the
	// filter, or, with predOnly, applied instead of it (enc true).
	pred     *predictor
	predOnly bool
	ri       int   // current range
	cur      int64 // next stream offset to look at; all before it are final
}

// run filters buf, which holds stream offsets [base, base+len(buf)), from
// f.cur on, and returns the new f.cur: every byte before it is final. It
// stops early only where an instruction needs bytes beyond buf; with the
// whole rest of the stream in buf it always reaches its end.
func (f *exeFilter) run(buf []byte, base int64) int64 {
	lim := base + int64(len(buf))
	for f.cur < lim {
		if f.ri >= len(f.ranges) {
			f.cur = lim
			break
		}
		r := f.ranges[f.ri]
		if f.cur < r.off {
			f.cur = min(r.off, lim)
			continue
		}
		if f.cur >= r.end() {
			f.ri++
			continue
		}
		var next int64
		if f.arch == exeArchX86_64 {
			// Most bytes cannot start a reference: skip them in a tight
			// loop (bytes skipped are final).
			stop := min(r.end(), lim) - base
			i := f.cur - base
			for i < stop && !x86First[buf[i]] {
				i++
			}
			if f.cur = base + i; i == stop {
				continue
			}
			next = x86Step(buf, base, f.cur, r.end(), lim, f.x86Operand)
		} else {
			next = arm64Step(buf, base, f.cur, r.end(), lim, f)
		}
		if next < 0 {
			break // needs more bytes
		}
		f.cur = next
	}
	return f.cur
}

// rel25 converts a rel32 operand v of an instruction that ends at pos to
// an absolute target and back (enc false). Only operands within ±16 MiB
// are converted, and the result stays within that set, so that the
// decoder can tell a converted operand from one left alone: both sides
// compute on 25-bit sign-extended values, which makes the map a bijection
// on them.
func rel25(v uint32, pos int64, enc bool) uint32 {
	if (v+1<<24)>>25 != 0 {
		return v // not a sign-extended 25-bit value: left alone
	}
	var a uint32
	if enc {
		a = v + uint32(pos)
	} else {
		a = v - uint32(pos)
	}
	a &= 1<<25 - 1
	if a&(1<<24) != 0 {
		a |= 0xFE000000
	}
	return a
}

// x86Step filters the instruction at stream offset cur (range end end,
// bytes up to lim available in buf at base) and returns the offset after
// it, or -1 when it needs bytes past lim. Rewritten are the operands that
// point across functions: E8 call rel32; RIP-relative ModRM operands
// (mod 00, r/m 101) of REX + mov/lea/cmp/add/movsxd, of plain mov/lea, of
// FF 15/25 (call/jmp through a pointer) and of 0F + SSE loads and stores.
// Branches inside a function (E9 jmp, 0F 8x jcc) are left relative: on the
// corpus rewriting them made patches larger. Anything else advances one
// byte; this is a pattern scan, not a decoder, and a false hit only costs
// compression, never correctness (the map is a bijection).
func x86Step(buf []byte, base, cur, end, lim int64, xf func(v uint32, op, next int64) uint32) int64 {
	if min(cur+7, end) > lim {
		return -1
	}
	k, n := x86Ref(buf[cur-base:], end-cur)
	if k == 0 {
		return cur + 1
	}
	p := buf[cur-base+k : cur-base+k+4]
	binary.LittleEndian.PutUint32(p, xf(binary.LittleEndian.Uint32(p), cur+k, cur+n))
	return cur + n
}

// x86First marks the bytes x86Ref can match first.
var x86First = func() (t [256]bool) {
	for b := 0x40; b <= 0x4F; b++ {
		t[b] = true
	}
	for _, b := range []byte{0x8B, 0x8D, 0xFF, 0x0F, 0xE8} {
		t[b] = true
	}
	return t
}()

// x86Ref recognises a reference at the start of b (avail bytes of the
// range left, b holding at least min(7, avail)): it returns the offset of
// its 4-byte operand and the instruction's length, or 0, 1.
func x86Ref(b []byte, avail int64) (k, n int64) {
	switch x := b[0]; {
	case x&0xF0 == 0x40 && avail >= 7 && ripOp(b[1]) && b[2]&0xC7 == 0x05:
		return 3, 7
	case (x == 0x8B || x == 0x8D) && avail >= 6 && b[1]&0xC7 == 0x05:
		return 2, 6
	case x == 0xFF && avail >= 6 && (b[1] == 0x15 || b[1] == 0x25):
		return 2, 6
	case x == 0x0F && avail >= 7 && sseOp(b[1]) && b[2]&0xC7 == 0x05:
		return 3, 7
	case x == 0xE8 && avail >= 5:
		return 1, 5
	}
	return 0, 1
}

// x86Operand transforms the operand v at offset op of an instruction
// ending at next: the filter (rel25), the prediction alone, or, decoding,
// the prediction undone and then the filter.
func (f *exeFilter) x86Operand(v uint32, op, next int64) uint32 {
	switch {
	case f.enc && f.predOnly:
		return f.pred.apply(op, v, true)
	case f.enc:
		return rel25(v, next, true)
	case f.pred != nil:
		v = f.pred.apply(op, v, false)
	}
	return rel25(v, next, false)
}

// arm64Step filters the 4-byte word at cur (the first aligned word at or
// after cur): BL imm26 becomes an absolute word index (mod 2^26) and ADRP
// within ±512 MiB an absolute page (mod 2^18, sign-extended as rel25 does).
// B (a branch inside a function, mostly) stays relative: rewriting it made
// the corpus's patches larger.
func arm64Step(buf []byte, base, cur, end, lim int64, f *exeFilter) int64 {
	enc := f.enc
	if cur&3 != 0 {
		return min((cur+3)&^3, end, lim)
	}
	if cur+4 > end {
		return min(end, lim) // a tail too short for a word: left alone
	}
	if cur+4 > lim {
		return -1
	}
	p := buf[cur-base : cur-base+4]
	w := binary.LittleEndian.Uint32(p)
	switch {
	case w&0xFC000000 == 0x94000000: // BL
		imm := w & 0x03FFFFFF
		switch {
		case enc && f.predOnly:
			imm = f.pred.applyBL(cur, imm, true)
		case enc:
			imm += uint32(cur >> 2)
		default:
			if f.pred != nil {
				imm = f.pred.applyBL(cur, imm, false)
			}
			imm -= uint32(cur >> 2)
		}
		w = 0x94000000 | imm&0x03FFFFFF
	case f.predOnly:
		// the prediction covers BL only
	case w&0x9F000000 == 0x90000000: // ADRP
		imm := (w>>29)&3 | (w>>3)&0x1FFFFC  // imm21 = immhi:immlo
		if (imm+1<<17)&(1<<21-1)>>18 == 0 { // within ±2^17 pages
			var a uint32
			if enc {
				a = imm + uint32(cur>>12)
			} else {
				a = imm - uint32(cur>>12)
			}
			a &= 1<<18 - 1
			if a&(1<<17) != 0 {
				a |= 0x1C0000
			}
			w = w&0x9F00001F | (a&3)<<29 | (a>>2)<<5
		}
	}
	binary.LittleEndian.PutUint32(p, w)
	return cur + 4
}

// filterAll filters a whole stream in place.
func filterAll(b []byte, arch int, ranges []codeRange, enc bool) {
	f := exeFilter{arch: arch, ranges: ranges, enc: enc}
	f.run(b, 0)
}

// exeHeader codes the architecture and both sides' code ranges; it is the
// head of an exe-bsdiff-cm body.
func exeHeader(arch int, oldR, newR []codeRange) []byte {
	return appendRanges(appendRanges([]byte{byte(arch)}, oldR), newR)
}

// appendRanges codes a range list: uvarint count, then per range uvarint
// gap from the end of the previous one (or 0) and uvarint length.
func appendRanges(h []byte, rs []codeRange) []byte {
	h = binary.AppendUvarint(h, uint64(len(rs)))
	var prev int64
	for _, r := range rs {
		h = binary.AppendUvarint(h, uint64(r.off-prev))
		h = binary.AppendUvarint(h, uint64(r.n))
		prev = r.end()
	}
	return h
}

// parseRanges reads what appendRanges wrote and checks it: at most
// maxExeRanges ranges, each non-empty, a multiple of unit long, sorted,
// disjoint and inside a file of size bytes. It returns the rest of p.
func parseRanges(p []byte, size, unit int64, what string) ([]codeRange, []byte, error) {
	uv := func() (uint64, error) {
		v, k := binary.Uvarint(p)
		if k <= 0 {
			return 0, fmt.Errorf("%w: exe body: truncated %s table", ErrCorrupt, what)
		}
		p = p[k:]
		return v, nil
	}
	n, err := uv()
	if err != nil {
		return nil, nil, err
	}
	if n > maxExeRanges {
		return nil, nil, fmt.Errorf("%w: exe body: %d %s ranges (at most %d)", ErrCorrupt, n, what, maxExeRanges)
	}
	var rs []codeRange
	var prev uint64
	for range n {
		gap, err := uv()
		if err != nil {
			return nil, nil, err
		}
		ln, err := uv()
		if err != nil {
			return nil, nil, err
		}
		if ln == 0 || gap > uint64(size) || prev+gap > uint64(size) || ln > uint64(size)-(prev+gap) {
			return nil, nil, fmt.Errorf("%w: exe body: %s range outside the %d-byte file", ErrCorrupt, what, size)
		}
		if ln%uint64(unit) != 0 {
			return nil, nil, fmt.Errorf("%w: exe body: %s range of %d bytes is not a multiple of %d", ErrCorrupt, what, ln, unit)
		}
		rs = append(rs, codeRange{int64(prev + gap), int64(ln)})
		prev += gap + ln
	}
	return rs, p, nil
}

// parseExeHeader reads what exeHeader wrote, checks every range against
// the file sizes (parseRanges) and returns the rest of the body.
func parseExeHeader(body []byte, oldSize, newSize int64) (arch int, oldR, newR []codeRange, rest []byte, err error) {
	if len(body) < 1 {
		return 0, nil, nil, nil, fmt.Errorf("%w: exe-bsdiff-cm body is empty", ErrCorrupt)
	}
	arch = int(body[0])
	if arch != exeArchX86_64 && arch != exeArchArm64 {
		return 0, nil, nil, nil, fmt.Errorf("%w: exe-bsdiff-cm: unknown architecture %d", ErrCorrupt, arch)
	}
	if oldR, rest, err = parseRanges(body[1:], oldSize, 1, "code"); err != nil {
		return 0, nil, nil, nil, err
	}
	if newR, rest, err = parseRanges(rest, newSize, 1, "code"); err != nil {
		return 0, nil, nil, nil, err
	}
	return arch, oldR, newR, rest, nil
}

// holdBack is the buffer of a writer that transforms a stream in place
// in order: run transforms what it can of buf (stream offsets [base,
// base+len(buf))) and returns the offset before which the bytes are final;
// the rest is held back until more arrives.
type holdBack struct {
	pend []byte
	base int64
}

func (h *holdBack) write(w io.Writer, p []byte, run func(buf []byte, base int64) int64) error {
	h.pend = append(h.pend, p...)
	cur := run(h.pend, h.base)
	if k := int(cur - h.base); k > 0 {
		if _, err := w.Write(h.pend[:k]); err != nil {
			return err
		}
		n := copy(h.pend, h.pend[k:])
		h.pend = h.pend[:n]
		h.base = cur
	}
	return nil
}

// flush runs once more over what is held back (at the end of the stream
// nothing can need more bytes: every range ends inside the file) and
// writes it.
func (h *holdBack) flush(w io.Writer, run func(buf []byte, base int64) int64) error {
	if len(h.pend) == 0 {
		return nil
	}
	run(h.pend, h.base)
	_, err := w.Write(h.pend)
	h.base += int64(len(h.pend))
	h.pend = h.pend[:0]
	return err
}

// stageWriter undoes one prediction stage (relocation records, data words)
// as the new file streams through it: run transforms what it can of the
// held-back window and returns how far the bytes are final.
type stageWriter struct {
	w   io.Writer
	run func(buf []byte, base int64) int64
	h   holdBack
}

func (u *stageWriter) Write(p []byte) (int, error) {
	if err := u.h.write(u.w, p, u.run); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (u *stageWriter) flush() error { return u.h.flush(u.w, u.run) }

// unfilterWriter undoes the filter (and the prediction) on the new file as
// it streams through, holding back only the few bytes an instruction at
// the end of a write still needs.
type unfilterWriter struct {
	w io.Writer
	f exeFilter
	h holdBack
}

func (u *unfilterWriter) Write(p []byte) (int, error) {
	if err := u.h.write(u.w, p, u.f.run); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (u *unfilterWriter) flush() error { return u.h.flush(u.w, u.f.run) }

// ripOp reports whether b, after a REX prefix, is an opcode whose ModRM
// operand is read here when it is RIP-relative: mov, lea, store, cmp, add,
// movsxd.
func ripOp(b byte) bool {
	switch b {
	case 0x8B, 0x8D, 0x89, 0x3B, 0x39, 0x03, 0x63:
		return true
	}
	return false
}

// sseOp reports whether b, after 0F, is an SSE load, store or arithmetic
// opcode whose RIP-relative operand is rewritten (movups/movsd, movaps,
// ucomis, and/xor, add, mul, sub, div, movdqa/movdqu).
func sseOp(b byte) bool {
	switch b {
	case 0x10, 0x11, 0x28, 0x29, 0x2E, 0x2F, 0x54, 0x57, 0x58, 0x59, 0x5C, 0x5E, 0x6F, 0x7F:
		return true
	}
	return false
}
