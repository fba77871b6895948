package delta_test

// Helpers of the bundle tests: trees described as tables (tnode) or random
// models, written to disk; bundle round trips; a hand encoder of the DUPB
// format (docs/FORMAT.md, "Directory bundle (DUPB)") that the hostile tests
// use to reach each check behind the checksums.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
)

// tnode is one path of a test tree.
type tnode struct {
	path   string
	kind   byte // 'f' file, 'd' directory, 'l' symlink
	data   []byte
	mode   os.FileMode
	target string // symlinks
}

func tfile(p string, mode os.FileMode, data []byte) tnode {
	return tnode{path: p, kind: 'f', data: data, mode: mode}
}
func tdir(p string, mode os.FileMode) tnode           { return tnode{path: p, kind: 'd', mode: mode} }
func tlink(p, target string) tnode                    { return tnode{path: p, kind: 'l', target: target} }
func tstr(p string, mode os.FileMode, s string) tnode { return tfile(p, mode, []byte(s)) }

// writeTree creates root and the nodes under it, with exactly their modes
// (directory modes set last, children first).
func writeTree(t testing.TB, root string, nodes []tnode) {
	t.Helper()
	ns := slices.Clone(nodes)
	slices.SortFunc(ns, func(a, b tnode) int { return strings.Compare(a.path, b.path) })
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		p := filepath.Join(root, filepath.FromSlash(n.path))
		var err error
		switch n.kind {
		case 'd':
			err = os.Mkdir(p, 0o700)
		case 'f':
			if err = os.WriteFile(p, n.data, 0o600); err == nil {
				err = os.Chmod(p, n.mode)
			}
		case 'l':
			err = os.Symlink(filepath.FromSlash(n.target), p)
		default:
			err = fmt.Errorf("bad node kind %q", n.kind)
		}
		if err != nil {
			t.Fatalf("writeTree %s: %v", n.path, err)
		}
	}
	for i := len(ns) - 1; i >= 0; i-- {
		if ns[i].kind == 'd' {
			if err := os.Chmod(filepath.Join(root, filepath.FromSlash(ns[i].path)), ns[i].mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// scanTree scans and hashes the tree at root.
func scanTree(t testing.TB, root string) []tree.Entry {
	t.Helper()
	es, err := tree.Scan(context.Background(), root, tree.ScanOptions{Hash: true})
	if err != nil {
		t.Fatalf("scanning %s: %v", root, err)
	}
	return es
}

func treeDigest(t testing.TB, root string) [32]byte {
	t.Helper()
	return tree.Digest(scanTree(t, root))
}

// diffTrees checks that two trees have the same digest and, when not, names
// the first differing entry.
func diffTrees(t testing.TB, got, want string) {
	t.Helper()
	g, w := scanTree(t, got), scanTree(t, want)
	if tree.Digest(g) == tree.Digest(w) {
		return
	}
	gm := map[string]tree.Entry{}
	for _, e := range g {
		gm[e.Path] = e
	}
	for _, e := range w {
		if ge, ok := gm[e.Path]; !ok || ge != e {
			t.Fatalf("trees differ at %s: got %+v, want %+v", e.Path, ge, e)
		}
		delete(gm, e.Path)
	}
	for p := range gm {
		t.Fatalf("trees differ: %s is extra", p)
	}
	t.Fatal("trees differ")
}

// makeBundle runs DiffBundle and checks what its stats say about the bytes.
func makeBundle(t testing.TB, oldDir, newDir string, opts *delta.BundleOptions) ([]byte, delta.BundleStats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := delta.DiffBundle(context.Background(), oldDir, newDir, &buf, opts)
	if err != nil {
		t.Fatalf("DiffBundle: %v", err)
	}
	if st.BundleSize != int64(buf.Len()) {
		t.Errorf("BundleStats.BundleSize = %d, wrote %d bytes", st.BundleSize, buf.Len())
	}
	return buf.Bytes(), st
}

// applyBundle applies b to oldDir into a fresh output path, which it
// returns. On error it checks that the output directory is gone and that
// the error says which class it is.
func applyBundle(t testing.TB, oldDir string, b []byte, opts *delta.BundleApplyOptions) (string, delta.BundleInfo, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	if opts == nil {
		opts = &delta.BundleApplyOptions{}
	}
	o := *opts
	o.NoSync = true
	var info delta.BundleInfo
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("ApplyBundle panicked: %v (bundle %d bytes)", r, len(b))
			}
		}()
		info, err = delta.ApplyBundle(context.Background(), oldDir, bytes.NewReader(b), out, &o)
	}()
	if err != nil {
		if _, serr := os.Lstat(out); !errors.Is(serr, fs.ErrNotExist) {
			t.Errorf("ApplyBundle failed (%v) but left %s behind", err, out)
		}
	}
	return out, info, err
}

