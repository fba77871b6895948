package delta

// Address maps (methods 8 and 9): where each segment of an executable's
// file is in memory, so that the reference prediction can carry a target
// address through the equivalences, which are in file offsets. mkdelta
// takes them from the program headers (ELF PT_LOAD), the section table
// (PE, at the image base) or the segments (Mach-O); the reader takes them
// from the (checked) patch and never parses an executable.

import (
	"bytes"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"fmt"
)

// maxAddrSegs caps the segments of one address map.
const maxAddrSegs = 64

// addrSeg says file [off, off+n) is at addresses [va, va+n).
type addrSeg struct {
	off, n int64
	va     uint64
}

// addrMap is a file's segments, in the order the patch lists them; the
// first that holds an offset or address answers.
type addrMap []addrSeg

// shift returns va-off of the segment holding file offset off (wrapping
// mod 2^64 into an int64), or 0.
func (m addrMap) shift(off int64) int64 {
	for _, s := range m {
		if off >= s.off && off-s.off < s.n {
			return int64(s.va - uint64(s.off))
		}
	}
	return 0
}

// toOff returns the file offset of address va, if a segment holds it.
func (m addrMap) toOff(va int64) (int64, bool) {
	for _, s := range m {
		if d := uint64(va) - s.va; d < uint64(s.n) {
			return s.off + int64(d), true
		}
	}
	return 0, false
}

// toVA returns the address of file offset off, if a segment holds it.
func (m addrMap) toVA(off int64) (int64, bool) {
	for _, s := range m {
		if off >= s.off && off-s.off < s.n {
			return int64(s.va + uint64(off-s.off)), true
		}
	}
	return 0, false
}

// exeAddrMap returns the address map of executable b (nil when it has
// none that exeAddrMap understands, or more than maxAddrSegs segments).
// Like exeCode it never panics.
func exeAddrMap(b []byte) (m addrMap) {
	defer func() {
		if recover() != nil {
			m = nil
		}
	}()
	size := int64(len(b))
	add := func(off, n, va uint64) {
		if n == 0 || off >= uint64(size) {
			return
		}
		m = append(m, addrSeg{int64(off), int64(min(n, uint64(size)-off)), va})
	}
	r := bytes.NewReader(b)
	switch {
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		f, err := elf.NewFile(r)
		if err != nil {
			return nil
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD {
				add(p.Off, p.Filesz, p.Vaddr)
			}
		}
	case bytes.HasPrefix(b, []byte("MZ")):
		f, err := pe.NewFile(r)
		if err != nil {
			return nil
		}
		var base uint64
		switch h := f.OptionalHeader.(type) {
		case *pe.OptionalHeader64:
			base = h.ImageBase
		case *pe.OptionalHeader32:
			base = uint64(h.ImageBase)
		}
		for _, s := range f.Sections {
			n := uint64(s.Size)
			if s.VirtualSize != 0 {
				n = min(n, uint64(s.VirtualSize))
			}
			add(uint64(s.Offset), n, base+uint64(s.VirtualAddress))
		}
	default:
		f, err := macho.NewFile(r)
		if err != nil {
			return nil
		}
		for _, l := range f.Loads {
			if s, ok := l.(*macho.Segment); ok {
				add(s.Offset, s.Filesz, s.Addr)
			}
		}
	}
	if len(m) > maxAddrSegs {
		return nil
	}
	return m
}

// appendAddrMap codes m: uvarint count, then per segment uvarint offset,
// uvarint length, uvarint address.
func appendAddrMap(b []byte, m addrMap) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for _, s := range m {
		b = binary.AppendUvarint(b, uint64(s.off))
		b = binary.AppendUvarint(b, uint64(s.n))
		b = binary.AppendUvarint(b, s.va)
	}
	return b
}

// parseAddrMap reads what appendAddrMap wrote and checks it: at most
// maxAddrSegs segments, each non-empty and inside a file of size bytes
// (addresses are free). It returns the rest of p.
func parseAddrMap(p []byte, size int64) (addrMap, []byte, error) {
	bad := func(what string) (addrMap, []byte, error) {
		return nil, nil, fmt.Errorf("%w: exe body: address map: %s", ErrCorrupt, what)
	}
	var v [3]uint64
	cnt, k := binary.Uvarint(p)
	if k <= 0 {
		return bad("truncated")
	}
	p = p[k:]
	if cnt > maxAddrSegs {
		return bad(fmt.Sprintf("%d segments (at most %d)", cnt, maxAddrSegs))
	}
	m := make(addrMap, 0, cnt)
	for range cnt {
		for i := range v {
			if v[i], k = binary.Uvarint(p); k <= 0 {
				return bad("truncated")
			}
			p = p[k:]
		}
		if v[1] == 0 || v[0] > uint64(size) || v[1] > uint64(size)-v[0] {
			return bad(fmt.Sprintf("segment outside the %d-byte file", size))
		}
		m = append(m, addrSeg{int64(v[0]), int64(v[1]), v[2]})
	}
	return m, p, nil
}
