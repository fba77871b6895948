package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// codeLike returns n bytes dense in the patterns the filters rewrite.
func codeLike(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	pats := [][]byte{{0xE8}, {0x48, 0x8D, 0x05}, {0x4C, 0x8B, 0x3D}, {0x8B, 0x0D}, {0xFF, 0x15}, {0xFF, 0x25}, {0x0F, 0x10, 0x05}, {0x0F, 0x84}, {0xE9}}
	b := make([]byte, 0, n+16)
	for len(b) < n {
		if r.IntN(3) == 0 {
			b = append(b, pats[r.IntN(len(pats))]...)
			var v [4]byte
			binary.LittleEndian.PutUint32(v[:], uint32(r.Int32N(1<<26)-1<<25))
			b = append(b, v[:]...)
		} else {
			b = append(b, byte(r.Uint32()))
		}
	}
	return b[:n]
}

func TestExeFilterRoundTrip(t *testing.T) {
	for _, arch := range []int{exeArchX86_64, exeArchArm64} {
		for seed := range uint64(20) {
			n := 1 + int(seed)*997
			orig := codeLike(seed, n)
			r := rand.New(rand.NewPCG(seed, 7))
			var rs []codeRange
			for range r.IntN(5) {
				off := r.Int64N(int64(n))
				rs = append(rs, codeRange{off, 1 + r.Int64N(int64(n)-off)})
			}
			rs = normRanges(rs)
			enc := bytes.Clone(orig)
			filterAll(enc, arch, rs, true)
			var covered int64
			for _, x := range rs {
				covered += x.n
			}
			if covered > 2000 && bytes.Equal(enc, orig) {
				t.Errorf("arch %d seed %d: the filter changed nothing in %v", arch, seed, rs)
			}
			var out bytes.Buffer
			uw := &unfilterWriter{w: &out, f: exeFilter{arch: arch, ranges: rs}}
			streamThrough(t, uw, enc, r, 13)
			if !bytes.Equal(out.Bytes(), orig) {
				t.Fatalf("arch %d seed %d ranges %v: unfiltered stream differs from the original", arch, seed, rs)
			}
		}
	}
}

// TestExeFilterMovedCall: a call whose caller moved but whose target did
// not is the same bytes after filtering (the point of the method).
func TestExeFilterMovedCall(t *testing.T) {
	old := make([]byte, 64)
	copy(old[10:], []byte{0xE8, 0, 0, 0, 0})
	binary.LittleEndian.PutUint32(old[11:], uint32(40-15)) // call 40 from 10
	newb := make([]byte, 64)
	copy(newb[20:], []byte{0xE8, 0, 0, 0, 0})
	binary.LittleEndian.PutUint32(newb[21:], uint32(40-25)) // call 40 from 20
	rs := []codeRange{{0, 64}}
	filterAll(old, exeArchX86_64, rs, true)
	filterAll(newb, exeArchX86_64, rs, true)
	if !bytes.Equal(old[10:15], newb[20:25]) {
		t.Fatalf("filtered calls differ: % x vs % x", old[10:15], newb[20:25])
	}
	a := make([]byte, 16)
	binary.LittleEndian.PutUint32(a[4:], 0x94000000|0x03FFFFFF) // BL -4 at 4
	filterAll(a, exeArchArm64, []codeRange{{0, 16}}, true)
	if w := binary.LittleEndian.Uint32(a[4:]); w != 0x94000000 {
		t.Fatalf("BL to 0 from 4 filtered to %#x, want 0x94000000", w)
	}
}