// ---- random trees ----

// tmodel is a tree as a map from path to node.
type tmodel map[string]*tnode

func (m tmodel) nodes() []tnode {
	var ns []tnode
	for _, n := range m {
		ns = append(ns, *n)
	}
	return ns
}

func (m tmodel) clone() tmodel {
	c := tmodel{}
	for p, n := range m {
		nn := *n
		c[p] = &nn
	}
	return c
}

func (m tmodel) paths(kind byte) []string {
	var ps []string
	for p, n := range m {
		if kind == 0 || n.kind == kind {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

// dirs lists the directories of m and "" for the root.
func (m tmodel) dirs() []string { return append([]string{""}, m.paths('d')...) }

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// parentOf is the directory of p, "" for the root.
func parentOf(p string) string {
	if d := path.Dir(p); d != "." {
		return d
	}
	return ""
}

// removeAll removes p and everything below it.
func (m tmodel) removeAll(p string) {
	for q := range m {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(m, q)
		}
	}
}

// relTarget is a relative symlink target at link that names target.
func relTarget(link, target string) string {
	return strings.Repeat("../", strings.Count(link, "/")) + target
}

var (
	tnames = []string{"main", "util", "parser", "index", "README", "data", "chunk-3fa9c1", "lib-1.2.3", "x y", "ünï", "cfg"}
	texts  = []string{".js", ".txt", ".bin", "", ".md", ".sh"}
	dnames = []string{"src", "lib", "bin", "assets", "doc", "vendor", "x y"}
	twords = strings.Fields("the quick brown fox jumps over a lazy dog function return const let var if else for while import export default module require 0 1 42 null true false")
)

func textData(r *rand.Rand, n int) []byte {
	var b []byte
	for len(b) < n {
		b = append(b, twords[r.IntN(len(twords))]...)
		if r.IntN(9) == 0 {
			b = append(b, '\n')
		} else {
			b = append(b, ' ')
		}
	}
	return b[:n]
}

// editData returns b with a few edits of the kind a new version makes.
func editData(r *rand.Rand, b []byte) []byte {
	out := slices.Clone(b)
	for range 1 + r.IntN(4) {
		at := r.IntN(len(out) + 1)
		switch r.IntN(3) {
		case 0:
			out = slices.Insert(out, at, textData(r, 1+r.IntN(200))...)
		case 1:
			out = slices.Delete(out, at, min(len(out), at+1+r.IntN(100)))
		default:
			for i := at; i < min(len(out), at+8); i++ {
				out[i]++
			}
		}
	}
	return out
}

func (m tmodel) freshName(r *rand.Rand, dir string) string {
	for {
		name := tnames[r.IntN(len(tnames))] + texts[r.IntN(len(texts))]
		if r.IntN(3) == 0 {
			name = fmt.Sprintf("%s-%d%s", tnames[r.IntN(len(tnames))], r.IntN(100), texts[r.IntN(len(texts))])
		}
		if m[joinPath(dir, name)] == nil {
			return joinPath(dir, name)
		}
	}
}

func (m tmodel) addFile(r *rand.Rand, dir string, size int) string {
	p := m.freshName(r, dir)
	var data []byte
	if r.IntN(2) == 0 {
		data = textData(r, size)
	} else {
		data = fakeBinary(r.Uint64(), size)
	}
	modes := []os.FileMode{0o644, 0o644, 0o755, 0o600, 0o444}
	m[p] = &tnode{path: p, kind: 'f', data: data, mode: modes[r.IntN(len(modes))]}
	return p
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// randomTree makes a tree of about nFiles files in a few nested directories,
// with empty files, an empty directory and symlinks (one dangling, all inside
// the tree); with big, one file of about 3 MB.
func randomTree(r *rand.Rand, nFiles int, big bool) tmodel {
	m := tmodel{}
	for range 3 + r.IntN(5) {
		parent := pick(r, m.dirs())
		if strings.Count(parent, "/") >= 2 {
			parent = ""
		}
		p := joinPath(parent, pick(r, dnames))
		if m[p] == nil {
			m[p] = &tnode{path: p, kind: 'd', mode: pick(r, []os.FileMode{0o755, 0o755, 0o750, 0o700})}
		}
	}
	for range nFiles {
		size := r.IntN(16 << 10)
		if r.IntN(10) == 0 {
			size = 0
		}
		m.addFile(r, pick(r, m.dirs()), size)
	}
	m["empty"] = &tnode{path: "empty", kind: 'd', mode: 0o755}
	if big {
		data := fakeBinary(r.Uint64(), 3<<20)
		m["big.bin"] = &tnode{path: "big.bin", kind: 'f', data: data, mode: 0o755}
	}
	for range 3 {
		m.addLink(r)
	}
	m["dangling"] = &tnode{path: "dangling", kind: 'l', target: "no/such/file"}
	return m
}

func (m tmodel) addLink(r *rand.Rand) {
	targets := append(m.paths('f'), m.paths('d')...)
	dir := pick(r, m.dirs())
	p := m.freshName(r, dir) + ".lnk"
	if m[p] == nil && len(targets) > 0 {
		m[p] = &tnode{path: p, kind: 'l', target: relTarget(p, pick(r, targets))}
	}
}

// mutateTree derives a next version of m: edits, renames, moves, renames
// with edits, copies, mode changes, deletions, new and empty files, removed
// and new directories, retargeted links and type changes.
func mutateTree(r *rand.Rand, old tmodel) tmodel {
	m := old.clone()
	for range 6 + len(m)/3 {
		// The big file only gets edited, below.
		files := slices.DeleteFunc(m.paths('f'), func(p string) bool { return p == "big.bin" })
		if len(files) == 0 {
			break
		}
		f := m[pick(r, files)]
		switch op := r.IntN(14); op {
		case 0, 1: // edit
			if len(f.data) > 0 {
				f.data = editData(r, f.data)
			}
		case 2: // rename in place
			delete(m, f.path)
			f.path = m.freshName(r, parentOf(f.path))
			m[f.path] = f
		case 3: // move
			delete(m, f.path)
			f.path = joinPath(pick(r, m.dirs()), path.Base(f.path))
			if m[f.path] != nil {
				f.path = m.freshName(r, pick(r, m.dirs()))
			}
			m[f.path] = f
		case 4: // rename and edit
			delete(m, f.path)
			f.path = m.freshName(r, pick(r, m.dirs()))
			if len(f.data) > 0 {
				f.data = editData(r, f.data)
			}
			m[f.path] = f
		case 5: // copy
			c := *f
			c.path = m.freshName(r, pick(r, m.dirs()))
			m[c.path] = &c
		case 6: // mode change
			if f.mode == 0o755 {
				f.mode = 0o644
			} else {
				f.mode = 0o755
			}
		case 7: // delete
			delete(m, f.path)
		case 8: // new file
			m.addFile(r, pick(r, m.dirs()), 1+r.IntN(8<<10))
		case 9: // new empty file
			p := m.addFile(r, pick(r, m.dirs()), 0)
			m[p].data = nil
		case 10: // remove a directory, or add one
			if ds := m.paths('d'); len(ds) > 2 && r.IntN(2) == 0 {
				m.removeAll(pick(r, ds))
			} else {
				p := joinPath(pick(r, m.dirs()), fmt.Sprintf("new%d", r.IntN(1000)))
				if m[p] == nil {
					m[p] = &tnode{path: p, kind: 'd', mode: 0o755}
				}
			}
		case 11: // retarget or add a link
			if ls := m.paths('l'); len(ls) > 0 && r.IntN(2) == 0 {
				l := m[pick(r, ls)]
				l.target = relTarget(l.path, pick(r, files))
			} else {
				m.addLink(r)
			}
		case 12: // a file becomes a directory
			p := f.path
			delete(m, p)
			m[p] = &tnode{path: p, kind: 'd', mode: 0o755}
			m[p+"/inside.txt"] = &tnode{path: p + "/inside.txt", kind: 'f', data: f.data, mode: f.mode}
		case 13: // a link becomes a file
			if ls := m.paths('l'); len(ls) > 0 {
				p := pick(r, ls)
				m[p] = &tnode{path: p, kind: 'f', data: textData(r, 100), mode: 0o644}
			}
		}
	}
	if b := m["big.bin"]; b != nil {
		b.data = mutateBinary(r.Uint64(), b.data)
	}
	return m
}

// ---- hand encoder ----

// rawEntry is one bundle entry as bytes: kind, path, then fields (already
// encoded) and payload.
type rawEntry struct {
	kind   byte
	path   string
	fields []byte
}

func uv(x uint64) []byte  { return binary.AppendUvarint(nil, x) }
func str(s string) []byte { return append(uv(uint64(len(s))), s...) }
func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func rDir(p string, mode uint64) rawEntry { return rawEntry{1, p, uv(mode)} }
func rLink(p, target string) rawEntry     { return rawEntry{2, p, str(target)} }
func rSame(p string) rawEntry             { return rawEntry{3, p, nil} }
func rCopy(p string, mode uint64, src string) rawEntry {
	return rawEntry{4, p, cat(uv(mode), str(src))}
}
func rPatch(p string, mode uint64, src string, payload []byte) rawEntry {
	return rawEntry{5, p, cat(uv(mode), str(src), uv(uint64(len(payload))), payload)}
}
func rSolid(p string, mode uint64, data []byte) rawEntry {
	sum := sha256.Sum256(data)
	return rawEntry{7, p, cat(uv(mode), uv(uint64(len(data))), sum[:])}
}
func rNew(p string, mode uint64, payload []byte) rawEntry {
	return rawEntry{6, p, cat(uv(mode), uv(uint64(len(payload))), payload)}
}

// frontCode encodes p after prev, sharing at most len(p)-1 bytes so that
// even a repeated path has a one-byte rest.
func frontCode(prev, p string) []byte {
	n := 0
	for n < len(prev) && n < len(p)-1 && prev[n] == p[n] {
		n++
	}
	return cat(uv(uint64(n)), uv(uint64(len(p)-n)), []byte(p[n:]))
}

// rawBundle is a bundle to encode by hand; zero fields take the values
// docs/FORMAT.md asks for.
type rawBundle struct {
	magic                string
	version              byte
	reserved             byte
	count                int64 // -1: len(entries)
	newSize              uint64
	oldDigest, newDigest [32]byte
	entries              []rawEntry
	removed              []string
	solid                []byte // version 2: the solid section (uvarint length, payload), as is
	crcXor               uint32
	trailerXor           byte
}

var castagnoliTable = crc32.MakeTable(crc32.Castagnoli)

func (rb rawBundle) bytes() []byte {
	h := make([]byte, 88)
	copy(h, "DUPB")
	if rb.magic != "" {
		copy(h, rb.magic)
	}
	h[4] = 1
	if rb.version != 0 {
		h[4] = rb.version
	}
	h[5] = rb.reserved
	count := uint32(len(rb.entries))
	if rb.count >= 0 {
		count = uint32(rb.count)
	}
	binary.LittleEndian.PutUint32(h[8:], count)
	binary.LittleEndian.PutUint64(h[12:], rb.newSize)
	copy(h[20:], rb.oldDigest[:])
	copy(h[52:], rb.newDigest[:])
	binary.LittleEndian.PutUint32(h[84:], crc32.Checksum(h[:84], castagnoliTable)^rb.crcXor)
	b := h
	prev := ""
	for _, e := range rb.entries {
		b = append(b, e.kind)
		b = append(b, frontCode(prev, e.path)...)
		b = append(b, e.fields...)
		prev = e.path
	}
	b = append(b, uv(uint64(len(rb.removed)))...)
	prev = ""
	for _, p := range rb.removed {
		b = append(b, frontCode(prev, p)...)
		prev = p
	}
	b = append(b, rb.solid...)
	sum := sha256.Sum256(b)
	sum[0] ^= rb.trailerXor
	return append(b, sum[:]...)
}

// compactPayload turns a native patch into a bundle payload: method, new
// size (uvarint), new SHA-256, body (docs/FORMAT.md, "Directory bundle").
func compactPayload(p []byte) []byte {
	out := []byte{p[5]}
	out = binary.AppendUvarint(out, binary.LittleEndian.Uint64(p[16:]))
	out = append(out, p[56:88]...)
	return append(out, p[100:]...)
}
