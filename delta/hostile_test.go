package delta_test

// Hostile patches: every one must fail with the right error class, never
// panic, write nothing for problems found in the header, and, through
// ApplyFile, leave no output and no temporary file behind.
//
// The fixtures in testdata/delta/hostile are made by hostileFixtures; to
// rewrite them (after changing the generator):
//
//	go test ./delta -run TestHostileFiles -update

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/deltaup/deltaup/delta"
)

// fixture is one hostile patch, with the old file it is applied to and the
// error classes it may fail with ("ok" for the controls that must apply).
type fixture struct {
	name    string // file name under testdata/delta/hostile
	oldName string // old file: old.bin, old2.bin (old.bin with one byte changed) or "-" (empty)
	want    string
	note    string
	patch   []byte
}

// hostileOlds are the old files the fixtures refer to.
func hostileOlds() map[string][]byte {
	old := fakeBinary(100, 4096)
	old2 := bytes.Clone(old)
	old2[1234] ^= 0x40
	return map[string][]byte{"old.bin": old, "old2.bin": old2, "-": nil}
}

// hostileNew is the new file the valid base patches of the fixtures make.
func hostileNew(old []byte) []byte {
	n := slices.Concat(old[:1000], []byte("a new string table entry\x00"), old[1000:3000], fakeBinary(101, 700), old[3300:])
	for i := 100; i < len(n); i += 97 {
		n[i]++
	}
	return n
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// hostileFixtures builds every fixture. Native bodies are zstd frames (whose
// decoding does not change with the cm1 coder) except where a cm1 body is
// the point, and those accept either ErrCorrupt or ErrHashMismatch.
func hostileFixtures(t testing.TB) []fixture {
	olds := hostileOlds()
	old := olds["old.bin"]
	newb := hostileNew(old)
	ctx := context.Background()
	var zb bytes.Buffer
	must(delta.Diff(ctx, old, newb, &zb, &delta.DiffOptions{Methods: []delta.Method{delta.MethodZstdDict}}))
	base := zb.Bytes() // valid zstd-dict patch of old.bin
	h := parseNativeHeader(t, base)
	body := base[100:]

	var fs []fixture
	add := func(name, oldName, want, note string, patch []byte) {
		fs = append(fs, fixture{name: name, oldName: oldName, want: want, note: note, patch: patch})
	}
	nat := func(name, want, note string, edit func(h *nativeHeader), body []byte) {
		hh := h
		edit(&hh)
		p := append(hh.bytes(), body...)
		fixCRC(p) // reach the checks behind the checksums
		add(name, "old.bin", want, note, p)
	}
	same := func(*nativeHeader) {}

	// Controls: must apply.
	add("native-valid.patch", "old.bin", "ok", "control: valid zstd-dict patch", base)

	// Framing and header.
	add("native-empty.patch", "old.bin", "corrupt", "zero bytes", nil)
	add("native-short.patch", "old.bin", "corrupt", "5 bytes of magic and version", base[:5])
	add("native-truncated-header.patch", "old.bin", "corrupt", "60 of the 100 header bytes", base[:60])
	nat("native-bad-magic.patch", "format", "magic DUPX", func(h *nativeHeader) { h.Magic[3] = 'X' }, body)
	nat("native-lowercase-magic.patch", "format", "magic dupt", func(h *nativeHeader) { copy(h.Magic[:], "dupt") }, body)
	add("native-text.patch", "old.bin", "format", "not a patch at all", []byte("#!/bin/sh\necho this is not a patch\n"))
	nat("native-version2.patch", "format", "format version 2, CRC fixed", func(h *nativeHeader) { h.Version = 2 }, body)
	nat("native-version0.patch", "format", "format version 0, CRC fixed", func(h *nativeHeader) { h.Version = 0 }, body)
	nat("native-method0.patch", "format", "method 0, CRC fixed", func(h *nativeHeader) { h.Method = 0 }, body)
	nat("native-method10.patch", "format", "method 10 (after the last, 9), CRC fixed", func(h *nativeHeader) { h.Method = 10 }, body)
	nat("native-exe-on-zstd-body.patch", "corrupt", "zstd-dict body labelled exe-bsdiff-cm (architecture 0x28)", func(h *nativeHeader) { h.Method = 4 }, body)
	rangeBody := append(binary.AppendUvarint([]byte{1, 0, 1, 0}, uint64(len(newb)+1)), body...)
	nat("native-exe-range-past-end.patch", "corrupt", "exe-zstd-dict, a code range past the new file's end", func(h *nativeHeader) { h.Method, h.BodyLen = 5, uint64(len(rangeBody)) },
		rangeBody)
	// Methods 8 and 9: architecture, no code ranges, no equivalences, no
	// relocation tables, then the address maps, pointer ranges and tables.
	exe2 := func(rest ...uint64) []byte {
		b := []byte{1, 0, 0, 0, 0, 0}
		for _, v := range rest {
			b = binary.AppendUvarint(b, v)
		}
		return append(b, body...)
	}
	mapBody := exe2(0, 1, 0, uint64(len(newb)+1), 0x400000)
	nat("native-exe2-map-past-end.patch", "corrupt", "exe2-bsdiff-cm, a new address-map segment past the new file's end", func(h *nativeHeader) { h.Method, h.BodyLen = 8, uint64(len(mapBody)) }, mapBody)
	tabBody := exe2(0, 0, 0, 1, 0, 6, 0x1000, 0x1000)
	nat("native-exe2-table-not-words.patch", "corrupt", "exe2-bsdiff-cm2, a table of 6 bytes (not whole 4-byte words)", func(h *nativeHeader) { h.Method, h.BodyLen = 9, uint64(len(tabBody)) }, tabBody)
	bad := bytes.Clone(base)
	bad[97] ^= 0x01
	add("native-header-crc.patch", "old.bin", "corrupt", "CRC-32C field flipped", bad)
	bad = bytes.Clone(base)
	bad[17] ^= 0x20
	add("native-header-bitflip.patch", "old.bin", "corrupt", "new size flipped, CRC not fixed", bad)
	nat("native-reserved.patch", "corrupt", "reserved byte 7 set, CRC fixed", func(h *nativeHeader) { h.Reserved[1] = 1 }, body)

	// Sizes.
	nat("native-newsize-1tib.patch", "toolarge", "new size 2^40 > default cap", func(h *nativeHeader) { h.NewSize = 1 << 40 }, body)
	nat("native-newsize-2p62.patch", "toolarge|corrupt", "new size 2^62", func(h *nativeHeader) { h.NewSize = 1 << 62 }, body)
	nat("native-newsize-max.patch", "corrupt|toolarge", "new size 2^64-1", func(h *nativeHeader) { h.NewSize = 1<<64 - 1 }, body)
	nat("native-oldsize-2p62.patch", "corrupt|oldmismatch", "old size 2^62", func(h *nativeHeader) { h.OldSize = 1 << 62 }, body)
	nat("native-bodylen-2p62.patch", "toolarge|corrupt", "body length 2^62", func(h *nativeHeader) { h.BodyLen = 1 << 62 }, body)
	add("native-cm-newsize-1tib.patch", "old.bin", "toolarge", "116 bytes: bsdiff-cm, one segment said to rebuild 2^40 bytes", claimPatch(delta.MethodBsdiffCM, old, 1<<40))
	nat("native-bodylen-over-cap.patch", "toolarge", "16-byte new file with a body said to be 100 KB", func(h *nativeHeader) { h.NewSize = 16; h.BodyLen = 100 << 10 }, make([]byte, 16))

	// Old file.
	add("native-old-hash-mismatch.patch", "old2.bin", "oldmismatch", "valid patch, old file of the same size with one byte changed", base)
	add("native-old-size-mismatch.patch", "-", "oldmismatch", "valid patch, empty old file", base)

	// Body framing.
	add("native-truncated-body.patch", "old.bin", "corrupt", "half the body", base[:100+len(body)/2])
	add("native-truncated-body-1.patch", "old.bin", "corrupt", "body one byte short", base[:len(base)-1])
	add("native-trailing-garbage.patch", "old.bin", "corrupt", "text after the body", slices.Concat(base, []byte("trailing garbage")))
	add("native-trailing-zero.patch", "old.bin", "corrupt", "one zero byte after the body", slices.Concat(base, []byte{0}))
	nat("native-bodylen-short.patch", "corrupt", "body length one less than the body, CRC fixed", func(h *nativeHeader) { h.BodyLen-- }, body)
	nat("native-bodylen-long.patch", "corrupt", "body length one more than the body, CRC fixed", func(h *nativeHeader) { h.BodyLen++ }, body)

	// Body contents.
	nat("native-wrong-new-hash.patch", "hashmismatch", "new SHA-256 changed, CRC fixed", func(h *nativeHeader) { h.NewSum[0] ^= 1 }, body)
	nat("native-newsize-minus1.patch", "corrupt|hashmismatch", "zstd frame one byte longer than the new size", func(h *nativeHeader) { h.NewSize-- }, body)
	nat("native-newsize-plus1.patch", "corrupt|hashmismatch", "zstd frame one byte shorter than the new size", func(h *nativeHeader) { h.NewSize++ }, body)
	garbage := randomBytes(102, 300)
	nat("native-zstd-garbage.patch", "corrupt|hashmismatch", "random zstd body", func(h *nativeHeader) { h.BodyLen = uint64(len(garbage)) }, garbage)
	nat("native-zstd-empty-body.patch", "corrupt", "zstd method, empty body", func(h *nativeHeader) { h.BodyLen = 0 }, nil)
	nat("native-cm-garbage.patch", "corrupt|hashmismatch", "random bsdiff-cm body", func(h *nativeHeader) { h.Method = 1; h.BodyLen = uint64(len(garbage)) }, garbage)
	nat("native-cm-empty-body.patch", "corrupt|hashmismatch", "bsdiff-cm method, empty body", func(h *nativeHeader) { h.Method = 1; h.BodyLen = 0 }, nil)
	nat("native-method-swap.patch", "corrupt|hashmismatch", "zstd-dict body labelled bsdiff-cm", func(h *nativeHeader) { h.Method = 1 }, body)
	nat("native-dict-swap.patch", "corrupt|hashmismatch", "zstd-dict body labelled plain zstd", func(h *nativeHeader) { h.Method = 3 }, body)
	flipped := bytes.Clone(body)
	flipped[len(flipped)/2] ^= 0x55
	nat("native-body-flip.patch", "corrupt|hashmismatch", "one body byte flipped", same, flipped)
	nat("native-empty-new-garbage.patch", "corrupt|hashmismatch", "empty new file, random zstd body", func(h *nativeHeader) {
		h.NewSize, h.NewSum, h.BodyLen = 0, sha256.Sum256(nil), uint64(len(garbage))
	}, garbage)

	// BSDIFF40, hand-built over old.bin (4096 bytes).
	bs := func(name, want, note string, ts []triple, diff, extra []byte, newSize int64) {
		add(name, "old.bin", want, note, bsPatch(bz(ctrlBytes(ts...)), bz(diff), bz(extra), newSize))
	}
	var bb bytes.Buffer
	must(delta.Diff(ctx, old, newb, &bb, &delta.DiffOptions{Format: delta.FormatBSDIFF40}))
	bsReal := bb.Bytes()
	add("bs-valid.patch", "old.bin", "ok", "control: valid BSDIFF40 patch made by Diff", bsReal)
	bs("bs-valid-handmade.patch", "ok", "control: hand-built (add 10, extra 3, seek 100; add 5)", []triple{{10, 3, 100}, {5, 0, 0}}, make([]byte, 15), []byte("xyz"), 18)
	bs("bs-empty-new.patch", "ok", "control: empty new file, empty blocks", nil, nil, nil, 0)
	add("bs-short-header.patch", "old.bin", "corrupt", "20 bytes", bsReal[:20])
	add("bs-magic-only.patch", "old.bin", "corrupt", "just BSDIFF40", []byte("BSDIFF40"))
	bs("bs-neg-add.patch", "corrupt", "add length -1", []triple{{-1, 5, 0}}, nil, make([]byte, 5), 4)
	bs("bs-neg-extra.patch", "corrupt", "extra length -5", []triple{{10, -5, 0}}, make([]byte, 10), nil, 5)
	add("bs-negzero-add.patch", "old.bin", "corrupt", "add length is sign-magnitude -0", bsPatch(bz(slices.Concat(negZero, offtout(4), offtout(0))), bz(nil), bz(make([]byte, 4)), 4))
	bs("bs-add-overflow.patch", "corrupt", "add 100 into a 50-byte new file", []triple{{100, 0, 0}}, make([]byte, 100), nil, 50)
	bs("bs-extra-overflow.patch", "corrupt", "add 40 + extra 20 into a 50-byte new file", []triple{{40, 20, 0}}, make([]byte, 40), make([]byte, 20), 50)
	bs("bs-add-2p62.patch", "corrupt", "add length 2^62", []triple{{1 << 62, 0, 0}}, nil, nil, 100)
	bs("bs-extra-2p62.patch", "corrupt", "extra length 2^62", []triple{{0, 1 << 62, 0}}, nil, nil, 100)
	bs("bs-add-huge.patch", "corrupt", "add length 2^63-1", []triple{{1<<63 - 1, 0, 0}}, nil, nil, 100)
	bs("bs-add-past-old.patch", "corrupt", "add 5000 from a 4096-byte old file", []triple{{5000, 0, 0}}, make([]byte, 5000), nil, 5000)
	bs("bs-seek-before-old.patch", "corrupt", "seek to -10, then add", []triple{{0, 1, -10}, {5, 0, 0}}, make([]byte, 5), []byte("a"), 6)
	bs("bs-seek-after-old.patch", "corrupt", "seek past the end of old, then add", []triple{{0, 1, 5000}, {5, 0, 0}}, make([]byte, 5), []byte("a"), 6)
	bs("bs-seek-2p62.patch", "corrupt", "seek +2^62 three times", []triple{{0, 1, 1 << 62}, {0, 1, 1 << 62}, {0, 1, 1 << 62}, {1, 0, 0}}, make([]byte, 1), []byte("abc"), 4)
	bs("bs-seek-minus-2p62.patch", "corrupt", "seek -2^62 three times", []triple{{0, 1, -(1 << 62)}, {0, 1, -(1 << 62)}, {0, 1, -(1 << 62)}, {1, 0, 0}}, make([]byte, 1), []byte("abc"), 4)
	ctrlZ, diffZ, extraZ, newSize := bsBlocks(t, bsReal)
	n := offtout(newSize)
	x, y := offtout(int64(len(ctrlZ))), offtout(int64(len(diffZ)))
	add("bs-neg-x.patch", "old.bin", "corrupt", "control block length -1", bsPatchRaw(offtout(-1), y, n, ctrlZ, diffZ, extraZ))
	add("bs-neg-y.patch", "old.bin", "corrupt", "diff block length -1", bsPatchRaw(x, offtout(-1), n, ctrlZ, diffZ, extraZ))
	add("bs-neg-newsize.patch", "old.bin", "corrupt", "new size -1", bsPatchRaw(x, y, offtout(-1), ctrlZ, diffZ, extraZ))
	add("bs-negzero-x.patch", "old.bin", "corrupt", "control block length -0", bsPatchRaw(negZero, y, n, ctrlZ, diffZ, extraZ))
	add("bs-x-2p62.patch", "old.bin", "corrupt", "control block length 2^62", bsPatchRaw(offtout(1<<62), y, n, ctrlZ, diffZ, extraZ))
	add("bs-x-beyond.patch", "old.bin", "corrupt", "control block length past the end", bsPatchRaw(offtout(int64(len(bsReal))), y, n, ctrlZ, diffZ, extraZ))
	add("bs-y-beyond.patch", "old.bin", "corrupt", "diff block length past the end", bsPatchRaw(x, offtout(int64(len(bsReal))), n, ctrlZ, diffZ, extraZ))
	add("bs-newsize-1tib.patch", "old.bin", "toolarge", "new size 2^40 > default cap", bsPatchRaw(x, y, offtout(1<<40), ctrlZ, diffZ, extraZ))
	add("bs-newsize-plus1.patch", "old.bin", "corrupt", "new size one more than the blocks make", bsPatchRaw(x, y, offtout(newSize+1), ctrlZ, diffZ, extraZ))
	add("bs-newsize-minus1.patch", "old.bin", "corrupt", "new size one less than the blocks make", bsPatchRaw(x, y, offtout(newSize-1), ctrlZ, diffZ, extraZ))
	add("bs-ctrl-not-bzip2.patch", "old.bin", "corrupt", "control block is not bzip2", bsPatch(ctrlBytes(triple{10, 0, 0}), diffZ, extraZ, newSize))
	add("bs-ctrl-truncated-stream.patch", "old.bin", "corrupt", "control bzip2 stream cut by 6 bytes", bsPatch(ctrlZ[:len(ctrlZ)-6], diffZ, extraZ, newSize))
	add("bs-diff-truncated-stream.patch", "old.bin", "corrupt", "diff bzip2 stream cut by 6 bytes", bsPatch(ctrlZ, diffZ[:len(diffZ)-6], extraZ, newSize))
	add("bs-extra-truncated-stream.patch", "old.bin", "corrupt", "extra bzip2 stream cut by 6 bytes", bsPatch(ctrlZ, diffZ, extraZ[:len(extraZ)-6], newSize))
	add("bs-ctrl-trailing-garbage.patch", "old.bin", "corrupt", "garbage after the control bzip2 stream", bsPatch(slices.Concat(ctrlZ, []byte("garbage!")), diffZ, extraZ, newSize))
	add("bs-diff-trailing-garbage.patch", "old.bin", "corrupt", "garbage after the diff bzip2 stream", bsPatch(ctrlZ, slices.Concat(diffZ, []byte("garbage!")), extraZ, newSize))
	add("bs-extra-trailing-garbage.patch", "old.bin", "corrupt", "garbage after the extra bzip2 stream", slices.Concat(bsReal, []byte("garbage!")))
	add("bs-extra-second-stream.patch", "old.bin", "corrupt", "a second bzip2 stream with data after the extra block", slices.Concat(bsReal, bz([]byte("more extra bytes"))))
	bs("bs-ctrl-short.patch", "corrupt", "one triple for a file that needs two", []triple{{10, 3, 100}}, make([]byte, 15), []byte("xyz"), 18)
	bs("bs-ctrl-extra-triple.patch", "corrupt", "a triple left after the new file is complete", []triple{{10, 3, 100}, {5, 0, 0}, {1, 0, 0}}, make([]byte, 16), []byte("xyz"), 18)
	bs("bs-diff-short.patch", "corrupt", "diff block 5 bytes short", []triple{{10, 3, 100}, {5, 0, 0}}, make([]byte, 10), []byte("xyz"), 18)
	bs("bs-extra-short.patch", "corrupt", "extra block 2 bytes short", []triple{{10, 3, 100}, {5, 0, 0}}, make([]byte, 15), []byte("x"), 18)
	bs("bs-diff-leftover.patch", "corrupt", "diff block 7 bytes too long", []triple{{10, 3, 100}, {5, 0, 0}}, make([]byte, 22), []byte("xyz"), 18)
	bs("bs-extra-leftover.patch", "corrupt", "extra block 4 bytes too long", []triple{{10, 3, 100}, {5, 0, 0}}, make([]byte, 15), []byte("xyz1234"), 18)
	bs("bs-empty-new-with-triple.patch", "corrupt", "empty new file with a control triple", []triple{{1, 0, 0}}, make([]byte, 1), nil, 0)
	add("bs-truncated.patch", "old.bin", "corrupt", "patch made by Diff, cut in the diff block", bsReal[:32+len(ctrlZ)+len(diffZ)/2])
	return fs
}

// hostileDir is where the fixtures are committed.
var hostileDir = filepath.Join(fixtureDir, "hostile")

const casesHeader = `# Hostile patches for delta.Apply, made by hostileFixtures in
# delta/hostile_test.go; rewrite with
#	go test ./delta -run TestHostileFiles -update
# Columns: patch file, old file ("-" = empty), expected error class
# (format corrupt toolarge oldmismatch hashmismatch, alternatives joined by |;
# ok = must apply), then a note.
`

func writeHostileFiles(t *testing.T) {
	if err := os.RemoveAll(hostileDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(hostileDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range hostileOlds() {
		if name != "-" {
			writeFile(t, filepath.Join(hostileDir, name), b, 0o644)
		}
	}
	var tab strings.Builder
	tab.WriteString(casesHeader)
	for _, f := range hostileFixtures(t) {
		writeFile(t, filepath.Join(hostileDir, f.name), f.patch, 0o644)
		fmt.Fprintf(&tab, "%-36s %-9s %-24s # %s\n", f.name, f.oldName, f.want, f.note)
	}
	writeFile(t, filepath.Join(hostileDir, "cases.txt"), []byte(tab.String()), 0o644)
}

// readHostileFiles reads cases.txt and the files it names.
func readHostileFiles(t *testing.T) []fixture {
	f, err := os.Open(filepath.Join(hostileDir, "cases.txt"))
	if err != nil {
		t.Fatalf("%v (make the fixtures with: go test ./delta -run TestHostileFiles -update)", err)
	}
	defer f.Close()
	var fs []fixture
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text, note, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			t.Fatalf("cases.txt:%d: want 3 fields, got %q", line, fields)
		}
		p, err := os.ReadFile(filepath.Join(hostileDir, fields[0]))
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, fixture{name: fields[0], oldName: fields[1], want: fields[2], note: strings.TrimSpace(note), patch: p})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(fs) < 20 {
		t.Fatalf("cases.txt lists only %d cases", len(fs))
	}
	return fs
}

func readOld(t *testing.T, name string) []byte {
	if name == "-" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(hostileDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHostileFiles applies every committed hostile patch with Apply and with
// ApplyFile.
func TestHostileFiles(t *testing.T) {
	if *update {
		writeHostileFiles(t)
	}
	for _, f := range readHostileFiles(t) {
		t.Run(f.name, func(t *testing.T) {
			old := readOld(t, f.oldName)
			out, info, err := applyBytes(t, old, f.patch, nil)
			wantClass(t, f.note, err, f.want)
			checkNoOutputOnHeaderError(t, err, out)
			if err == nil && (info.NewSize != int64(len(out)) || info.NewSum != sha256.Sum256(out)) {
				t.Errorf("PatchInfo %+v does not describe the %d-byte output", info, len(out))
			}
			checkApplyFile(t, old, f.patch, f.want)
		})
	}
}

// TestHostileFixturesFresh runs the generator itself (not the files): the
// cases still hold for patches made by today's Diff.
func TestHostileFixturesFresh(t *testing.T) {
	olds := hostileOlds()
	for _, f := range hostileFixtures(t) {
		_, _, err := applyBytes(t, olds[f.oldName], f.patch, nil)
		wantClass(t, f.name+": "+f.note, err, f.want)
	}
}

// checkNoOutputOnHeaderError: a problem Apply finds before decoding (cap,
// format, old file) must come with no output at all.
func checkNoOutputOnHeaderError(t *testing.T, err error, out []byte) {
	t.Helper()
	switch className(err) {
	case "format", "toolarge", "oldmismatch":
		if len(out) != 0 {
			t.Errorf("%v, yet Apply wrote %d bytes", err, len(out))
		}
	}
}

// checkApplyFile applies patch with ApplyFile in a fresh directory, once
// without and once over an existing output file, and checks that a failure
// leaves no output (or the old output untouched) and no temporary files.
func checkApplyFile(t *testing.T, old, patch []byte, want string) {
	t.Helper()
	dir := t.TempDir()
	oldPath, patchPath, outPath := filepath.Join(dir, "old"), filepath.Join(dir, "patch"), filepath.Join(dir, "out")
	writeFile(t, oldPath, old, 0o640)
	writeFile(t, patchPath, patch, 0o644)
	_, err := delta.ApplyFile(context.Background(), oldPath, patchPath, outPath, nil)
	wantClass(t, "ApplyFile", err, want)
	names := dirEntries(t, dir)
	if err != nil {
		if !slices.Equal(names, []string{"old", "patch"}) {
			t.Errorf("failed ApplyFile (%v) left %v", err, names)
		}
		stale := []byte("the previous version, must survive a failed apply")
		writeFile(t, outPath, stale, 0o600)
		_, err = delta.ApplyFile(context.Background(), oldPath, patchPath, outPath, nil)
		wantClass(t, "ApplyFile over an existing file", err, want)
		if got, _ := os.ReadFile(outPath); !bytes.Equal(got, stale) {
			t.Errorf("failed ApplyFile changed the existing output to %s", short(got))
		}
		if names := dirEntries(t, dir); !slices.Equal(names, []string{"old", "out", "patch"}) {
			t.Errorf("failed ApplyFile over an existing file left %v", names)
		}
		return
	}
	if !slices.Equal(names, []string{"old", "out", "patch"}) {
		t.Errorf("ApplyFile left %v", names)
	}
	if fi, err := os.Stat(outPath); err != nil {
		t.Error(err)
	} else if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o640 {
		t.Errorf("output mode %v, want the old file's 0640", fi.Mode())
	}
}

// TestHostileNativeOptions: the caps of ApplyOptions.
func TestHostileNativeOptions(t *testing.T) {
	old := fakeBinary(110, 20<<10)
	newb := hostileNew(old)
	for _, c := range configs() {
		p, _ := diffBytes(t, old, newb, &c.opts)
		n := int64(len(newb))
		for _, tc := range []struct {
			opts delta.ApplyOptions
			want string
		}{
			{delta.ApplyOptions{MaxNewSize: n}, "ok"},
			{delta.ApplyOptions{MaxNewSize: n - 1}, "toolarge"},
			{delta.ApplyOptions{MaxNewSize: 1}, "toolarge"},
			{delta.ApplyOptions{MaxPatchSize: int64(len(p))}, "ok"},
			{delta.ApplyOptions{MaxPatchSize: int64(len(p)) - 101}, "toolarge"},
			{delta.ApplyOptions{MaxPatchSize: 1}, "toolarge"},
		} {
			out, _, err := applyBytes(t, old, p, &tc.opts)
			wantClass(t, fmt.Sprintf("%s %+v", c.name, tc.opts), err, tc.want)
			checkNoOutputOnHeaderError(t, err, out)
		}
	}
}

// TestHostileNativeHeaderBytes flips every header byte of a real patch:
// magic bytes give ErrFormat, every other byte ErrCorrupt (CRC-32C catches
// every single-byte error), and nothing is written.
func TestHostileNativeHeaderBytes(t *testing.T) {
	old := hostileOlds()["old.bin"]
	p, _ := diffBytes(t, old, hostileNew(old), nil)
	for i := range 100 {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			q := bytes.Clone(p)
			q[i] ^= x
			out, _, err := applyBytes(t, old, q, nil)
			want := "corrupt"
			if i < 4 {
				want = "format"
			}
			wantClass(t, fmt.Sprintf("header byte %d ^ %#x", i, x), err, want)
			if len(out) != 0 {
				t.Errorf("header byte %d ^ %#x: %d bytes written", i, x, len(out))
			}
		}
	}
}

// TestHostileNativeBodyBytes flips every body byte of small real patches of
// each method. The body carries no checksum of its own: a flip fails with
// ErrCorrupt (the decoder noticed) or ErrHashMismatch (it decoded to
// something else), or, for the few bits a decoder never looks at (the range
// coder's first and final bytes, spare bits of zstd headers and tables),
// Apply succeeds and, the SHA-256 being checked, the output is exactly the
// new file. Never a panic, never another class, never wrong output.
func TestHostileNativeBodyBytes(t *testing.T) {
	old := hostileOlds()["old.bin"]
	newb := hostileNew(old)
	for _, m := range []delta.Method{delta.MethodBsdiffCM, delta.MethodZstdDict, delta.MethodZstd} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			p, _ := diffBytes(t, old, newb, &delta.DiffOptions{Methods: []delta.Method{m}})
			r := newRand(uint64(m))
			counts := map[string]int{}
			for i := 100; i < len(p); i++ {
				q := bytes.Clone(p)
				q[i] ^= byte(1 + r.IntN(255))
				out, _, err := applyBytes(t, old, q, nil)
				cl := className(err)
				counts[cl]++
				switch cl {
				case "corrupt", "hashmismatch":
				case "ok":
					if !bytes.Equal(out, newb) {
						t.Errorf("body byte %d flipped: Apply succeeded with wrong output", i-100)
					}
				default:
					t.Errorf("body byte %d flipped: %s: %v", i-100, cl, err)
				}
			}
			t.Logf("%d-byte body, one flip per byte: %v", len(p)-100, counts)
			if counts["ok"] > (len(p)-100)/10 {
				t.Errorf("%d of %d flips went unnoticed", counts["ok"], len(p)-100)
			}
		})
	}
}

