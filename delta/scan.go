package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/deltaup/deltaup/delta/internal/sais"
)

// op is one step of a bsdiff-style edit script. Starting at the current
// position of the new file, it adds addLen bytes of difference to
// old[oldPos:oldPos+addLen], then appends extraLen literal bytes.
type op struct {
	oldPos   int64
	addLen   int64
	extraLen int64
}

// matcher finds long matches of new-file substrings in the old file with a
// suffix array of old and a two-byte bucket index that narrows each binary
// search to the suffixes sharing the first two bytes.
type matcher struct {
	old    []byte
	sa     []int32
	bucket []int32 // bucket[b] = first SA index whose suffix starts with the 2-byte prefix b (65537 entries)
}

func newMatcher(old []byte) (*matcher, error) {
	sa, err := sais.Build(old)
	if err != nil {
		return nil, err
	}
	m := &matcher{old: old, sa: sa}
	if len(old) >= 2 {
		// Count suffixes per 2-byte prefix. The single-byte suffix (last
		// byte) sorts first among those starting with its byte; give it
		// prefix b<<8 (second byte 0), which keeps the order consistent
		// because a one-byte suffix is smaller than any longer one with the
		// same first byte.
		m.bucket = make([]int32, 65537)
		cnt := m.bucket[1:]
		for i := 0; i+1 < len(old); i++ {
			cnt[int(old[i])<<8|int(old[i+1])]++
		}
		cnt[int(old[len(old)-1])<<8]++
		var sum int32
		for i := range 65536 {
			c := cnt[i]
			cnt[i] = sum
			sum += c
		}
		// Shift: bucket[b] = start of prefix b, bucket[65536] = len(sa).
		copy(m.bucket, m.bucket[1:65537])
		m.bucket[65536] = int32(len(old))
	}
	return m, nil
}

// matchLen returns the length of the common prefix of a and b.
func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:])
		if x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

// search returns the longest match of target in old and its position.
func (m *matcher) search(target []byte) (length int, pos int) {
	st, en := 0, len(m.sa)-1
	if en < 0 {
		return 0, 0
	}
	if m.bucket != nil && len(target) >= 2 {
		b := int(target[0])<<8 | int(target[1])
		lo, hi := int(m.bucket[b]), int(m.bucket[b+1])
		if lo < hi {
			st, en = lo, hi-1
		} else {
			// No suffix starts with these two bytes: the best match has
			// length at most one; the neighbours in order hold it.
			st = max(0, min(lo-1, en))
			en = min(lo, len(m.sa)-1)
			st = min(st, en)
		}
	}
	for en-st >= 2 {
		x := st + (en-st)/2
		// Full lexicographic order: a suffix that is a proper prefix of
		// target sorts before it. (Classic bsdiff compares only the common
		// length, which sends every search on a run of equal bytes to the
		// shortest suffix: a match of a byte or two, found at every position.)
		if bytes.Compare(m.old[m.sa[x]:], target) < 0 {
			st = x
		} else {
			en = x
		}
	}
	x := matchLen(m.old[m.sa[st]:], target)
	y := matchLen(m.old[m.sa[en]:], target)
	if x > y {
		return x, int(m.sa[st])
	}
	return y, int(m.sa[en])
}

// maxMatch caps the bytes one search compares: on long runs of repeated
// bytes (zeros, padding) every probe of the binary search would otherwise
// compare megabytes, which makes the scan quadratic. A longer match is found
// in maxMatch-sized steps, each continuing at the same offset.
const maxMatch = 1 << 16

// scan runs the bsdiff scan over new[start:end] and returns the ops that
// rebuild exactly that range. It is Colin Percival's bsdiff 4.3 loop with the
// match search bounded to the range, so ranges can be scanned in parallel.
func (m *matcher) scan(ctx context.Context, newb []byte, start, end int) ([]op, error) {
	old := m.old
	oldsize := len(old)
	var ops []op
	scan, length, pos := start, 0, 0
	// A range starts as if the previous match ended at the same offset in
	// both files (for the first range, bsdiff's own start).
	lastscan, lastpos := start, min(start, oldsize)
	lastoffset := lastpos - lastscan
	iter := 0
	for scan < end {
		oldscore := 0
		scan += length
		for scsc := scan; scan < end; scan++ {
			if iter++; iter&0xffff == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			length, pos = m.search(newb[scan:min(end, scan+maxMatch)])
			for ; scsc < scan+length; scsc++ {
				if scsc+lastoffset >= 0 && scsc+lastoffset < oldsize && old[scsc+lastoffset] == newb[scsc] {
					oldscore++
				}
			}
			if (length == oldscore && length != 0) || length > oldscore+8 {
				break
			}
			if scan+lastoffset >= 0 && scan+lastoffset < oldsize && old[scan+lastoffset] == newb[scan] {
				oldscore--
			}
		}
		if length == oldscore && scan != end {
			continue
		}
		// Extend the previous match forward.
		s, sf, lenf := 0, 0, 0
		for i := 0; lastscan+i < scan && lastpos+i < oldsize; {
			if old[lastpos+i] == newb[lastscan+i] {
				s++
			}
			i++
			if s*2-i > sf*2-lenf {
				sf, lenf = s, i
			}
		}
		// Extend the new match backward.
		lenb := 0
		if scan < end {
			s, sb := 0, 0
			for i := 1; scan >= lastscan+i && pos >= i; i++ {
				if old[pos-i] == newb[scan-i] {
					s++
				}
				if s*2-i > sb*2-lenb {
					sb, lenb = s, i
				}
			}
		}
		// Split an overlap where it scores best.
		if lastscan+lenf > scan-lenb {
			overlap := (lastscan + lenf) - (scan - lenb)
			s, ss, lens := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if newb[lastscan+lenf-overlap+i] == old[lastpos+lenf-overlap+i] {
					s++
				}
				if newb[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > ss {
					ss, lens = s, i+1
				}
			}
			lenf += lens - overlap
			lenb -= lens
		}
		ops = append(ops, op{
			oldPos:   int64(lastpos),
			addLen:   int64(lenf),
			extraLen: int64((scan - lenb) - (lastscan + lenf)),
		})
		lastscan = scan - lenb
		lastpos = pos - lenb
		lastoffset = pos - scan
	}
	return ops, nil
}

// diffOps computes the edit script turning old into new, scanning workers
// ranges of new in parallel.
func diffOps(ctx context.Context, m *matcher, newb []byte, workers int, release func(start, end int)) ([]op, error) {
	const minChunk = 1 << 20
	if workers < 1 {
		workers = 1
	}
	if n := len(newb) / minChunk; n < workers {
		workers = max(1, n)
	}
	// More chunks than workers balance uneven regions.
	chunks := workers
	if workers > 1 {
		chunks = workers * 4
	}
	parts := make([][]op, chunks)
	errs := make([]error, chunks)
	var wg sync.WaitGroup
	next := make(chan int, chunks)
	for i := range chunks {
		next <- i
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for i := range next {
				s := len(newb) * i / chunks
				e := len(newb) * (i + 1) / chunks
				parts[i], errs[i] = m.scan(ctx, newb, s, e)
				if release != nil {
					release(s, e) // a range's scan reads only inside the range
				}
			}
		})
	}
	wg.Wait()
	var total int
	for i, p := range parts {
		if errs[i] != nil {
			return nil, errs[i]
		}
		total += len(p)
	}
	ops := make([]op, 0, total)
	for _, p := range parts {
		ops = append(ops, p...)
	}
	return ops, nil
}
