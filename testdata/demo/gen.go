//go:build ignore

// gen writes app-1.0.bin and app-1.1.bin: two versions of a synthetic
// machine-code-like file (about 256 KiB) where version 1.1 inserts a few
// functions, so that every relative call across the insertion point changes
// its 4-byte displacement — the pattern that makes real executables hard to
// diff. Run: go run testdata/demo/gen.go (from the module root).
package main

import (
	"encoding/binary"
	"math/rand"
	"os"
)

type fn struct {
	body  []byte
	calls []call // offsets of rel32 fields in body and the callee index
}

type call struct {
	at     int
	callee int
}

func main() {
	rng := rand.New(rand.NewSource(42))
	var fns []fn
	for i := 0; i < 900; i++ {
		fns = append(fns, makeFn(rng, i))
	}
	write("testdata/demo/app-1.0.bin", link(fns))
	// Version 1.1: three new functions in the middle, two changed bodies.
	v2 := append([]fn{}, fns[:300]...)
	for i := 0; i < 3; i++ {
		v2 = append(v2, makeFn(rng, 300+i))
	}
	v2 = append(v2, fns[300:]...)
	v2[100] = makeFn(rng, 100)
	v2[700] = makeFn(rng, 700)
	write("testdata/demo/app-1.1.bin", link(v2))
}

func makeFn(rng *rand.Rand, idx int) fn {
	var f fn
	n := 40 + rng.Intn(400)
	for len(f.body) < n {
		switch rng.Intn(5) {
		case 0: // call rel32
			f.body = append(f.body, 0xE8, 0, 0, 0, 0)
			f.calls = append(f.calls, call{len(f.body) - 4, rng.Intn(900)})
		case 1: // mov reg, imm32
			f.body = append(f.body, 0xB8+byte(rng.Intn(8)))
			f.body = binary.LittleEndian.AppendUint32(f.body, uint32(rng.Intn(1<<16)))
		default: // short opcodes from a small vocabulary
			ops := [][]byte{{0x48, 0x89, 0xC7}, {0x48, 0x83, 0xEC, 0x28}, {0xC3}, {0x90}, {0x48, 0x8B, 0x45, 0xF8}, {0x31, 0xC0}}
			f.body = append(f.body, ops[rng.Intn(len(ops))]...)
		}
	}
	_ = idx
	return f
}

func link(fns []fn) []byte {
	addr := make([]int, len(fns))
	pos := 0
	for i, f := range fns {
		addr[i] = pos
		pos += len(f.body)
	}
	out := make([]byte, 0, pos)
	for i, f := range fns {
		b := append([]byte{}, f.body...)
		for _, c := range f.calls {
			target := addr[c.callee%len(fns)]
			rel := target - (addr[i] + c.at + 4)
			binary.LittleEndian.PutUint32(b[c.at:], uint32(int32(rel)))
		}
		out = append(out, b...)
	}
	return out
}

func write(name string, b []byte) {
	if err := os.WriteFile(name, b, 0o644); err != nil {
		panic(err)
	}
}
