package delta

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestAddrMap(t *testing.T) {
	m := addrMap{{off: 0x100, n: 0x100, va: 0x1100}, {off: 0x300, n: 0x80, va: 0x5000}}
	for _, c := range []struct {
		off, shift int64
		va         int64
		ok         bool
	}{
		{0x100, 0x1000, 0x1100, true},
		{0x1ff, 0x1000, 0x11ff, true},
		{0x200, 0, 0, false},
		{0x37f, 0x5000 - 0x300, 0x507f, true},
		{0x380, 0, 0, false},
	} {
		if got := m.shift(c.off); got != c.shift {
			t.Errorf("shift(%#x) = %#x, want %#x", c.off, got, c.shift)
		}
		va, ok := m.toVA(c.off)
		if ok != c.ok || va != c.va {
			t.Errorf("toVA(%#x) = %#x, %v", c.off, va, ok)
		}
		if ok {
			if off, ok := m.toOff(va); !ok || off != c.off {
				t.Errorf("toOff(%#x) = %#x, %v, want %#x", va, off, ok, c.off)
			}
		}
	}
	if _, ok := m.toOff(0x10ff); ok {
		t.Error("toOff found an address below every segment")
	}
	// Real files: every file-backed segment.
	for _, f := range [][2]string{{"elf", "gcc-amd64-linux-exec"}, {"pe", "gcc-amd64-mingw-exec"}, {"macho", "gcc-amd64-darwin-exec.base64"}} {
		b := goTestdata(t, f[0], f[1])
		if strings.HasSuffix(f[1], ".base64") {
			var err error
			if b, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\n", "")); err != nil {
				t.Fatal(err)
			}
		}
		m := exeAddrMap(b)
		if len(m) == 0 {
			t.Errorf("%s: no address map", f[1])
		}
		got, rest, err := parseAddrMap(append(appendAddrMap(nil, m), 9), int64(len(b)))
		if err != nil || len(got) != len(m) || !bytes.Equal(rest, []byte{9}) {
			t.Fatalf("%s: %v, %d of %d segments", f[1], err, len(got), len(m))
		}
		for i := range got {
			if got[i] != m[i] {
				t.Errorf("%s: segment %d: %+v, want %+v", f[1], i, got[i], m[i])
			}
		}
	}
	for _, b := range [][]byte{nil, []byte("\x7fELF junk"), []byte("MZ junk"), bytes.Repeat([]byte{0xCF}, 100)} {
		if m := exeAddrMap(b); m != nil {
			t.Errorf("exeAddrMap(%q) = %v", b, m)
		}
	}
}

func TestParseAddrMapHostile(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"too many", uvarints(maxAddrSegs + 1)},
		{"truncated", uvarints(1, 0, 10)},
		{"zero length", uvarints(1, 0, 0, 0)},
		{"past the end", uvarints(1, 90, 11, 0)},
		{"huge offset", uvarints(1, 1<<63, 1, 0)},
		{"overflowing length", uvarints(1, 1, 1<<64-1, 0)},
		{"bad varint", bytes.Repeat([]byte{0xFF}, 11)},
	} {
		if _, _, err := parseAddrMap(c.p, 100); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", c.name, err)
		}
	}
	// Addresses are free, up to 2^64-1.
	if m, _, err := parseAddrMap(uvarints(1, 0, 100, 1<<64-1), 100); err != nil || m[0].va != 1<<64-1 {
		t.Errorf("a top address: %v, %v", m, err)
	}
}

func TestPointerRanges(t *testing.T) {
	m := addrMap{{off: 0, n: 1000, va: 0}, {off: 2000, n: 500, va: 9000}}
	code := []codeRange{{100, 200}}
	rela := []codeRange{{600, 48}}
	got := fmt.Sprint(pointerRanges(m, code, rela, nil))
	if want := "[{0 100} {300 300} {648 352} {2000 500}]"; got != want {
		t.Errorf("pointerRanges = %s, want %s", got, want)
	}
}

