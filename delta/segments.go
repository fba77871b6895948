package delta

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
)

// The body of a bsdiff-cm patch is split into segments, each a cm1 stream
// with its own model that rebuilds one consecutive range of the new file, so
// that both the encoder and the decoder use every core:
//
//	uvarint  number of segments S (1..maxSegments; 0 for an empty new file)
//	S times: uvarint new bytes the segment rebuilds (> 0),
//	         uvarint length of its stream
//	the S streams, concatenated
const maxSegments = 64

// segmentCount picks how many segments a new file of n bytes gets: two halves
// from 1 MiB (a model needs about a megabyte to learn), four from 64 MiB.
func segmentCount(n int) int {
	switch {
	case n >= 64<<20:
		return 4
	case n >= 1<<20:
		return 2
	}
	return 1
}

// encodeSegments codes ops as segments, in parallel.
func encodeSegments(old, newb []byte, ops []op, workers int) []byte {
	want := segmentCount(len(newb))
	type seg struct {
		start, end int64 // new-file range
		ops        []op
		out        []byte
	}
	var segs []*seg
	var np int64
	first := 0
	for i, o := range ops {
		np += o.addLen + o.extraLen
		k := len(segs) + 1
		if k < want && np >= int64(len(newb))*int64(k)/int64(want) || i == len(ops)-1 {
			start := int64(0)
			if len(segs) > 0 {
				start = segs[len(segs)-1].end
			}
			if np > start {
				segs = append(segs, &seg{start: start, end: np, ops: ops[first : i+1]})
			}
			first = i + 1
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, workers))
	for _, s := range segs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s.out = encodeScript(old, newb[s.start:s.end], s.ops)
		})
	}
	wg.Wait()
	out := binary.AppendUvarint(nil, uint64(len(segs)))
	for _, s := range segs {
		out = binary.AppendUvarint(out, uint64(s.end-s.start))
		out = binary.AppendUvarint(out, uint64(len(s.out)))
	}
	for _, s := range segs {
		out = append(out, s.out...)
	}
	return out
}

// decodeSegments rebuilds the new file from a segmented body, decoding the
// segments in parallel into one buffer of newSize bytes, which it returns.
func decodeSegments(old, body []byte, newSize int64) ([]byte, error) {
	p := body
	uv := func(what string) (uint64, error) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, fmt.Errorf("%w: bad %s in segment table", ErrCorrupt, what)
		}
		p = p[n:]
		return v, nil
	}
	ns, err := uv("segment count")
	if err != nil {
		return nil, err
	}
	// encodeSegments writes no segment for an empty new file.
	if ns > maxSegments || (ns == 0) != (newSize == 0) {
		return nil, fmt.Errorf("%w: %d segments for %d bytes (want 1..%d, 0 for an empty file)", ErrCorrupt, ns, newSize, maxSegments)
	}
	type seg struct {
		start, size int64
		streamLen   uint64
		stream      []byte
		err         error
	}
	segs := make([]seg, ns)
	var total, streams uint64
	for i := range segs {
		size, err := uv("segment size")
		if err != nil {
			return nil, err
		}
		sl, err := uv("stream length")
		if err != nil {
			return nil, err
		}
		if size == 0 || size > uint64(newSize)-total {
			return nil, fmt.Errorf("%w: segment %d of %d bytes overruns the %d-byte output", ErrCorrupt, i, size, newSize)
		}
		if sl > uint64(len(body)) || streams+sl > uint64(len(body)) {
			return nil, fmt.Errorf("%w: segment %d stream of %d bytes exceeds the body", ErrCorrupt, i, sl)
		}
		segs[i] = seg{start: int64(total), size: int64(size), streamLen: sl}
		total += size
		streams += sl
	}
	if total != uint64(newSize) {
		return nil, fmt.Errorf("%w: segments rebuild %d bytes, header says %d", ErrCorrupt, total, newSize)
	}
	if streams != uint64(len(p)) {
		return nil, fmt.Errorf("%w: segment streams take %d bytes, body holds %d", ErrCorrupt, streams, len(p))
	}
	for i := range segs {
		segs[i].stream = p[:segs[i].streamLen]
		p = p[segs[i].streamLen:]
	}
	out := make([]byte, newSize)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range segs {
		s := &segs[i]
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sw := &sliceWriter{b: out[s.start : s.start : s.start+s.size]}
			s.err = decodeScript(old, s.stream, s.size, sw)
			if s.err != nil {
				s.err = fmt.Errorf("%w (in segment %d)", s.err, i)
			}
		})
	}
	wg.Wait()
	for _, s := range segs {
		if s.err != nil {
			return nil, s.err
		}
	}
	return out, nil
}

// sliceWriter appends into a slice of fixed capacity.
type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) {
	if len(p) > cap(s.b)-len(s.b) {
		return 0, fmt.Errorf("%w: output overruns its segment", ErrCorrupt)
	}
	s.b = append(s.b, p...)
	return len(p), nil
}