func goTestdata(t *testing.T, pkg, name string) []byte {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v (Go's debug/%s test data is read from there)", err, pkg)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "src", "debug", pkg, "testdata", name))
	if err != nil {
		t.Skipf("Go's debug/%s test data is not installed: %v", pkg, err)
	}
	return b
}

func TestExeCode(t *testing.T) {
	elf64 := goTestdata(t, "elf", "gcc-amd64-linux-exec")
	elfArm := goTestdata(t, "elf", "go-relocation-test-gcc482-aarch64.obj")
	elf386 := goTestdata(t, "elf", "gcc-386-freebsd-exec")
	pe64 := goTestdata(t, "pe", "gcc-amd64-mingw-exec")
	trunc := bytes.Clone(elf64[:200])
	badShoff := bytes.Clone(elf64)
	binary.LittleEndian.PutUint64(badShoff[0x28:], 1<<60)
	for _, c := range []struct {
		name string
		b    []byte
		arch int
	}{
		{"elf x86-64", elf64, exeArchX86_64},
		{"elf arm64 object", elfArm, exeArchArm64},
		{"pe x86-64", pe64, exeArchX86_64},
		{"elf 386", elf386, 0},
		{"truncated elf", trunc, 0},
		{"elf with a wild section table offset", badShoff, 0},
		{"text", bytes.Repeat([]byte("hello "), 100), 0},
		{"MZ junk", append([]byte("MZ"), make([]byte, 200)...), 0},
		{"empty", nil, 0},
	} {
		arch, rs := exeCode(c.b)
		if arch != c.arch {
			t.Errorf("%s: arch %d, want %d", c.name, arch, c.arch)
		}
		if arch != 0 && len(rs) == 0 {
			t.Errorf("%s: no code ranges", c.name)
		}
		for i, r := range rs {
			if r.n <= 0 || r.off < 0 || r.end() > int64(len(c.b)) || (i > 0 && r.off <= rs[i-1].end()) {
				t.Errorf("%s: bad range %d %+v in %v", c.name, i, r, rs)
			}
		}
	}
}

func TestParseExeHeaderHostile(t *testing.T) {
	good := exeHeader(exeArchX86_64, []codeRange{{10, 20}}, []codeRange{{5, 5}, {12, 3}})
	if _, o, n, rest, err := parseExeHeader(append(good, 9), 100, 100); err != nil || len(o) != 1 || len(n) != 2 || n[1] != (codeRange{12, 3}) || !bytes.Equal(rest, []byte{9}) {
		t.Fatalf("good header: %v %v %v %v", o, n, rest, err)
	}
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"unknown arch", []byte{7, 0, 0}},
		{"truncated count", []byte{1}},
		{"truncated range", append([]byte{1}, uvarints(1, 5)...)},
		{"too many ranges", append([]byte{1}, uvarints(maxExeRanges+1)...)},
		{"empty range", append([]byte{1}, uvarints(1, 5, 0, 0)...)},
		{"range past the end", append([]byte{1}, uvarints(1, 90, 11, 0)...)},
		{"huge gap", append([]byte{1}, uvarints(1, 1<<63, 1, 0)...)},
		{"overflowing length", append([]byte{1}, uvarints(1, 1, 1<<64-1, 0)...)},
		{"second range past the end", append([]byte{1}, uvarints(2, 10, 10, 79, 2, 0)...)},
		{"bad varint", append([]byte{1}, bytes.Repeat([]byte{0xFF}, 11)...)},
	} {
		_, _, _, _, err := parseExeHeader(c.body, 100, 100)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", c.name, err)
		}
	}
}