// TestExePointerRoundTrip: pointers in data whose targets moved with an
// insertion are predicted exactly (the old words come back), words that
// are not addresses are left alone, and the streaming reader undoes it.
func TestExePointerRoundTrip(t *testing.T) {
	const n, h, ins = 8192, 3000, 48
	r := rand.New(rand.NewPCG(7, 8))
	old := make([]byte, n)
	for i := range old {
		old[i] = byte(r.Uint32())
	}
	oldMap := addrMap{{off: 0, n: n, va: 0x400000}}
	newMap := addrMap{{off: 0, n: n + ins, va: 0x400000}}
	const dataOff, dataLen = 5000, 2000 // past the insertion
	for i := int64(dataOff); i < dataOff+dataLen; i += 8 {
		if r.IntN(3) > 0 {
			binary.LittleEndian.PutUint64(old[i:], 0x400000+uint64(r.IntN(n)))
		}
	}
	newb := append(append(bytes.Clone(old[:h]), make([]byte, ins)...), old[h:]...)
	moved := 0
	for i := int64(dataOff + ins); i < dataOff+ins+dataLen; i += 8 {
		v := binary.LittleEndian.Uint64(newb[i:])
		if v >= 0x400000+h && v < 0x400000+n {
			binary.LittleEndian.PutUint64(newb[i:], v+ins)
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no pointer moved")
	}
	eqs := []equiv{{0, 0, h}, {h + ins, h, n - h}}
	ptrR := []codeRange{{dataOff + ins, dataLen}}
	pred := newPredictor(exeArchX86_64, eqs, old, nil, true)
	pred.oldMap, pred.newMap = oldMap, newMap
	enc := bytes.Clone(newb)
	newDataPredictor(pred, ptrR, wordPointer).run(enc, 0, true)
	if !bytes.Equal(enc[h+ins:], old[h:]) {
		t.Error("predicted pointers differ from the old ones")
	}
	for _, chunk := range []int{1, 7, 50, 4096} {
		var out bytes.Buffer
		pw := dataWriter(&out, newDataPredictor(pred, ptrR, wordPointer))
		for p := enc; len(p) > 0; {
			k := min(len(p), 1+r.IntN(chunk))
			if _, err := pw.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := pw.flush(); err != nil || !bytes.Equal(out.Bytes(), newb) {
			t.Fatalf("chunks up to %d: round trip: %v, equal %v", chunk, err, bytes.Equal(out.Bytes(), newb))
		}
	}
}

// TestExeRel32RoundTrip: words in data that hold a code address relative
// to their own (jump tables, .eh_frame's pc_begin), in a table that moved
// by another amount than the code, are predicted exactly; a word that
// does not land in the old code is left alone.
func TestExeRel32RoundTrip(t *testing.T) {
	const n, h, ins, h2, ins2 = 8192, 1000, 64, 5000, 32
	r := rand.New(rand.NewPCG(9, 10))
	old := make([]byte, n)
	for i := range old {
		old[i] = byte(r.Uint32())
	}
	code := []codeRange{{0, 4000}}
	const tab, tabLen = 6000, 400 // a table past both insertions
	for i := int64(tab); i < tab+tabLen; i += 4 {
		target := int64(h + r.IntN(3000)) // code past the first insertion
		binary.LittleEndian.PutUint32(old[i:], uint32(target-i))
	}
	binary.LittleEndian.PutUint32(old[tab+tabLen:], 12345) // not a code address
	newb := append(append(bytes.Clone(old[:h]), make([]byte, ins)...), old[h:h2]...)
	newb = append(append(newb, make([]byte, ins2)...), old[h2:]...)
	// The targets moved by ins, the table by ins+ins2.
	for i := int64(tab); i < tab+tabLen; i += 4 {
		p := i + ins + ins2
		binary.LittleEndian.PutUint32(newb[p:], binary.LittleEndian.Uint32(newb[p:])-ins2)
	}
	m := addrMap{{off: 0, n: n, va: 0x10000}}
	newMap := addrMap{{off: 0, n: int64(len(newb)), va: 0x10000}}
	eqs := []equiv{{0, 0, h}, {h + ins, h, h2 - h}, {h2 + ins + ins2, h2, n - h2}}
	ranges := []codeRange{{h2 + ins + ins2, n - h2}}
	pred := newPredictor(exeArchX86_64, eqs, old, code, true)
	pred.oldMap, pred.newMap = m, newMap
	enc := bytes.Clone(newb)
	newDataPredictors(pred, ranges, code, nil)[1].run(enc, 0, true)
	for i := int64(tab); i < tab+tabLen+4; i += 4 {
		if p := i + ins + ins2; !bytes.Equal(enc[p:p+4], old[i:i+4]) {
			t.Errorf("word at old %d: %x, want the old %x", i, enc[p:p+4], old[i:i+4])
		}
	}
	var out bytes.Buffer
	dw := dataWriter(&out, newDataPredictors(pred, ranges, code, nil)[1])
	for p := enc; len(p) > 0; {
		k := min(len(p), 1+r.IntN(30))
		if _, err := dw.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := dw.flush(); err != nil || !bytes.Equal(out.Bytes(), newb) {
		t.Fatalf("round trip: %v, equal %v", err, bytes.Equal(out.Bytes(), newb))
	}
}

func TestParseTablesHostile(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"too many", uvarints(maxTables + 1)},
		{"truncated", uvarints(1, 0, 8, 0)},
		{"zero length", uvarints(1, 0, 0, 0, 0)},
		{"not whole words", uvarints(1, 0, 6, 0, 0)},
		{"past the end", uvarints(1, 92, 12, 0, 0)},
		{"overlapping the previous", uvarints(2, 0, 8, 0, 0, 1<<64-4, 8, 0, 0)},
		{"huge length", uvarints(1, 0, 1<<64-4, 0, 0)},
	} {
		if _, _, err := parseTables(c.p, 100); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", c.name, err)
		}
	}
	tabs := []baseTable{{8, 16, 1 << 40, 5}, {40, 4, 0, 1<<64 - 1}}
	got, rest, err := parseTables(append(appendTables(nil, tabs), 7), 100)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(tabs) || !bytes.Equal(rest, []byte{7}) {
		t.Errorf("round trip: %v, %v, rest %v", got, err, rest)
	}
}

