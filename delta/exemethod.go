package delta

import (
	"context"
	"io"
	"runtime/debug"
)

// exeInput holds what the exe methods code: both files filtered, and the
// header naming the architecture and the ranges.
type exeInput struct {
	head       []byte
	arch       int
	oldR, newR []codeRange
	fo, fn     []byte
	// oldRela, newRela: the RELA sections (x86-64 ELF), predicted too.
	oldRela, newRela []codeRange
	// oldMap, newMap: the address maps, and ptrR the new file's pointer
	// ranges (methods 8 and 9).
	oldMap, newMap addrMap
	ptrR           []codeRange
	tabs           []baseTable
}

// prepareExe filters copies of old and newb when both are x86-64 or arm64
// executables of the same architecture that exeCode understands, and
// returns nil otherwise (nothing is spent beyond parsing the section
// tables). Memory: len(old)+len(newb) for the copies.
func prepareExe(old, newb []byte) *exeInput {
	archO, oldR := exeCode(old)
	archN, newR := exeCode(newb)
	if archO == 0 || archO != archN {
		return nil
	}
	ex := &exeInput{head: exeHeader(archO, oldR, newR), arch: archO, oldR: oldR, newR: newR, fo: append([]byte(nil), old...), fn: append([]byte(nil), newb...)}
	filterAll(ex.fo, archO, oldR, true)
	filterAll(ex.fn, archN, newR, true)
	if archO == exeArchX86_64 {
		ex.oldRela, ex.newRela = exeRela(old), exeRela(newb)
	}
	if ex.oldMap, ex.newMap = exeAddrMap(old), exeAddrMap(newb); ex.oldMap == nil || ex.newMap == nil {
		ex.oldMap, ex.newMap = nil, nil
	} else {
		ex.tabs = exeTables(old, newb)
		ex.ptrR = pointerRanges(ex.newMap, newR, ex.newRela, ex.tabs)
	}
	return ex
}

// exeBsdiffMethods are the methods bsdiffBodies makes, in the order
// Diff weighs them.
var exeBsdiffMethods = []Method{MethodExeBsdiffCM, MethodExeBsdiffCM2, MethodExe2BsdiffCM, MethodExe2BsdiffCM2}

// bsdiffBodies makes the bodies of the exe-bsdiff methods that want
// accepts (4 and 7: fixed prediction; 8 and 9: adaptive; 7 and 9 coded
// with cm2) from one second bsdiff pass over the filtered files (a suffix
// array of 4*len(old) while it runs); its long add steps become the
// equivalences of the reference prediction, applied to a copy of the
// filtered new file (len(newb) more per prediction) before the edit
// script is coded, once per method.
func (ex *exeInput) bsdiffBodies(ctx context.Context, workers int, want func(Method) bool) (map[Method][]byte, error) {
	out := map[Method][]byte{}
	m, err := newMatcher(ex.fo)
	if err != nil {
		return out, err
	}
	ops, err := diffOps(ctx, m, ex.fn, workers, nil)
	if err != nil {
		return out, err
	}
	m.sa, m.bucket = nil, nil
	if len(ex.fo) >= freeOSMemoryFrom {
		debug.FreeOSMemory()
	}
	eqs := equivsOf(ops)
	for _, adapt := range []bool{false, true} {
		cm1, cm2 := MethodExeBsdiffCM, MethodExeBsdiffCM2
		if adapt {
			cm1, cm2 = MethodExe2BsdiffCM, MethodExe2BsdiffCM2
		}
		if !want(cm1) && !want(cm2) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		var oldRela, newRela, ptrR []codeRange
		var tabs []baseTable
		fn := ex.fn
		if len(eqs) > 0 {
			fn = append([]byte(nil), ex.fn...)
			pred := newPredictor(ex.arch, eqs, ex.fo, ex.oldR, adapt)
			if adapt {
				pred.oldMap, pred.newMap = ex.oldMap, ex.newMap
			}
			f := exeFilter{arch: ex.arch, ranges: ex.newR, enc: true, predOnly: true, pred: pred}
			f.run(fn, 0)
			if len(ex.oldRela) > 0 && len(ex.newRela) > 0 {
				oldRela, newRela = ex.oldRela, ex.newRela
				newRelaPredictor(pred, oldRela, newRela).run(fn, 0, true)
			}
			if adapt && (len(ex.ptrR) > 0 || len(ex.tabs) > 0) {
				ptrR, tabs = ex.ptrR, ex.tabs
				for _, d := range newDataPredictors(pred, ptrR, ex.oldR, tabs) {
					d.run(fn, 0, true)
				}
			}
		}
		head := appendEquivs(append([]byte(nil), ex.head...), eqs)
		head = appendRanges(appendRanges(head, oldRela), newRela)
		if adapt {
			head = appendRanges(appendAddrMap(appendAddrMap(head, ex.oldMap), ex.newMap), ptrR)
			head = appendTables(head, tabs)
		}
		for _, m := range []Method{cm1, cm2} {
			if want(m) {
				out[m] = append(append([]byte(nil), head...), encodeSegmentsCoder(ex.fo, fn, ops, workers, m == cm2)...)
			}
		}
	}
	return out, nil
}