// TestHostileBSDIFF40Options: the caps for BSDIFF40 patches.
func TestHostileBSDIFF40Options(t *testing.T) {
	old := fakeBinary(120, 20<<10)
	newb := hostileNew(old)
	p, _ := diffBytes(t, old, newb, &delta.DiffOptions{Format: delta.FormatBSDIFF40})
	n := int64(len(newb))
	for _, tc := range []struct {
		opts delta.ApplyOptions
		want string
	}{
		{delta.ApplyOptions{MaxNewSize: n}, "ok"},
		{delta.ApplyOptions{MaxNewSize: n - 1}, "toolarge"},
		{delta.ApplyOptions{MaxPatchSize: int64(len(p))}, "ok"},
		{delta.ApplyOptions{MaxPatchSize: int64(len(p)) - 1}, "toolarge"},
	} {
		out, _, err := applyBytes(t, old, p, &tc.opts)
		wantClass(t, fmt.Sprintf("%+v", tc.opts), err, tc.want)
		checkNoOutputOnHeaderError(t, err, out)
	}
}

// TestDamagedRealPatches cuts and flips real patches of two related 200 KB
// "binaries". Native: every cut and every flip fails cleanly (a flip may
// also hit a bit no decoder reads, then the output is still exactly new:
// see TestHostileNativeBodyBytes). BSDIFF40 carries no hash: a flip fails
// cleanly or yields some output; never a panic or an unclassified error.
func TestDamagedRealPatches(t *testing.T) {
	old := fakeBinary(200, 200<<10)
	newb := mutateBinary(201, old)
	type job struct {
		name         string
		opts         delta.DiffOptions
		cuts, flips  int
		native       bool
		allowedFlips string
	}
	jobs := []job{
		{"native-auto", delta.DiffOptions{}, 200, 300, true, "format|corrupt|hashmismatch"},
		{"native-zstd-dict", delta.DiffOptions{Methods: []delta.Method{delta.MethodZstdDict}}, 50, 150, true, "format|corrupt|hashmismatch"},
		{"native-zstd", delta.DiffOptions{Methods: []delta.Method{delta.MethodZstd}}, 50, 150, true, "format|corrupt|hashmismatch"},
		{"bsdiff40", delta.DiffOptions{Format: delta.FormatBSDIFF40}, 200, 300, false, "format|corrupt|toolarge"},
	}
	for _, j := range jobs {
		t.Run(j.name, func(t *testing.T) {
			t.Parallel()
			p, st := diffBytes(t, old, newb, &j.opts)
			if out, _, err := applyBytes(t, old, p, nil); err != nil || !bytes.Equal(out, newb) {
				t.Fatalf("undamaged patch: %v", err)
			}
			r := newRand(202)
			// Cuts: every length up to 40 (inside the headers), the rest
			// spread over the patch.
			var cuts []int
			for i := 0; i <= 40 && i < len(p); i++ {
				cuts = append(cuts, i)
			}
			for len(cuts) < j.cuts {
				cuts = append(cuts, 41+r.IntN(len(p)-41))
			}
			for _, c := range cuts {
				out, _, err := applyBytes(t, old, p[:c], nil)
				wantClass(t, fmt.Sprintf("cut to %d of %d bytes", c, len(p)), err, "corrupt")
				_ = out
			}
			counts := map[string]int{}
			for k := range j.flips {
				i := r.IntN(len(p))
				if k < 40 {
					i = r.IntN(min(len(p), 100))
				}
				q := bytes.Clone(p)
				q[i] ^= byte(1 + r.IntN(255))
				out, info, err := applyBytes(t, old, q, nil)
				cl := className(err)
				counts[cl]++
				if err == nil {
					if j.native && !bytes.Equal(out, newb) {
						t.Errorf("flip at %d: native Apply succeeded with wrong output", i)
					}
					if info.NewSum != sha256.Sum256(out) || info.NewSize != int64(len(out)) {
						t.Errorf("flip at %d: PatchInfo does not describe the output", i)
					}
					continue
				}
				wantClass(t, fmt.Sprintf("flip at %d of %d", i, len(p)), err, j.allowedFlips)
			}
			t.Logf("%v patch of %d bytes: %d cuts; %d flips: %v", st.Method, len(p), len(cuts), j.flips, counts)
		})
	}
}