// TestExeTableRoundTrip: an .eh_frame_hdr-like table of offsets from its
// base, where the table moved by one amount and the functions by another,
// is predicted exactly, and the streaming reader undoes it.
func TestExeTableRoundTrip(t *testing.T) {
	const n, h, ins, h2, ins2 = 8192, 1000, 64, 5000, 32
	r := rand.New(rand.NewPCG(11, 12))
	old := make([]byte, n)
	for i := range old {
		old[i] = byte(r.Uint32())
	}
	const tab, tabLen, va = 6000, 400, 0x10000
	for i := int64(tab); i < tab+tabLen; i += 4 {
		target := int64(h + r.IntN(3000))
		binary.LittleEndian.PutUint32(old[i:], uint32(target-tab)) // negative: before the table
	}
	newb := append(append(bytes.Clone(old[:h]), make([]byte, ins)...), old[h:h2]...)
	newb = append(append(newb, make([]byte, ins2)...), old[h2:]...)
	for i := int64(tab); i < tab+tabLen; i += 4 {
		p := i + ins + ins2
		binary.LittleEndian.PutUint32(newb[p:], binary.LittleEndian.Uint32(newb[p:])-ins2)
	}
	eqs := []equiv{{0, 0, h}, {h + ins, h, h2 - h}, {h2 + ins + ins2, h2, n - h2}}
	tabs := []baseTable{{off: tab + ins + ins2, n: tabLen, oldBase: va + tab, newBase: va + tab + ins + ins2}}
	pred := newPredictor(exeArchX86_64, eqs, old, nil, true)
	pred.oldMap = addrMap{{off: 0, n: n, va: va}}
	pred.newMap = addrMap{{off: 0, n: int64(len(newb)), va: va}}
	enc := bytes.Clone(newb)
	ds := newDataPredictors(pred, nil, nil, tabs)
	ds[2].run(enc, 0, true)
	if p := int64(tab + ins + ins2); !bytes.Equal(enc[p:p+tabLen], old[tab:tab+tabLen]) {
		t.Error("predicted table words differ from the old ones")
	}
	var out bytes.Buffer
	dw := dataWriter(&out, newDataPredictors(pred, nil, nil, tabs)[2])
	for p := enc; len(p) > 0; {
		k := min(len(p), 1+r.IntN(30))
		if _, err := dw.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := dw.flush(); err != nil || !bytes.Equal(out.Bytes(), newb) {
		t.Fatalf("round trip: %v, equal %v", err, bytes.Equal(out.Bytes(), newb))
	}
	// A real .eh_frame_hdr is found.
	if tb := fileTables(goTestdata(t, "elf", "gcc-amd64-linux-exec")); len(tb) == 0 {
		t.Log("gcc-amd64-linux-exec has no .eh_frame_hdr table")
	}
	for _, b := range [][]byte{nil, []byte("\x7fELF junk"), []byte("MZ")} {
		if tb := fileTables(b); len(tb) != 0 {
			t.Errorf("fileTables(%q) = %v", b, tb)
		}
	}
}