// TestExeMethodRoundTrip diffs a real x86-64 executable against an edited
// copy with the exe method, applies it, and checks that the patch is the
// same bytes whatever the number of workers.
func TestExeMethodRoundTrip(t *testing.T) {
	old := goTestdata(t, "elf", "gcc-amd64-linux-exec")
	arch, rs := exeCode(old)
	if arch != exeArchX86_64 {
		t.Fatalf("exeCode: arch %d", arch)
	}
	newb := retargetCalls(old, rs[0])
	ctx := context.Background()
	for _, m := range []Method{MethodExeBsdiffCM, MethodExeZstdDict, MethodExeBsdiffCM2, MethodExe2BsdiffCM, MethodExe2BsdiffCM2} {
		var first []byte
		for _, w := range []int{1, 2, 3} {
			var buf bytes.Buffer
			st, err := Diff(ctx, old, newb, &buf, &DiffOptions{Workers: w, Methods: []Method{m}})
			if err != nil || st.Method != m {
				t.Fatalf("%v workers %d: Diff: %v, method %v", m, w, err, st.Method)
			}
			if first == nil {
				first = buf.Bytes()
			} else if !bytes.Equal(first, buf.Bytes()) {
				t.Fatalf("%v workers %d: patch differs from the one with 1 worker", m, w)
			}
			var out bytes.Buffer
			info, err := Apply(ctx, old, bytes.NewReader(buf.Bytes()), &out, nil)
			if err != nil || info.Method != m || !bytes.Equal(out.Bytes(), newb) {
				t.Fatalf("%v workers %d: Apply: %v (method %v, output equal %v)", m, w, err, info.Method, bytes.Equal(out.Bytes(), newb))
			}
		}
	}
	// The default number of workers follows GOMAXPROCS: the patch must not.
	var byProcs [][]byte
	for _, procs := range []int{1, 2} {
		prev := runtime.GOMAXPROCS(procs)
		var buf bytes.Buffer
		_, err := Diff(ctx, old, newb, &buf, nil)
		runtime.GOMAXPROCS(prev)
		if err != nil {
			t.Fatal(err)
		}
		byProcs = append(byProcs, buf.Bytes())
	}
	if !bytes.Equal(byProcs[0], byProcs[1]) {
		t.Fatal("the patch differs between GOMAXPROCS 1 and 2")
	}
	// Not an executable: the method is not a candidate and Diff falls back.
	var buf bytes.Buffer
	st, err := Diff(ctx, []byte("plain old text"), []byte("plain new text"), &buf, nil)
	if err != nil || st.Method == MethodExeBsdiffCM {
		t.Fatalf("text: %v, method %v", err, st.Method)
	}
	for _, m := range exeBsdiffMethods {
		if _, ok := st.Candidates[m]; ok {
			t.Fatalf("text: method %v was tried", m)
		}
	}
}