// claimPatch is a 116-byte native patch over old (right sizes, hashes and
// checksums) that declares a new file of claim bytes: for bsdiff-cm a table
// of one segment of claim bytes and a few random stream bytes, for the zstd
// methods random bytes.
func claimPatch(m delta.Method, old []byte, claim int64) []byte {
	const body = 12 // + the 4-byte CRC-32C: 116 bytes in all
	var b []byte
	if m == delta.MethodBsdiffCM {
		b = slices.Concat(uv(1), uv(uint64(claim)))
		b = append(b, uv(uint64(body-len(b)-1))...)
	}
	b = append(b, randomBytes(uint64(claim)^uint64(m), body-len(b))...)
	h := headerFor(m, old, nil, body+4)
	h.NewSize = uint64(claim)
	p := slices.Concat(h.bytes(), b, make([]byte, 4))
	fixCRC(p)
	return p
}

// zstdClaimPatch is a plain-zstd native patch over old declaring a new file
// of claim bytes whose frame says the same as one segment (a decoder would
// take the whole file as its window: over 512 MiB it must refuse) and then
// holds 4 bytes.
func zstdClaimPatch(old []byte, claim int64) []byte {
	frame := slices.Concat([]byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0}, binary.LittleEndian.AppendUint64(nil, uint64(claim)),
		[]byte{4<<3 | 1, 0, 0}, []byte("abcd"))
	h := headerFor(delta.MethodZstd, old, nil, len(frame)+4)
	h.NewSize = uint64(claim)
	p := slices.Concat(h.bytes(), frame, make([]byte, 4))
	fixCRC(p)
	return p
}

