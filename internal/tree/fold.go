package tree

//go:generate python3 gen_fold_table.py
//go:generate gofmt -w fold_table.go

import (
	"sort"
	"unicode"
	"unicode/utf8"
)

type cccRange struct {
	lo, hi rune
	class  uint8
}

// FoldKey maps a path to the key under which two names collide on a
// case-insensitive and/or normalization-insensitive file system (NTFS and
// FAT on Windows, APFS and HFS+ on macOS): the canonical decomposition (NFD,
// from a table generated from the Unicode data, Hangul algorithmically, with
// combining marks put in canonical order), then simple case folding of
// every rune to the smallest rune of its case-folding orbit
// (unicode.SimpleFold), so "A"/"a", "K"/"k"/KELVIN SIGN, "ſ"/"s"/"S" and
// "ß"/"ẞ" collide (but "ß" and "ss" do not), and "é" (U+00E9) collides with
// "e"+U+0301.
//
// The key is at least as coarse as what those file systems compare (full
// case folding such as "ß" = "ss" is not applied; no file system the updater
// targets does that). Cost: one pass over the path, a map lookup per
// non-ASCII rune.
func FoldKey(p string) string {
	ascii := true
	for i := 0; i < len(p); i++ {
		if p[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		b := []byte(p)
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - 'a' + 'A'
			}
		}
		return string(b)
	}
	rs := make([]rune, 0, len(p))
	for _, r := range p {
		rs = appendNFD(rs, r)
	}
	canonicalOrder(rs)
	for i, r := range rs {
		rs[i] = foldRune(r)
	}
	return string(rs)
}

// appendNFD appends the canonical decomposition of r.
func appendNFD(rs []rune, r rune) []rune {
	const (
		sBase, lBase, vBase, tBase = 0xAC00, 0x1100, 0x1161, 0x11A7
		vCount, tCount             = 21, 28
		nCount, sCount             = vCount * tCount, 11172
	)
	if r >= sBase && r < sBase+sCount {
		s := r - sBase
		rs = append(rs, lBase+s/nCount, vBase+(s%nCount)/tCount)
		if t := s % tCount; t != 0 {
			rs = append(rs, tBase+t)
		}
		return rs
	}
	if d, ok := nfdTable[r]; ok {
		for _, x := range d {
			rs = append(rs, x)
		}
		return rs
	}
	return append(rs, r)
}

// combiningClass returns the canonical combining class of r (0 for starters).
func combiningClass(r rune) uint8 {
	i := sort.Search(len(cccRanges), func(i int) bool { return cccRanges[i].hi >= r })
	if i < len(cccRanges) && cccRanges[i].lo <= r {
		return cccRanges[i].class
	}
	return 0
}

// canonicalOrder sorts every run of combining marks by combining class,
// stably (the canonical ordering algorithm).
func canonicalOrder(rs []rune) {
	for i := 0; i < len(rs); {
		if combiningClass(rs[i]) == 0 {
			i++
			continue
		}
		j := i
		for j < len(rs) && combiningClass(rs[j]) != 0 {
			j++
		}
		run := rs[i:j]
		sort.SliceStable(run, func(a, b int) bool { return combiningClass(run[a]) < combiningClass(run[b]) })
		i = j
	}
}

// foldRune returns the smallest rune in r's simple case-folding orbit.
func foldRune(r rune) rune {
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < m {
			m = f
		}
	}
	return m
}