// FuzzApplyExe applies arbitrary exe-bsdiff-cm and exe-zstd-dict bodies (header and CRC made
// valid) to a small old file: an error or the right output, never a panic
// or a hang.
func FuzzApplyExe(f *testing.F) {
	old := codeLike(1, 3000)
	newb := bytes.Clone(old)
	copy(newb[100:], codeLike(2, 200))
	rs := []codeRange{{0, 3000}}
	fo, fn := bytes.Clone(old), bytes.Clone(newb)
	filterAll(fo, exeArchX86_64, rs, true)
	filterAll(fn, exeArchX86_64, rs, true)
	m, _ := newMatcher(fo)
	ops, _ := diffOps(context.Background(), m, fn, 1, nil)
	eqs := []equiv{{0, 0, 100}, {300, 300, 2700}}
	fp := bytes.Clone(fn)
	pf := exeFilter{arch: exeArchX86_64, ranges: rs, enc: true, predOnly: true, pred: newPredictor(exeArchX86_64, eqs, fo, rs, false)}
	pf.run(fp, 0)
	noRela := func(b []byte) []byte { return appendRanges(appendRanges(b, nil), nil) }
	body := append(noRela(appendEquivs(exeHeader(exeArchX86_64, rs, rs), eqs)), encodeSegments(fo, fp, ops, 1)...)
	z, _ := zstdEncode(fn, fo)
	// kind picks the method: 0 exe-bsdiff-cm, 1 exe-zstd-dict, 2
	// exe-bsdiff-cm2, 3 exe2-bsdiff-cm (adaptive prediction), 4
	// exe2-bsdiff-cm2.
	kinds := []Method{MethodExeBsdiffCM, MethodExeZstdDict, MethodExeBsdiffCM2, MethodExe2BsdiffCM, MethodExe2BsdiffCM2}
	f.Add(body, uint16(len(newb)), uint8(0))
	// Methods 8 and 9: an address map on each side, pointer ranges and a
	// table after the relocation tables.
	maps := func(b []byte) []byte {
		m := addrMap{{off: 0, n: 3000, va: 0x400000}}
		b = appendRanges(appendAddrMap(appendAddrMap(b, m), m), []codeRange{{2000, 1000}})
		return appendTables(b, []baseTable{{off: 1000, n: 40, oldBase: 0x400000 + 1000, newBase: 0x400000 + 1000}})
	}
	adaptBody := append(maps(noRela(appendEquivs(exeHeader(exeArchX86_64, rs, []codeRange{{0, 2000}}), eqs))), encodeSegments(fo, fp, ops, 1)...)
	f.Add(adaptBody, uint16(len(newb)), uint8(3))
	f.Add(adaptBody, uint16(len(newb)), uint8(4))
	f.Add(append(noRela(appendEquivs(exeHeader(exeArchX86_64, rs, rs), nil)), z...), uint16(len(newb)), uint8(1))
	f.Add(append(noRela(appendEquivs(exeHeader(exeArchArm64, rs, []codeRange{{4, 8}}), nil)), encodeSegments(old, newb, nil, 1)...), uint16(len(newb)), uint8(0))
	f.Add(append(maps(noRela(appendEquivs(exeHeader(exeArchArm64, rs, rs), eqs))), encodeSegments(old, newb, nil, 1)...), uint16(len(newb)), uint8(3))
	// Relocation tables over part of the file.
	rela := []codeRange{{2400, 480}}
	relaBody := append(appendRanges(appendRanges(appendEquivs(exeHeader(exeArchX86_64, rs, rs), eqs), rela), rela), encodeSegments(fo, fp, ops, 1)...)
	f.Add(relaBody, uint16(len(newb)), uint8(0))
	f.Add(append(maps(appendRanges(appendRanges(appendEquivs(exeHeader(exeArchX86_64, rs, rs), eqs), rela), rela)), encodeSegments(fo, fp, ops, 1)...), uint16(len(newb)), uint8(3))
	f.Add([]byte{1, 1, 0, 1}, uint16(10), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, newSize uint16, kind uint8) {
		// The new file's hash is unknowable here: a body that decodes
		// must still fail the hash check, anything else a typed error.
		m := kinds[int(kind)%len(kinds)]
		patch := makeHeader(m, int64(len(old)), int64(newSize), sha256.Sum256(old), [32]byte{}, int64(len(body))+4)
		patch = append(patch, body...)
		patch = binary.LittleEndian.AppendUint32(patch, crc32.Checksum(body, castagnoli))
		var out bytes.Buffer
		_, err := Apply(context.Background(), old, bytes.NewReader(patch), &out, &ApplyOptions{MaxNewSize: 1 << 16})
		if err == nil && sha256.Sum256(out.Bytes()) != [32]byte{} {
			t.Fatal("Apply accepted an output whose hash differs from the patch's")
		}
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrHashMismatch) && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}

// TestExePredictRoundTrip: filter, then predict, then the streaming
// decoder's un-predict and un-filter give back the original, whatever the
// equivalences and write sizes.
func TestExePredictRoundTrip(t *testing.T) {
	for _, adapt := range []bool{false, true} {
		t.Run(fmt.Sprintf("adapt=%v", adapt), func(t *testing.T) { testExePredictRoundTrip(t, adapt) })
	}
}

