package delta

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/deltaup/deltaup/internal/tree"
)

// BundleOptions tune DiffBundle. The zero value is valid.
type BundleOptions struct {
	// Workers is the number of files diffed at once; 0 means
	// runtime.GOMAXPROCS(0). A file that is at least 1 MiB and at least
	// 1/Workers of all the work is diffed alone with all the workers
	// (DiffOptions.Workers); the others get one each.
	Workers int
	// Candidates is the number of OLD files tried as the base of a NEW file
	// that has no OLD file at its path and no OLD file with its content;
	// 0 means 2. They compete with a patch against an empty file; the
	// smallest entry wins.
	Candidates int
	// Methods restricts the native methods of the per-file patches (see
	// DiffOptions.Methods); nil means all.
	Methods []Method
	// Modes says which permission bits the bundle records for both trees
	// (tree.ScanOptions.Modes); tree.ModesPortable for Windows clients.
	Modes tree.Modes
	// NoSolid leaves out the solid stream (tree-wide matching, a version 2
	// bundle): every file that needs a payload gets its own, and the
	// bundle is version 1, readable by older clients. With Methods nil it
	// also keeps to methods 1-5 (methods 6 to 9 came after solid bundles:
	// those clients refuse them).
	NoSolid bool
}

// BundleStats reports what DiffBundle did.
type BundleStats struct {
	BundleCounts
	OldSize, NewSize     int64    // total size of the OLD and NEW files
	PayloadSize          int64    // sum of the per-file patches (payloads) and the solid stream
	SolidSize            int64    // the solid streams' payloads (0: none, a version 1 bundle)
	SolidMethod          Method   // and the first one's method
	SolidStreams         int      // 0, 1 (version 2) or 2 (version 3: the second against the first)
	BundleSize           int64    // bytes written
	OldDigest, NewDigest [32]byte // tree.Digest of the two trees
	Entries              []BundleEntry
	RemovedPaths         []string // the removal list
}

// DiffBundleFile runs DiffBundle and writes the bundle to bundlePath
// atomically (see WriteFileAtomic).
func DiffBundleFile(ctx context.Context, oldDir, newDir, bundlePath string, opts *BundleOptions) (BundleStats, error) {
	var st BundleStats
	err := WriteFileAtomic(bundlePath, 0o644, func(w io.Writer) error {
		var err error
		st, err = DiffBundle(ctx, oldDir, newDir, w, opts)
		return err
	})
	return st, err
}

