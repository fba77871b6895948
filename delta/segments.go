package delta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
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

// encodeSegments codes ops as segments of cm1, in parallel.
func encodeSegments(old, newb []byte, ops []op, workers int) []byte {
	return encodeSegmentsCoder(old, newb, ops, workers, false)
}

// encodeSegmentsCoder codes ops as segments of cm1, or of cm2 when cm2 is
// set (the segment table is the same).
func encodeSegmentsCoder(old, newb []byte, ops []op, workers int, cm2 bool) []byte {
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
			s.out = encodeScriptCoder(old, newb[s.start:s.end], s.ops, cm2)
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

// segment is one cm1 stream of a bsdiff-cm body: it rebuilds the new-file
// bytes [start, start+size).
type segment struct {
	start, size int64
	stream      []byte
	cm2         bool // a cm2 stream (methods 6 and 7)
}

// parseSegments checks the segment table of a bsdiff-cm body against the
// body and newSize and returns the segments. It allocates nothing in
// proportion to newSize.
func parseSegments(body []byte, newSize int64) ([]segment, error) {
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
	segs := make([]segment, ns)
	lens := make([]uint64, ns)
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
		segs[i] = segment{start: int64(total), size: int64(size)}
		lens[i] = sl
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
		segs[i].stream = p[:lens[i]]
		p = p[lens[i]:]
	}
	return segs, nil
}

// decodeSegment decodes segment i to w, which receives exactly s.size bytes
// on success. A fault reading old (a mapped file truncated meanwhile) is
// returned as ErrOldMismatch.
func decodeSegment(old []byte, s segment, i int, w io.Writer) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true), old)
	if err := decodeScriptCoder(old, s.stream, s.size, w, s.cm2); err != nil {
		return fmt.Errorf("%w (in segment %d)", err, i)
	}
	return nil
}

// errStopped ends a segment decoder whose output is no longer wanted
// because another part of the apply failed.
var errStopped = errors.New("delta: stopped")

const (
	// chunkSize is the unit in which segment decoders hand output over.
	chunkSize = 64 << 10
	// lookahead is how far (in chunks) a segment decoder may run ahead of
	// the writer while an earlier segment is still being written: 4 MiB.
	lookahead = 64
)

// decodeSegmentsStream rebuilds the new file from segs and writes it to w in
// order, after gate (the old file's check) has returned nil; nothing reaches
// w if gate fails. Up to GOMAXPROCS segments are decoding or waiting to be
// written at once, each at most lookahead chunks ahead of the writer, so
// memory is bounded by the number of cores, not by the new file's size: per
// such segment, its model (about 1.5 MiB), a 64 KiB buffer and 4 MiB of
// lookahead.
func decodeSegmentsStream(ctx context.Context, old []byte, segs []segment, w io.Writer, gate func() error) error {
	workers := min(runtime.GOMAXPROCS(0), len(segs))
	if workers <= 1 {
		if err := gate(); err != nil {
			return err
		}
		for i, s := range segs {
			if err := decodeSegment(old, s, i, &ctxWriter{ctx: ctx, w: w}); err != nil {
				return err
			}
		}
		return nil
	}
	type pipe struct {
		ch  chan []byte
		err error // set before ch is closed
	}
	pipes := make([]pipe, len(segs))
	for i := range pipes {
		pipes[i].ch = make(chan []byte, lookahead)
	}
	// Chunks come back to free once written: at most workers*(lookahead+1)+1
	// are ever allocated.
	free := make(chan *[chunkSize]byte, workers*(lookahead+1)+1)
	done := make(chan struct{})
	finished := make(chan struct{})
	// A slot of sem is taken by the launcher for segment i, in order, and
	// given back by the writer once segment i is written: the segment the
	// writer waits for always holds one.
	sem := make(chan struct{}, workers)
	go func() {
		defer close(finished)
		var wg sync.WaitGroup
		defer wg.Wait()
		for i, s := range segs {
			select {
			case sem <- struct{}{}:
			case <-done:
				return
			}
			wg.Go(func() {
				defer close(pipes[i].ch)
				pipes[i].err = decodeSegment(old, s, i, &chunkWriter{ch: pipes[i].ch, done: done, free: free})
			})
		}
	}()
	defer func() {
		close(done)
		<-finished
	}()
	if err := gate(); err != nil {
		return err
	}
	for i := range pipes {
		for b := range pipes[i].ch {
			_, err := w.Write(b)
			select {
			case free <- (*[chunkSize]byte)(b[:chunkSize]):
			default:
			}
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if pipes[i].err != nil {
			return pipes[i].err
		}
		<-sem
	}
	return nil
}

// chunkWriter hands a segment decoder's output to the writer in chunks.
type chunkWriter struct {
	ch   chan<- []byte
	done <-chan struct{}
	free chan *[chunkSize]byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		var b *[chunkSize]byte
		select {
		case b = <-c.free:
		default:
			b = new([chunkSize]byte)
		}
		k := copy(b[:], p)
		select {
		case c.ch <- b[:k]:
		case <-c.done:
			return n, errStopped
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// ctxWriter stops a decoder when ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// decodeSegmentsAt rebuilds the new file from segs into w, an empty file,
// writing each segment at its offset: all segments decode in parallel (up
// to GOMAXPROCS at once) with memory bounded as in decodeSegmentsStream,
// less the lookahead. The caller hashes the file afterwards.
func decodeSegmentsAt(ctx context.Context, old []byte, segs []segment, w io.WriterAt) error {
	var failed atomic.Bool
	errs := make([]error, len(segs))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, s := range segs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sw := &sectionWriter{ctx: ctx, w: w, off: s.start, end: s.start + s.size, failed: &failed}
			if errs[i] = decodeSegment(old, s, i, sw); errs[i] != nil {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, errStopped) {
			return err
		}
	}
	return nil
}

// sectionWriter writes one segment's range of a file, and stops when
// another segment failed or ctx is done.
type sectionWriter struct {
	ctx      context.Context
	w        io.WriterAt
	off, end int64
	failed   *atomic.Bool
}

func (s *sectionWriter) Write(p []byte) (int, error) {
	if s.failed.Load() {
		return 0, errStopped
	}
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	if int64(len(p)) > s.end-s.off {
		return 0, fmt.Errorf("%w: output overruns its segment", ErrCorrupt)
	}
	n, err := s.w.WriteAt(p, s.off)
	s.off += int64(n)
	if err != nil {
		return n, &writeError{err}
	}
	return n, nil
}