func testExePredictRoundTrip(t *testing.T, adapt bool) {
	for seed := range uint64(12) {
		n := 2000 + int(seed)*1500
		old := codeLike(seed, n)
		r := rand.New(rand.NewPCG(seed, 11))
		// Point every reference inside the file, as in a real binary.
		for cur := int64(0); cur < int64(n); {
			k, l := x86Ref(old[cur:min(cur+7, int64(n))], int64(n)-cur)
			if k != 0 {
				binary.LittleEndian.PutUint32(old[cur+k:], uint32(int64(r.IntN(n))-(cur+l)))
			}
			cur += l
		}
		// The new file: 37 bytes inserted in the middle (so the targets
		// past it move), a few bytes changed; the equivalences say so,
		// cut in random pieces, some of them wrong.
		h := n/2 + r.IntN(100)
		orig := append(append(bytes.Clone(old[:h]), codeLike(seed+100, 37)...), old[h:]...)
		for range 5 {
			orig[r.IntN(len(orig))] ^= 0x55
		}
		rs := []codeRange{{int64(r.IntN(100)), int64(n - 200)}}
		var eqs []equiv
		for pos := int64(0); pos < int64(len(orig)); {
			l := 1 + int64(r.IntN(600))
			if pos+l > int64(len(orig)) {
				break
			}
			o := pos
			if pos >= int64(h)+37 {
				o = pos - 37
			} else if pos+l > int64(h) {
				o = int64(r.IntN(n - int(l))) // a wrong one
			}
			eqs = append(eqs, equiv{pos, o, l})
			pos += l + int64(r.IntN(3))
		}
		fo := bytes.Clone(old)
		filterAll(fo, exeArchX86_64, rs, true)
		enc := bytes.Clone(orig)
		filterAll(enc, exeArchX86_64, rs, true)
		filtered := bytes.Clone(enc)
		pf := exeFilter{arch: exeArchX86_64, ranges: rs, enc: true, predOnly: true, pred: newPredictor(exeArchX86_64, eqs, fo, rs, adapt)}
		pf.run(enc, 0)
		if bytes.Equal(enc, filtered) {
			t.Errorf("seed %d: the prediction changed nothing", seed)
		}
		var out bytes.Buffer
		uw := &unfilterWriter{w: &out, f: exeFilter{arch: exeArchX86_64, ranges: rs, pred: newPredictor(exeArchX86_64, eqs, fo, rs, adapt)}}
		streamThrough(t, uw, enc, r, 37)
		if !bytes.Equal(out.Bytes(), orig) {
			t.Fatalf("seed %d: round trip through the prediction differs", seed)
		}
		// The table codes and parses back to the same equivalences.
		got, rest, err := parseEquivs(append(appendEquivs(nil, eqs), 7), int64(n), int64(len(orig)))
		if err != nil || len(got) != len(eqs) || !bytes.Equal(rest, []byte{7}) {
			t.Fatalf("seed %d: equivalence table: %v, %d of %d", seed, err, len(got), len(eqs))
		}
		for i := range got {
			if got[i] != eqs[i] {
				t.Fatalf("seed %d: equivalence %d: %+v, want %+v", seed, i, got[i], eqs[i])
			}
		}
	}
}

// TestExeAdaptiveLearns: calls into a function that moved where no
// equivalence says so are mispredicted by the fixed prediction every time;
// the adaptive one (methods 8 and 9) mispredicts only the first: later
// calls to the same target take the new target it had, and calls to its
// neighbours in the same 4 KiB the shift it had.
func TestExeAdaptiveLearns(t *testing.T) {
	const n, calls, moved = 4000, 2000, 100
	old := bytes.Repeat([]byte{0x90}, n)
	newb := bytes.Clone(old)
	for i := 0; i+5 <= calls; i += 16 {
		target := 3000 + int64(i/16%5)*8 // five functions in one region
		old[i], newb[i] = 0xE8, 0xE8
		binary.LittleEndian.PutUint32(old[i+1:], uint32(target-int64(i+5)))
		binary.LittleEndian.PutUint32(newb[i+1:], uint32(target+moved-int64(i+5)))
	}
	rs := []codeRange{{0, n}}
	eqs := []equiv{{0, 0, calls}} // the callers match; the callee's region does not
	fo := bytes.Clone(old)
	filterAll(fo, exeArchX86_64, rs, true)
	for _, c := range []struct {
		adapt  bool
		missed int
	}{{false, (calls + 15) / 16}, {true, 1}} {
		enc := bytes.Clone(newb)
		filterAll(enc, exeArchX86_64, rs, true)
		pf := exeFilter{arch: exeArchX86_64, ranges: rs, enc: true, predOnly: true, pred: newPredictor(exeArchX86_64, eqs, fo, rs, c.adapt)}
		pf.run(enc, 0)
		missed := 0
		for i := 0; i+5 <= calls; i += 16 {
			if !bytes.Equal(enc[i:i+5], fo[i:i+5]) {
				missed++
			}
		}
		if missed != c.missed {
			t.Errorf("adapt %v: %d calls mispredicted, want %d", c.adapt, missed, c.missed)
		}
		var out bytes.Buffer
		uw := &unfilterWriter{w: &out, f: exeFilter{arch: exeArchX86_64, ranges: rs, pred: newPredictor(exeArchX86_64, eqs, fo, rs, c.adapt)}}
		streamThrough(t, uw, enc, rand.New(rand.NewPCG(1, 2)), 9)
		if !bytes.Equal(out.Bytes(), newb) {
			t.Fatalf("adapt %v: round trip differs", c.adapt)
		}
	}
}