// zstdBody is the exe-zstd-dict body: a zstd frame of the filtered new
// file with the filtered old file as raw dictionary.
func (ex *exeInput) zstdBody() ([]byte, error) {
	z, err := zstdEncode(ex.fn, ex.fo)
	if err != nil {
		return nil, err
	}
	body := appendRanges(appendRanges(appendEquivs(append([]byte(nil), ex.head...), nil), nil), nil)
	return append(body, z...), nil
}

// applyExe rebuilds the new file of an exe-bsdiff-cm or exe-zstd-dict
// body: the old file is copied and filtered (the extra memory: len(old)),
// the rest of the body decodes against it as method 1 or 2 does, and the
// output is unfiltered as it streams to w. gate is the old file's check;
// nothing reaches w before it passes.
func applyExe(ctx context.Context, old, body []byte, hd header, w io.Writer, gate func() error) error {
	arch, oldR, newR, rest, err := parseExeHeader(body, hd.oldSize, hd.newSize)
	if err != nil {
		return err
	}
	eqs, rest, err := parseEquivs(rest, hd.oldSize, hd.newSize)
	if err != nil {
		return err
	}
	oldRela, rest, err := parseRanges(rest, hd.oldSize, relaRecord, "relocation")
	if err != nil {
		return err
	}
	newRela, rest, err := parseRanges(rest, hd.newSize, relaRecord, "relocation")
	if err != nil {
		return err
	}
	var segs []segment
	adapt := hd.method == MethodExe2BsdiffCM || hd.method == MethodExe2BsdiffCM2
	var oldMap, newMap addrMap
	var ptrR []codeRange
	var tabs []baseTable
	if adapt {
		if oldMap, rest, err = parseAddrMap(rest, hd.oldSize); err != nil {
			return err
		}
		if newMap, rest, err = parseAddrMap(rest, hd.newSize); err != nil {
			return err
		}
		if ptrR, rest, err = parseRanges(rest, hd.newSize, 1, "pointer"); err != nil {
			return err
		}
		if tabs, rest, err = parseTables(rest, hd.newSize); err != nil {
			return err
		}
	}
	if hd.method != MethodExeZstdDict {
		if segs, err = parseSegments(rest, hd.newSize); err != nil {
			return err
		}
		for i := range segs {
			segs[i].cm2 = hd.method == MethodExeBsdiffCM2 || hd.method == MethodExe2BsdiffCM2
		}
	}
	fo := append([]byte(nil), old...)
	filterAll(fo, arch, oldR, true)
	uw := &unfilterWriter{w: w, f: exeFilter{arch: arch, ranges: newR}}
	var out io.Writer = uw
	var rw *stageWriter
	var dws []*stageWriter
	if len(eqs) > 0 {
		uw.f.pred = newPredictor(arch, eqs, fo, oldR, adapt)
		uw.f.pred.oldMap, uw.f.pred.newMap = oldMap, newMap
		if len(newRela) > 0 {
			rw = relaWriter(uw, newRelaPredictor(uw.f.pred, oldRela, newRela))
			out = rw
		}
		if len(ptrR) > 0 || len(tabs) > 0 {
			// The writer predicted code, then relocations, then pointers,
			// then relative words: the reader undoes them the other way
			// round.
			for _, d := range newDataPredictors(uw.f.pred, ptrR, oldR, tabs) {
				dw := dataWriter(out, d)
				dws = append([]*stageWriter{dw}, dws...)
				out = dw
			}
		}
	}
	if hd.method != MethodExeZstdDict {
		err = decodeSegmentsStream(ctx, fo, segs, out, gate)
	} else {
		if err = gate(); err != nil {
			return err
		}
		var dict []byte
		if len(fo) > 0 {
			dict = fo
		}
		err = zstdDecode(rest, dict, hd.newSize, out)
	}
	if err != nil {
		return err
	}
	for _, dw := range dws {
		if err := dw.flush(); err != nil {
			return err
		}
	}
	if rw != nil {
		if err := rw.flush(); err != nil {
			return err
		}
	}
	return uw.flush()
}