// DiffBundle writes to w a bundle that turns the tree at oldDir into the
// tree at newDir (format in docs/FORMAT.md). Each NEW file is, in this order
// of preference: unchanged (same path, content and mode), copied from the
// OLD file with its content (a rename or move costs no payload), new (empty
// file), patched from the OLD file at its path, or else the smallest of new
// (a native patch against an empty file) and patched from each of the
// Candidates OLD files with the most similar name and size. Files are
// diffed in parallel; the bundle is written in NEW path order as the
// patches complete.
//
// Unless NoSolid is set, it also diffs the stream of all the files that need
// a payload, in path order, against the OLD tree's window (tree-wide
// matching, see bundle_solid.go) and writes a version 2 bundle when that is
// smaller. That costs about one more Diff of the stream against the window
// (about 1 s per 10 MB of window on one core) and Diff's memory for it:
// about 5x the window (at most 128 MiB) plus the stream (at most 128 MiB).
//
// Memory: per worker, the files being diffed and Diff's working set; plus
// every payload until all are done (the form is chosen before writing). The
// solid stream is diffed after the per-file jobs, alone.
func DiffBundle(ctx context.Context, oldDir, newDir string, w io.Writer, opts *BundleOptions) (st BundleStats, err error) {
	var o BundleOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers < 0 || o.Candidates < 0 {
		return st, fmt.Errorf("delta: negative Workers or Candidates")
	}
	if err := (&DiffOptions{Methods: o.Methods}).validate(); err != nil {
		return st, err
	}
	if o.NoSolid && o.Methods == nil {
		o.Methods = methodsBeforeCM2
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Candidates == 0 {
		o.Candidates = 2
	}
	oldRoot, err := treeRoot(oldDir)
	if err != nil {
		return st, err
	}
	newRoot, err := treeRoot(newDir)
	if err != nil {
		return st, err
	}
	oldEs, err := scanTree(ctx, oldRoot, "old", nil, o.Modes, nil)
	if err != nil {
		return st, err
	}
	newEs, err := scanTree(ctx, newRoot, "new", nil, o.Modes, nil)
	if err != nil {
		return st, err
	}
	if uint64(len(newEs)) > math.MaxUint32 {
		return st, fmt.Errorf("%w: %d entries", ErrTooLarge, len(newEs))
	}
	for _, e := range newEs {
		if e.Type == tree.Symlink && (len(e.Target) > tree.MaxPathLen || !validText(e.Target)) {
			return st, fmt.Errorf("delta: new tree: symlink %s: target %q is longer than %d bytes or not UTF-8 text", e.Path, e.Target, tree.MaxPathLen)
		}
	}
	oldBy := make(map[string]tree.Entry, len(oldEs))
	for _, e := range oldEs {
		oldBy[e.Path] = e
		st.OldSize += e.Size
	}
	for _, e := range newEs {
		st.NewSize += e.Size
	}
	plan, removed := planBundle(oldEs, newEs, o.Candidates)
	st.OldDigest, st.NewDigest = tree.Digest(oldEs), tree.Digest(newEs)

	// Diff jobs, biggest first.
	type job struct {
		pe     *planned
		rank   int
		src    string
		weight int64
	}
	var jobs []job
	var total int64
	for _, pe := range plan {
		pe.done = make(chan struct{})
		if len(pe.cands) == 0 {
			close(pe.done)
			continue
		}
		pe.left = len(pe.cands)
		for r, src := range pe.cands {
			j := job{pe: pe, rank: r, src: src, weight: pe.Size + oldBy[src].Size}
			jobs = append(jobs, j)
			total += j.weight
		}
	}
	slices.SortStableFunc(jobs, func(a, b job) int { return cmp.Compare(b.weight, a.weight) })
	var big, small []job
	for _, j := range jobs {
		if o.Workers > 1 && j.weight >= 1<<20 && j.weight*int64(o.Workers) >= total {
			big = append(big, j)
		} else {
			small = append(small, j)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	// The solid stream is diffed after the per-file jobs; both are kept
	// until the end, where the smaller form wins.
	var solid *solidStreams
	solidDone := make(chan struct{})
	if o.NoSolid {
		close(solidDone)
	}
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err; cancel() }) }
	defer func() {
		cancel()
		wg.Wait()
	}()
	run := func(j job, workers int) error {
		pe := j.pe
		newb, err := readFileCapped(filepath.Join(newRoot, filepath.FromSlash(pe.Path)), MaxFileSize)
		if err != nil {
			return err
		}
		if sha256.Sum256(newb) != pe.SHA256 {
			return fmt.Errorf("delta: new file %s changed while the bundle was made", pe.Path)
		}
		var old []byte
		if j.src != "" {
			if old, err = readFileCapped(filepath.Join(oldRoot, filepath.FromSlash(j.src)), MaxFileSize); err != nil {
				return err
			}
			if sha256.Sum256(old) != oldBy[j.src].SHA256 {
				return fmt.Errorf("delta: old file %s changed while the bundle was made", j.src)
			}
		}
		var buf bytes.Buffer
		ds, err := Diff(ctx, old, newb, &buf, &DiffOptions{Workers: workers, Methods: o.Methods})
		if err != nil {
			return fmt.Errorf("%s: %w", pe.Path, err)
		}
		payload, err := compactPayload(buf.Bytes())
		if err != nil {
			return fmt.Errorf("%s: %w", pe.Path, err)
		}
		// Keep the smallest entry: payload plus the source path it names.
		cost := len(payload) + len(j.src)
		pe.mu.Lock()
		defer pe.mu.Unlock()
		if pe.payload == nil || cost < pe.cost || (cost == pe.cost && j.rank < pe.rank) {
			pe.payload, pe.cost, pe.rank, pe.Source, pe.Method = payload, cost, j.rank, j.src, ds.Method
		}
		if pe.left--; pe.left == 0 {
			close(pe.done)
		}
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !o.NoSolid {
			defer close(solidDone)
		}
		for _, j := range big {
			if ctx.Err() != nil {
				return
			}
			if err := run(j, o.Workers); err != nil {
				fail(err)
				return
			}
		}
		ch := make(chan job)
		var pool sync.WaitGroup
		for range min(o.Workers, len(small)) {
			pool.Add(1)
			go func() {
				defer pool.Done()
				for j := range ch {
					if ctx.Err() != nil {
						continue
					}
					if err := run(j, 1); err != nil {
						fail(err)
					}
				}
			}()
		}
	send:
		for _, j := range small {
			select {
			case ch <- j:
			case <-ctx.Done():
				break send
			}
		}
		close(ch)
		pool.Wait()
		// The solid stream last, with every worker: its Diff (5x the
		// window) never runs beside a big file's.
		if !o.NoSolid && ctx.Err() == nil {
			var err error
			if solid, err = solidPayload(ctx, oldRoot, newRoot, oldEs, plan, &o); err != nil {
				fail(err)
			}
		}
	}()

	// Wait for every payload and the solid stream, then write the bundle
	// in path order, in the smaller of the two forms.
	for _, pe := range append(plan, &planned{done: solidDone}) {
		select {
		case <-pe.done:
		case <-ctx.Done():
			if firstErr != nil {
				return st, firstErr
			}
			return st, ctx.Err()
		}
	}
	if firstErr != nil {
		return st, firstErr
	}
	hdr := bundleHeader{entries: uint32(len(plan)), newSize: st.NewSize, oldDigest: st.OldDigest, newDigest: st.NewDigest}
	if solid != nil {
		if sc, pc := solidCosts(plan, solid); sc < pc {
			hdr.version = bundleVersionSolid
			if solid.second != nil {
				hdr.version = bundleVersionSolid2
			}
		} else {
			solid = nil
		}
	}
	cw := &bundleWriter{w: w, h: sha256.New()}
	if err := cw.write(hdr.bytes()); err != nil {
		return st, err
	}
	var meta []byte
	prev := ""
	for _, pe := range plan {
		switch {
		case len(pe.cands) > 0 && solid != nil && solid.second[pe.Path]:
			pe.Kind, pe.Source, pe.payload, pe.Method = EntrySolid2, "", nil, solid.method[1]
		case len(pe.cands) > 0 && solid != nil:
			pe.Kind, pe.Source, pe.payload, pe.Method = EntrySolid, "", nil, solid.method[0]
		case len(pe.cands) > 0 && pe.Source == "":
			pe.Kind = EntryNew
		case len(pe.cands) > 0:
			pe.Kind = EntryPatch
		}
		pe.PayloadSize = int64(len(pe.payload))
		meta = appendEntry(meta[:0], &pe.BundleEntry, prev)
		if err := cw.write(meta); err != nil {
			return st, err
		}
		if err := cw.write(pe.payload); err != nil {
			return st, err
		}
		st.PayloadSize += pe.PayloadSize
		pe.payload = nil
		st.add(pe.Kind)
		st.Entries = append(st.Entries, pe.BundleEntry)
		prev = pe.Path
	}
	meta = binary.AppendUvarint(meta[:0], uint64(len(removed)))
	prev = ""
	for _, p := range removed {
		meta = appendFrontCoded(meta, prev, p)
		prev = p
	}
	if err := cw.write(meta); err != nil {
		return st, err
	}
	if solid != nil {
		st.SolidMethod = solid.method[0]
		for _, p := range solid.payload {
			if p == nil {
				continue
			}
			if err := cw.write(binary.AppendUvarint(meta[:0], uint64(len(p)))); err != nil {
				return st, err
			}
			if err := cw.write(p); err != nil {
				return st, err
			}
			st.SolidSize += int64(len(p))
			st.SolidStreams++
		}
		st.PayloadSize += st.SolidSize
	}
	if _, err := w.Write(cw.h.Sum(nil)); err != nil {
		return st, err
	}
	st.RemovedPaths = removed
	st.Removed = len(removed)
	st.BundleSize = cw.n + bundleTrailerSize
	return st, nil
}

type bundleWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (b *bundleWriter) write(p []byte) error {
	b.h.Write(p)
	n, err := b.w.Write(p)
	b.n += int64(n)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// planned is an entry of a bundle being made.
type planned struct {
	BundleEntry
	cands []string // OLD files to diff against ("" = empty file); the smallest entry wins

	mu      sync.Mutex
	left    int // candidates not diffed yet
	payload []byte
	cost    int // of the payload kept: its size plus its source path's
	rank    int
	done    chan struct{}
}

// planBundle decides the kind of every NEW entry and lists the OLD paths
// the NEW tree drops.
func planBundle(oldEs, newEs []tree.Entry, k int) ([]*planned, []string) {
	oldBy := make(map[string]tree.Entry, len(oldEs))
	bySum := map[[32]byte][]tree.Entry{}
	for _, e := range oldEs {
		oldBy[e.Path] = e
		if e.Type == tree.File {
			bySum[e.SHA256] = append(bySum[e.SHA256], e)
		}
	}
	newType := make(map[string]tree.Type, len(newEs))
	for _, e := range newEs {
		newType[e.Path] = e.Type
	}
	// An OLD file is "dropped" when NEW has no file at its path: the first
	// choice as the base of a renamed file.
	dropped := func(p string) bool { return newType[p] != tree.File }
	idx := newCandIndex(oldEs, dropped)

	plan := make([]*planned, 0, len(newEs))
	for _, ne := range newEs {
		pe := &planned{BundleEntry: BundleEntry{Path: ne.Path, Mode: ne.Mode}}
		plan = append(plan, pe)
		switch ne.Type {
		case tree.Dir:
			pe.Kind = EntryDir
			continue
		case tree.Symlink:
			pe.Kind, pe.Target, pe.Mode = EntrySymlink, ne.Target, 0o777
			continue
		}
		pe.Size, pe.SHA256 = ne.Size, ne.SHA256
		oe, ok := oldBy[ne.Path]
		samePath := ok && oe.Type == tree.File
		switch {
		case samePath && oe.SHA256 == ne.SHA256:
			pe.Kind, pe.Source = EntryCopy, ne.Path
			if oe.Mode == ne.Mode {
				pe.Kind = EntryUnchanged
			}
		case ne.Size == 0:
			pe.Kind = EntryNew
		case len(bySum[ne.SHA256]) > 0:
			pe.Kind, pe.Source = EntryCopy, bestCopy(bySum[ne.SHA256], ne.Path, dropped)
		case samePath:
			pe.Kind, pe.cands = EntryPatch, []string{ne.Path}
		default:
			// The candidates compete with a new file (a patch against
			// nothing): a look-alike name does not make similar bytes.
			pe.Kind, pe.cands = EntryPatch, append(idx.candidates(ne, k), "")
		}
	}
	var removed []string
	for _, e := range oldEs {
		if t, ok := newType[e.Path]; !ok || t != e.Type {
			removed = append(removed, e.Path)
		}
	}
	return plan, removed
}

// bestCopy picks the source of a copy among OLD files with the right
// content: the same base name first, then a dropped file, then path order.
func bestCopy(srcs []tree.Entry, p string, dropped func(string) bool) string {
	best, bestScore := "", -1
	for _, s := range srcs {
		score := 0
		if path.Base(s.Path) == path.Base(p) {
			score += 2
		}
		if dropped(s.Path) {
			score++
		}
		if score > bestScore {
			best, bestScore = s.Path, score
		}
	}
	return best
}

// candIndex finds OLD files that may resemble a NEW file: the same base
// name (a move), the same extension and name stem (a versioned or hashed
// name), the same extension and a close size.
type candIndex struct {
	files   []tree.Entry // OLD files, size > 0
	dropped []bool
	byBase  map[string][]int
	byStem  map[string][]int
	byExt   map[string][]int // sorted by size
}

// nameParts splits the base name of p into its extension (lowercase) and a
// stem: the lowercase name without the extension and without the parts
// (between - _ . ~ + and spaces) that hold digits.
func nameParts(p string) (base, ext, stem string) {
	base = path.Base(p)
	ext = strings.ToLower(path.Ext(base))
	var keep []string
	for _, f := range strings.FieldsFunc(strings.ToLower(strings.TrimSuffix(base, path.Ext(base))), func(r rune) bool {
		return strings.ContainsRune("-_.~+ ", r)
	}) {
		if !strings.ContainsAny(f, "0123456789") {
			keep = append(keep, f)
		}
	}
	return base, ext, strings.Join(keep, "-")
}

func newCandIndex(oldEs []tree.Entry, dropped func(string) bool) *candIndex {
	c := &candIndex{byBase: map[string][]int{}, byStem: map[string][]int{}, byExt: map[string][]int{}}
	for _, e := range oldEs {
		if e.Type != tree.File || e.Size == 0 {
			continue
		}
		i := len(c.files)
		c.files = append(c.files, e)
		c.dropped = append(c.dropped, dropped(e.Path))
		base, ext, stem := nameParts(e.Path)
		c.byBase[base] = append(c.byBase[base], i)
		c.byStem[ext+"\x00"+stem] = append(c.byStem[ext+"\x00"+stem], i)
		c.byExt[ext] = append(c.byExt[ext], i)
	}
	for _, l := range c.byExt {
		slices.SortStableFunc(l, func(a, b int) int { return cmp.Compare(c.files[a].Size, c.files[b].Size) })
	}
	return c
}

// candidates returns up to k OLD paths to diff the NEW file ne against,
// best first.
func (c *candIndex) candidates(ne tree.Entry, k int) []string {
	base, ext, stem := nameParts(ne.Path)
	type cand struct {
		i       int
		name    int // 3 same base name, 2 same extension and stem, 1 same extension
		dropped bool
		dist    float64 // |log(size ratio)|
	}
	seen := map[int]bool{}
	var cs []cand
	consider := func(i int) {
		if seen[i] {
			return
		}
		seen[i] = true
		f := c.files[i]
		ob, oext, ostem := nameParts(f.Path)
		name := 0
		switch {
		case ob == base:
			name = 3
		case oext == ext && ostem == stem:
			name = 2
		case oext == ext:
			name = 1
		}
		dist := math.Abs(math.Log(float64(f.Size) / float64(max(ne.Size, 1))))
		// Far apart in size, a file is unlikely to help unless its name
		// says it is the same file.
		if name == 0 || (name == 1 && dist > math.Log(4)) || (name == 2 && dist > math.Log(16)) {
			return
		}
		cs = append(cs, cand{i, name, c.dropped[i], dist})
	}
	for _, i := range c.byBase[base] {
		consider(i)
	}
	for _, i := range c.byStem[ext+"\x00"+stem] {
		consider(i)
	}
	// The few files of the same extension closest in size.
	l := c.byExt[ext]
	at := sort.Search(len(l), func(j int) bool { return c.files[l[j]].Size >= ne.Size })
	for j := max(0, at-4); j < min(len(l), at+4); j++ {
		consider(l[j])
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if a.name != b.name {
			return cmp.Compare(b.name, a.name)
		}
		if a.dropped != b.dropped {
			if a.dropped {
				return -1
			}
			return 1
		}
		if a.dist != b.dist {
			return cmp.Compare(a.dist, b.dist)
		}
		return strings.Compare(c.files[a.i].Path, c.files[b.i].Path)
	})
	var out []string
	for _, x := range cs[:min(k, len(cs))] {
		out = append(out, c.files[x.i].Path)
	}
	return out
}

// IsBundle reports whether the first bytes of a patch are a bundle's
// magic.
func IsBundle(head []byte) bool { return len(head) >= 4 && string(head[:4]) == bundleMagic }