// TestTargetMemorySlots: a key evicts the one before it in its slot, and
// the tables never hold more than their fixed size.
func TestTargetMemorySlots(t *testing.T) {
	m := newTargetMemory()
	a := uint32(12345)
	b := a + 1
	for m.last.index(b) != m.last.index(a) {
		b++
	}
	m.last.put(a, 1)
	if v, ok := m.last.get(a); !ok || v != 1 {
		t.Fatalf("get(a) = %d, %v", v, ok)
	}
	if _, ok := m.last.get(a + 1); ok && m.last.index(a+1) != m.last.index(a) {
		t.Error("a key never put was found")
	}
	m.last.put(b, 2)
	if _, ok := m.last.get(a); ok {
		t.Error("a survived b in its slot")
	}
	if v, ok := m.last.get(b); !ok || v != 2 {
		t.Errorf("get(b) = %d, %v", v, ok)
	}
	size := 0
	for _, tb := range []memTable{m.last, m.shift} {
		size += len(tb.slot)*int(unsafe.Sizeof(memEntry{})) + len(tb.used)*8
	}
	if size > 2300<<10 {
		t.Errorf("targetMemory holds %d bytes, more than 2.2 MiB", size)
	}
}

func TestParseEquivsHostile(t *testing.T) {
	table := func(count uint64, entries ...[3]int64) []byte {
		b := binary.AppendUvarint(nil, count)
		for _, e := range entries {
			b = binary.AppendUvarint(b, uint64(e[0]))
			b = binary.AppendVarint(b, e[1])
			b = binary.AppendUvarint(b, uint64(e[2]))
		}
		return b
	}
	for _, c := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"too many", table(maxEquivs + 1)},
		{"truncated", table(2, [3]int64{0, 0, 10})},
		{"zero length", table(1, [3]int64{0, 0, 0})},
		{"past new end", table(1, [3]int64{95, 0, 10})},
		{"past old end", table(1, [3]int64{0, 95, 10})},
		{"negative old", table(1, [3]int64{0, -1, 10})},
		{"huge gap", table(1, [3]int64{1 << 62, 0, 1})},
		{"huge length", table(1, [3]int64{0, 0, 1 << 62})},
		{"second overlaps end", table(2, [3]int64{0, 0, 90}, [3]int64{5, 0, 6})},
	} {
		if _, _, err := parseEquivs(c.p, 100, 100); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", c.name, err)
		}
	}
}

// TestExePredictArm64: a BL whose target moved with the code after an
// insertion is predicted exactly (the same bytes as in the old file), and
// the streaming decoder undoes it.
func TestExePredictArm64(t *testing.T) {
	for _, adapt := range []bool{false, true} {
		t.Run(fmt.Sprintf("adapt=%v", adapt), func(t *testing.T) { testExePredictArm64(t, adapt) })
	}
}