// TestHostileClaimedSize: a tiny patch declaring a huge new file is refused
// before anything is allocated or created. Over the cap: ErrTooLarge. Under
// a raised cap but over the free space of the output's file system: ApplyFile
// refuses it with ErrNoSpace, leaving no file, temporary or not. Apply to a
// plain writer (no disk to check) fails on the body, allocating far less
// than the claim (it used to allocate the whole new file first: "fatal
// error: runtime: out of memory" for a 1 TiB claim).
func TestHostileClaimedSize(t *testing.T) {
	old := hostileOlds()["old.bin"]
	free, ok := delta.FreeSpace(t.TempDir())
	if !ok {
		t.Skip("this system cannot tell a directory's free space")
	}
	const tib = 1 << 40
	overFree := int64(min(2*free+1<<30, 1<<61))
	tibFile := "nospace"
	if free >= tib {
		tibFile = "corrupt" // it fits: the body is decoded and found corrupt
	}
	cm, zd, zs := delta.MethodBsdiffCM, delta.MethodZstdDict, delta.MethodZstd
	for _, tc := range []struct {
		name                string
		patch               []byte
		cap                 int64
		wantFile, wantApply string
	}{
		{"bsdiff-cm 1 TiB, default cap", claimPatch(cm, old, tib), 0, "toolarge", "toolarge"},
		{"bsdiff-cm 1 TiB, cap 2 TiB", claimPatch(cm, old, tib), 2 * tib, tibFile, "corrupt"},
		{"bsdiff-cm over free space", claimPatch(cm, old, overFree), overFree, "nospace", "corrupt"},
		{"zstd-dict over free space", claimPatch(zd, old, overFree), overFree, "nospace", "corrupt"},
		{"zstd over free space", claimPatch(zs, old, overFree), overFree, "nospace", "corrupt"},
		{"BSDIFF40 over free space", bsPatch(bz(ctrlBytes(triple{0, overFree, 0})), bz(nil), bz(nil), overFree), overFree, "nospace", "corrupt"},
		{"zstd frame of 1 GiB as one segment", zstdClaimPatch(old, 1<<30), 0, "corrupt", "corrupt"},
		{"BSDIFF40 1 TiB, default cap", bsPatch(bz(ctrlBytes(triple{0, tib, 0})), bz(nil), bz(nil), tib), 0, "toolarge", "toolarge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := &delta.ApplyOptions{MaxNewSize: tc.cap}
			dir := t.TempDir()
			oldPath, patchPath, outPath := filepath.Join(dir, "old"), filepath.Join(dir, "patch"), filepath.Join(dir, "out")
			writeFile(t, oldPath, old, 0o644)
			writeFile(t, patchPath, tc.patch, 0o644)
			_, ferr := delta.ApplyFile(context.Background(), oldPath, patchPath, outPath, opts)
			wantClass(t, "ApplyFile", ferr, tc.wantFile)
			if tc.wantFile == "nospace" && !errors.Is(ferr, syscall.ENOSPC) {
				t.Errorf("ApplyFile: %v does not wrap ENOSPC", ferr)
			}
			if names := dirEntries(t, dir); !slices.Equal(names, []string{"old", "patch"}) {
				t.Errorf("failed ApplyFile (%v) left %v", ferr, names)
			}
			var out []byte
			var err error
			alloc := delta.AllocatedBy(func() { out, _, err = applyBytes(t, old, tc.patch, opts) })
			wantClass(t, "Apply", err, tc.wantApply)
			if alloc > 64<<20 || len(out) > 1<<20 {
				t.Errorf("Apply allocated %d bytes and wrote %d for a %d-byte patch", alloc, len(out), len(tc.patch))
			}
			t.Logf("%d-byte patch: ApplyFile: %v; Apply: %v, %d bytes allocated", len(tc.patch), ferr, err, alloc)
		})
	}
}