func testExePredictArm64(t *testing.T, adapt bool) {
	const n = 4096
	r := rand.New(rand.NewPCG(3, 4))
	old := make([]byte, n)
	for i := 0; i < n; i += 4 {
		w := r.Uint32() &^ 0xFC000000 // not a BL
		if r.IntN(4) == 0 {
			target := int64(r.IntN(n/4)) * 4
			w = 0x94000000 | uint32((target-int64(i))>>2)&0x03FFFFFF
		}
		binary.LittleEndian.PutUint32(old[i:], w)
	}
	const h, ins = 2048, 64
	newb := append(append(bytes.Clone(old[:h]), make([]byte, ins)...), old[h:]...)
	// Retarget the calls the insertion moved, as a linker would.
	for i := 0; i < len(newb); i += 4 {
		w := binary.LittleEndian.Uint32(newb[i:])
		if w&0xFC000000 != 0x94000000 {
			continue
		}
		if i >= h && i < h+ins {
			continue
		}
		src := int64(i)
		if src >= h+ins {
			src -= ins
		}
		target := src + int64(int32(w<<6)>>6)*4
		if target >= h {
			target += ins
		}
		binary.LittleEndian.PutUint32(newb[i:], 0x94000000|uint32((target-int64(i))>>2)&0x03FFFFFF)
	}
	oldR, newR := []codeRange{{0, n}}, []codeRange{{0, int64(len(newb))}}
	eqs := []equiv{{0, 0, h}, {h + ins, h, n - h}}
	fo := bytes.Clone(old)
	filterAll(fo, exeArchArm64, oldR, true)
	enc := bytes.Clone(newb)
	filterAll(enc, exeArchArm64, newR, true)
	pf := exeFilter{arch: exeArchArm64, ranges: newR, enc: true, predOnly: true, pred: newPredictor(exeArchArm64, eqs, fo, oldR, adapt)}
	pf.run(enc, 0)
	if !bytes.Equal(enc[:h], fo[:h]) || !bytes.Equal(enc[h+ins:], fo[h:]) {
		for i := 0; i < h; i += 4 {
			if !bytes.Equal(enc[i:i+4], fo[i:i+4]) {
				t.Logf("first half word %d: %x vs %x (new %x old %x)", i, enc[i:i+4], fo[i:i+4], newb[i:i+4], old[i:i+4])
				break
			}
		}
		t.Error("predicted BLs differ from the old ones")
	}
	var out bytes.Buffer
	uw := &unfilterWriter{w: &out, f: exeFilter{arch: exeArchArm64, ranges: newR, pred: newPredictor(exeArchArm64, eqs, fo, oldR, adapt)}}
	streamThrough(t, uw, enc, r, 23)
	if !bytes.Equal(out.Bytes(), newb) {
		t.Fatal("round trip: the output differs from the new file")
	}
}

// streamThrough writes p to uw in pieces of 1..maxChunk bytes and flushes.
func streamThrough(t *testing.T, uw *unfilterWriter, p []byte, r *rand.Rand, maxChunk int) {
	t.Helper()
	for len(p) > 0 {
		k := min(len(p), 1+r.IntN(maxChunk))
		if _, err := uw.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := uw.flush(); err != nil {
		t.Fatal(err)
	}
}

// TestExeRelaRoundTrip: RELA addends that moved with their targets are
// predicted exactly, and the streaming decoder undoes the prediction.
func TestExeRelaRoundTrip(t *testing.T) {
	for _, adapt := range []bool{false, true} {
		t.Run(fmt.Sprintf("adapt=%v", adapt), func(t *testing.T) { testExeRelaRoundTrip(t, adapt) })
	}
}

// testExeRelaRoundTrip: with adapt (methods 8 and 9) the record offsets,
// which point past the insertion too, are predicted as well.
func testExeRelaRoundTrip(t *testing.T, adapt bool) {
	const n = 8192
	r := rand.New(rand.NewPCG(5, 6))
	old := make([]byte, n)
	for i := range old {
		old[i] = byte(r.Uint32())
	}
	const relaOff, relaLen = 1000, 24 * 40 // records at [1000, 1960)
	for i := int64(relaOff); i < relaOff+relaLen; i += relaRecord {
		binary.LittleEndian.PutUint64(old[i+relaAddend:], uint64(4000+r.IntN(4000))) // targets past the insertion
		binary.LittleEndian.PutUint64(old[i:], uint64(5000+i*2))                     // slots past it too
	}
	const h, ins = 3000, 48
	newb := append(append(bytes.Clone(old[:h]), make([]byte, ins)...), old[h:]...)
	for i := int64(relaOff); i < relaOff+relaLen; i += relaRecord {
		v := binary.LittleEndian.Uint64(newb[i+relaAddend:])
		binary.LittleEndian.PutUint64(newb[i+relaAddend:], v+ins)
		if adapt {
			binary.LittleEndian.PutUint64(newb[i:], binary.LittleEndian.Uint64(newb[i:])+ins)
		}
	}
	eqs := []equiv{{0, 0, h}, {h + ins, h, n - h}}
	relaR := []codeRange{{relaOff, relaLen}}
	pred := newPredictor(exeArchX86_64, eqs, old, nil, adapt)
	enc := bytes.Clone(newb)
	newRelaPredictor(pred, relaR, relaR).run(enc, 0, true)
	want := old[:h]
	if adapt {
		// The first record's offset is coded as its shift; the others are
		// predicted from it.
		want = bytes.Clone(old[:h])
		binary.LittleEndian.PutUint64(want[relaOff:], binary.LittleEndian.Uint64(old[relaOff:])+ins)
	}
	if !bytes.Equal(enc[:h], want) {
		t.Error("predicted records differ from the old ones")
	}
	var out bytes.Buffer
	rw := relaWriter(&out, newRelaPredictor(pred, relaR, relaR))
	for p := enc; len(p) > 0; {
		k := min(len(p), 1+r.IntN(50))
		rw.Write(p[:k])
		p = p[k:]
	}
	if err := rw.flush(); err != nil || !bytes.Equal(out.Bytes(), newb) {
		t.Fatalf("round trip: %v, equal %v", err, bytes.Equal(out.Bytes(), newb))
	}
	// A relocation table must be whole records.
	if _, _, err := parseRanges(appendRanges(nil, []codeRange{{0, 25}}), 100, relaRecord, "relocation"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a 25-byte relocation range: %v, want ErrCorrupt", err)
	}
}

func TestExeRela(t *testing.T) {
	if rs := exeRela(goTestdata(t, "elf", "gcc-amd64-linux-exec")); len(rs) == 0 {
		t.Error("no RELA section found in gcc-amd64-linux-exec")
	}
	for _, b := range [][]byte{nil, []byte("\x7fELF junk"), goTestdata(t, "elf", "gcc-386-freebsd-exec"), goTestdata(t, "pe", "gcc-amd64-mingw-exec")} {
		if rs := exeRela(b); rs != nil {
			t.Errorf("exeRela(%d bytes) = %v, want none", len(b), rs)
		}
	}
}

// TestNoSolidKeepsOldMethods: a bundle for older clients (NoSolid) holds
// no payload of a method they cannot read (6 to 9), here an executable's.
func TestNoSolidKeepsOldMethods(t *testing.T) {
	old := goTestdata(t, "elf", "gcc-amd64-linux-exec")
	_, rs := exeCode(old)
	newb := retargetCalls(old, rs[0])
	dir := t.TempDir()
	for _, d := range []struct {
		name string
		b    []byte
	}{{"old", old}, {"new", newb}} {
		if err := os.MkdirAll(filepath.Join(dir, d.name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d.name, "app"), d.b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	st, err := DiffBundle(context.Background(), filepath.Join(dir, "old"), filepath.Join(dir, "new"), &buf, &BundleOptions{NoSolid: true})
	if err != nil {
		t.Fatal(err)
	}
	var methods []Method
	for _, e := range st.Entries {
		if e.Kind == EntryPatch || e.Kind == EntryNew {
			methods = append(methods, e.Method)
		}
	}
	if len(methods) == 0 || st.SolidSize != 0 {
		t.Fatalf("NoSolid: %d payloads, solid stream %d bytes", len(methods), st.SolidSize)
	}
	for _, m := range methods {
		if m > MethodExeZstdDict {
			t.Errorf("NoSolid: a payload of method %v", m)
		}
	}
}

// retargetCalls returns old with every call in code range r retargeted by
// 16 bytes, as a relink that moved functions would.
func retargetCalls(old []byte, r codeRange) []byte {
	newb := bytes.Clone(old)
	for i := r.off; i+5 <= r.end(); i++ {
		if newb[i] == 0xE8 {
			v := binary.LittleEndian.Uint32(newb[i+1:])
			binary.LittleEndian.PutUint32(newb[i+1:], v+16)
			i += 4
		}
	}
	return newb
}

// uvarints codes vs as consecutive uvarints.
func uvarints(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}
