//go:build linux

package apply

// Power-loss tests (issue item 15). plFS runs every operation of the swap
// on the real disk but also keeps the part of it a power cut would leave:
// the "durable" state. At fault point k the k-th mutating operation fails
// with errPowerLoss, the durable state is frozen at that instant (whatever
// the dying process does afterwards, e.g. the journal save of Swap's error
// path, is lost), the directory is rebuilt on the disk from the durable
// state alone and a fresh Resume (journal reloaded from the disk, OSFS)
// must end in exactly the new tree.
//
// The model (conservative: no ordering between objects is assumed, so
// neither ext4 data=ordered nor "fsync commits the whole journal"):
//   - every object (file, dir, symlink) has an identity (its inode);
//   - a file's content and mode become durable only at File.Sync of that
//     file; a file created and never synced is empty (its creation mode);
//     a truncation or write not followed by Sync is lost;
//   - a directory's entries (name -> object) become durable only at
//     SyncDir of that directory, as they are at that instant: a create,
//     rename or remove is undone unless the directory (each directory, for
//     a rename across two) is synced afterwards. A rename synced in the
//     target only shows the object under both names;
//   - a directory's own mode (Chmod) becomes durable at SyncDir of that
//     directory itself; a new object's creation mode and a symlink's
//     target are durable with the object;
//   - objects created outside the FS (journal files written by
//     delta.WriteFileAtomic, which fsyncs file and directory) are taken as
//     durable when they are seen: plFS notices a completed Journal.Save
//     (need_update has a new inode) before each operation and marks the
//     backup directory's listing and the journal copies durable;
//   - the trees built before the swap (old app, staged tree, first
//     journal) are durable.
//
// plFS skips the real fsyncs (durability is what it records) and the
// fixtures live in /dev/shm when there is one, for speed.
//
// TestPowerLossSwapEveryStep runs every fault point under four variants:
// "relaxed-chmod" (a Chmod is durable at once, as on ext4/xfs in
// practice); the same with the journal's Done index saved after every op
// (Swap's journalSaveEvery 0; otherwise it is an hour, so that no save
// falls mid-swap and the runs are deterministic); "strict-save-every-op"
// (the model above); "strict-rollback" (strict, and then the update must
// still roll back to the old tree). Bugs of apply the strict variants
// found, both fixed in swap.go since:
//   - doOp OpMkdir: Chmod(p) then SyncDir(parent); p itself is never
//     synced, so a directory mode change (cfg 0755 -> 0700) can be lost
//     after the journal says "swapped". copyStaged: Chmod(tmp) comes after
//     dst.Sync(), so a mode the umask changed (lib/group.txt 0664) can be
//     lost the same way. With the Done index saved past such an op,
//     Resume does not even look at it again, so the loss shows before the
//     swap ends too ("strict-save-every-op"). Fix: SyncDir(p) after the
//     Chmod in OpMkdir; in copyStaged Chmod before the Sync (or Sync
//     again after it).
//   - saveOld / Swap: the rollback area is made with MkdirAll and never
//     synced (only the directory the old entry is renamed into is), so
//     rollback/FROM and its subdirectories can vanish while the removal
//     from the app dir is durable: the old files are lost and Rollback
//     fails ("neither in place nor in" the rollback area). Fix: after
//     creating directories of the rollback area, SyncDir each new
//     directory's parent up to BackupDir (Swap's MkdirAll(j.Rollback) and
//     saveOld's MkdirAll(filepath.Dir(rb))), before the Rename.
//
// The crash inside Journal.Save itself (whose writes do not go through FS)
// is checked in TestPowerLossJournalSave by enumerating every state the
// WriteFileAtomic protocol can leave under the same model.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deltaup/deltaup/internal/tree"
)

var errPowerLoss = errors.New("simulated power loss")

// plNode is the durable state of one object.
type plNode struct {
	typ     tree.Type
	mode    fs.FileMode
	data    []byte            // files
	target  string            // symlinks
	entries map[string]uint64 // dirs: name -> object id
}

func (n *plNode) clone() *plNode {
	c := *n
	c.data = append([]byte(nil), n.data...)
	if n.entries != nil {
		c.entries = make(map[string]uint64, len(n.entries))
		for k, v := range n.entries {
			c.entries[k] = v
		}
	}
	return &c
}

// plFS: see the comment at the top of the file.
type plFS struct {
	OSFS
	t       testing.TB
	mu      sync.Mutex
	base    string
	backup  string
	rootID  uint64
	nextID  uint64
	ids     map[uint64]uint64 // inode -> object id
	nodes   map[uint64]*plNode
	limit   int // fail the operation numbered limit (< 0: never)
	n       int // mutating operations done
	crashed bool
	frozen  map[uint64]*plNode // durable state at the crash
	jIno    uint64             // inode of need_update last seen
	strict  bool               // false: Chmod is durable at once (relaxed model)
	// lostSync, when set, makes SyncDir of the directories it accepts a
	// no-op for durability (the self-test of the model).
	lostSync func(dir string) bool
}

func plIno(t testing.TB, p string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st.Ino
}

func newPLFS(t testing.TB, base, backup string, limit int, strict bool) *plFS {
	c := &plFS{t: t, base: base, backup: backup, limit: limit, strict: strict,
		ids: map[uint64]uint64{}, nodes: map[uint64]*plNode{}}
	c.rootID = c.snapshot(base)
	c.jIno = c.inoOrZero(filepath.Join(backup, JournalFileName))
	return c
}

func (c *plFS) inoOrZero(p string) uint64 {
	var st syscall.Stat_t
	if syscall.Lstat(p, &st) != nil {
		return 0
	}
	return st.Ino
}

// fresh gives the object at p a new identity whose durable state is what
// it has now (contents only when full, else empty / no entries).
func (c *plFS) fresh(p string, full bool) uint64 {
	fi, err := os.Lstat(p)
	if err != nil {
		c.t.Fatalf("plFS: %v", err)
	}
	c.nextID++
	id := c.nextID
	c.ids[plIno(c.t, p)] = id
	n := &plNode{typ: fileType(fi), mode: fi.Mode().Perm()}
	switch n.typ {
	case tree.Dir:
		n.entries = map[string]uint64{}
	case tree.Symlink:
		n.target, _ = os.Readlink(p)
	case tree.File:
		if full {
			n.data, err = os.ReadFile(p)
			if err != nil {
				c.t.Fatalf("plFS: %v", err)
			}
		}
	}
	c.nodes[id] = n
	return id
}

// snapshot makes the whole tree at p durable as it is, with new identities.
func (c *plFS) snapshot(p string) uint64 {
	id := c.fresh(p, true)
	if c.nodes[id].typ == tree.Dir {
		des, err := os.ReadDir(p)
		if err != nil {
			c.t.Fatal(err)
		}
		for _, de := range des {
			c.nodes[id].entries[de.Name()] = c.snapshot(filepath.Join(p, de.Name()))
		}
	}
	return id
}

// idOf: the identity of the object at p (new objects not seen created,
// i.e. made outside the FS, are snapshotted as durable).
func (c *plFS) idOf(p string) uint64 {
	if id, ok := c.ids[plIno(c.t, p)]; ok {
		return id
	}
	return c.snapshot(p)
}

// syncDir records dir's listing (and its mode) as durable.
func (c *plFS) syncDir(dir string) {
	id := c.idOf(dir)
	des, err := os.ReadDir(dir)
	if err != nil {
		c.t.Fatalf("plFS: %v", err)
	}
	ents := map[string]uint64{}
	for _, de := range des {
		ents[de.Name()] = c.idOf(filepath.Join(dir, de.Name()))
	}
	n := c.nodes[id]
	n.entries = ents
	if fi, err := os.Lstat(dir); err == nil {
		n.mode = fi.Mode().Perm()
	}
}

// noteJournal: a Journal.Save completed since the last look (its last
// step fsyncs the backup directory; both copies are fsynced).
func (c *plFS) noteJournal() {
	ino := c.inoOrZero(filepath.Join(c.backup, JournalFileName))
	if ino == c.jIno {
		return
	}
	c.jIno = ino
	for _, name := range []string{JournalFileName, JournalBackupName} {
		p := filepath.Join(c.backup, name)
		if c.inoOrZero(p) != 0 {
			c.fresh(p, true)
		}
	}
	c.syncDir(c.backup)
}

// step is called before each mutating operation.
func (c *plFS) step() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return errPowerLoss
	}
	c.noteJournal()
	if c.limit >= 0 && c.n >= c.limit {
		c.crashed = true
		c.frozen = map[uint64]*plNode{}
		for id, n := range c.nodes {
			c.frozen[id] = n.clone()
		}
		return errPowerLoss
	}
	c.n++
	return nil
}

// after runs f under the lock once an operation succeeded.
func (c *plFS) after(err error, f func()) error {
	if err == nil {
		c.mu.Lock()
		f()
		c.mu.Unlock()
	}
	return err
}

func (c *plFS) Rename(o, n string) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.FS().Rename(o, n)
}
func (c *plFS) Remove(p string) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.FS().Remove(p)
}
func (c *plFS) RemoveAll(p string) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.FS().RemoveAll(p)
}
func (c *plFS) Mkdir(p string, m fs.FileMode) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.after(c.FS().Mkdir(p, m), func() { c.fresh(p, false) })
}
func (c *plFS) MkdirAll(p string, m fs.FileMode) error {
	if err := c.step(); err != nil {
		return err
	}
	var missing []string
	for q := p; ; q = filepath.Dir(q) {
		if _, err := os.Lstat(q); err == nil || q == filepath.Dir(q) {
			break
		}
		missing = append(missing, q)
	}
	return c.after(c.FS().MkdirAll(p, m), func() {
		for _, q := range missing {
			c.fresh(q, false)
		}
	})
}
func (c *plFS) Symlink(o, n string) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.after(c.FS().Symlink(o, n), func() { c.fresh(n, false) })
}
func (c *plFS) Chmod(p string, m fs.FileMode) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.after(c.FS().Chmod(p, m), func() {
		if !c.strict {
			c.nodes[c.idOf(p)].mode = m.Perm()
		}
	})
}
func (c *plFS) SyncDir(p string) error {
	if err := c.step(); err != nil {
		return err
	}
	// The real fsync is skipped: durability is what the model records.
	return c.after(nil, func() {
		if c.lostSync == nil || !c.lostSync(p) {
			c.syncDir(p)
		}
	})
}
func (c *plFS) OpenFile(p string, flag int, m fs.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) == 0 {
		return c.FS().OpenFile(p, flag, m)
	}
	if err := c.step(); err != nil {
		return nil, err
	}
	_, statErr := os.Lstat(p)
	f, err := c.FS().OpenFile(p, flag, m)
	if err != nil {
		return nil, err
	}
	if statErr != nil {
		c.after(nil, func() { c.fresh(p, false) })
	}
	return &plFile{File: f, c: c, path: p}, nil
}

// FS is the real file system under plFS.
func (c *plFS) FS() FS { return c.OSFS }

type plFile struct {
	File
	c    *plFS
	path string
}

func (f *plFile) Write(b []byte) (int, error) {
	if err := f.c.step(); err != nil {
		return 0, err
	}
	return f.File.Write(b)
}

func (f *plFile) Sync() error {
	if err := f.c.step(); err != nil {
		return err
	}
	return f.c.after(nil, func() { // no real fsync: the model records it
		data, err := os.ReadFile(f.path)
		fi, err2 := os.Lstat(f.path)
		if err != nil || err2 != nil {
			f.c.t.Fatalf("plFS sync: %v %v", err, err2)
		}
		n := f.c.nodes[f.c.idOf(f.path)]
		n.data, n.mode = data, fi.Mode().Perm()
	})
}

// restore replaces the directory tree at base by the durable state frozen
// at the crash (or the current durable state if there was no crash).
func (c *plFS) restore(t testing.TB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nodes := c.frozen
	if nodes == nil {
		c.noteJournal()
		nodes = c.nodes
	}
	des, err := os.ReadDir(c.base)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		p := filepath.Join(c.base, de.Name())
		_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(q, 0o755)
			}
			return nil
		})
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	var dirModes []func()
	var build func(p string, id uint64, depth int)
	build = func(p string, id uint64, depth int) {
		if depth > 64 {
			t.Fatalf("durable tree loops at %s", p)
		}
		n := nodes[id]
		var err error
		switch n.typ {
		case tree.Dir:
			if depth > 0 {
				err = os.Mkdir(p, 0o755)
			}
			names := make([]string, 0, len(n.entries))
			for name := range n.entries {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				build(filepath.Join(p, name), n.entries[name], depth+1)
			}
			if depth > 0 {
				mode := n.mode
				dirModes = append(dirModes, func() { _ = os.Chmod(p, mode) })
			}
		case tree.File:
			if err = os.WriteFile(p, n.data, 0o600); err == nil {
				err = os.Chmod(p, n.mode)
			}
		case tree.Symlink:
			err = os.Symlink(n.target, p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	build(c.base, c.rootID, 0)
	for i := len(dirModes) - 1; i >= 0; i-- { // deepest first
		dirModes[i]()
	}
}

func plJournalState(backup string) (JournalState, error) {
	j, err := LoadJournal(backup)
	if err != nil {
		return "", err
	}
	return j.State, nil
}

// plFixture is newFixture in a RAM file system when there is one (the
// durability is modelled, the disk's fsyncs only cost time).
func plFixture(t testing.TB, oldN, newN []tnode) *fixture {
	t.Helper()
	base := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "deltaup-powerloss-"); err == nil {
			base = d
			t.Cleanup(func() {
				_ = filepath.WalkDir(d, func(q string, e fs.DirEntry, err error) error {
					if err == nil && e.IsDir() {
						_ = os.Chmod(q, 0o755)
					}
					return nil
				})
				_ = os.RemoveAll(d)
			})
		}
	}
	f := &fixture{app: filepath.Join(base, "app"), backup: filepath.Join(base, "app.backup")}
	f.staged = filepath.Join(f.backup, "staged", "2.0")
	writeTree(t, f.app, oldN)
	writeTree(t, f.staged, newN)
	old, nw := scanTree(t, f.app), scanTree(t, f.staged)
	f.oldD, f.newD = tree.Digest(old), tree.Digest(nw)
	j, err := BuildJournal(f.app, f.backup, "1.0", "2.0", old, nw, f.staged, []string{"app", "--updated"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Save(); err != nil {
		t.Fatal(err)
	}
	f.ops = len(j.Ops)
	return f
}

// plNewNodes is the new tree plus a file whose mode the umask (022)
// changes at creation, so that the swap must Chmod it.
var plNewNodes = append(append([]tnode(nil), newNodes...), tnode{"lib/group.txt", tree.File, 0o664, "group-writable"})

// plRun: one power loss at fault point k of a Swap, then the checks.
// It returns the number of mutating operations the Swap did (k == -1:
// the whole swap ran, the power is lost after it returned). With
// rollback, the update is then rolled back and must give the old tree.
func plRun(t *testing.T, k int, strict, rollback bool) (int, error) {
	return plRunFS(t, k, strict, rollback, nil)
}

func plRunFS(t *testing.T, k int, strict, rollback bool, lostSync func(string) bool) (int, error) {
	ctx := context.Background()
	f := plFixture(t, oldNodes, plNewNodes)
	c := newPLFS(t, filepath.Dir(f.app), f.backup, k, strict)
	if lostSync != nil {
		c.lostSync = func(dir string) bool { return lostSync(strings.TrimPrefix(dir, f.app)) }
	}
	err := Swap(ctx, f.load(t), c)
	if k < 0 && err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if k >= 0 && !errors.Is(err, errPowerLoss) {
		t.Fatalf("k=%d: Swap: %v (want the power loss)", k, err)
	}
	c.restore(t)
	// What survived: the journal must load; "staged" means the swap had
	// not begun (write-ahead), so the app dir must be exactly the old one.
	st, err := plJournalState(f.backup)
	if err != nil {
		return c.n, fmt.Errorf("journal after the power loss: %w", err)
	}
	got := tree.Digest(scanTree(t, f.app))
	if st == JournalStaged && got != f.oldD {
		return c.n, fmt.Errorf("journal says staged but the app dir is not the old tree: %s", plList(t, f.app))
	}
	if st == JournalSwapped && got != f.newD {
		return c.n, &plMixError{fmt.Sprintf("journal says swapped but the app dir is not the new tree: %s", plDiff(t, f.app, f.staged))}
	}
	j, err := Resume(ctx, f.app, f.backup, OSFS{})
	if err != nil {
		return c.n, fmt.Errorf("Resume after the power loss (journal %s): %w", st, err)
	}
	if j.State != JournalSwapped {
		return c.n, fmt.Errorf("Resume: state %s", j.State)
	}
	if got := tree.Digest(scanTree(t, f.app)); got != f.newD {
		return c.n, &plMixError{fmt.Sprintf("after Resume (journal was %s) the app dir is not the new tree: %s", st, plDiff(t, f.app, f.staged))}
	}
	if rollback {
		if err := Rollback(ctx, f.load(t), OSFS{}); err != nil {
			return c.n, &plRollbackError{fmt.Sprintf("Rollback after the power loss (journal was %s): %v", st, err)}
		}
		if got := tree.Digest(scanTree(t, f.app)); got != f.oldD {
			return c.n, &plRollbackError{"after Rollback the app dir is not the old tree"}
		}
	}
	return c.n, nil
}

type plMixError struct{ s string }

func (e *plMixError) Error() string { return e.s }

type plRollbackError struct{ s string }

func (e *plRollbackError) Error() string { return e.s }

// plDiff lists the entries of root that differ from want's.
func plDiff(t testing.TB, root, want string) string {
	a, b := map[string]string{}, map[string]string{}
	for _, e := range scanTree(t, root) {
		a[e.Path] = plDesc(e)
	}
	for _, e := range scanTree(t, want) {
		b[e.Path] = plDesc(e)
	}
	var out []string
	for p, d := range a {
		if b[p] != d {
			out = append(out, fmt.Sprintf("%s is %s, want %q", p, d, b[p]))
		}
	}
	for p, d := range b {
		if _, ok := a[p]; !ok {
			out = append(out, fmt.Sprintf("%s missing, want %s", p, d))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func plDesc(e tree.Entry) string {
	s := string(e.Type) + ":" + e.Mode.Perm().String()
	switch e.Type {
	case tree.File:
		s += ":" + e.Hex()[:8]
	case tree.Symlink:
		s += ":" + e.Target
	}
	return s
}

func plList(t testing.TB, root string) string {
	var names []string
	for _, e := range scanTree(t, root) {
		names = append(names, e.Path+":"+plDesc(e))
	}
	return strings.Join(names, " ")
}

func TestPowerLossSwapEveryStep(t *testing.T) {
	defer func(d time.Duration) { journalSaveEvery = d }(journalSaveEvery)
	for _, model := range []struct {
		name             string
		strict, rollback bool
		saveEvery        time.Duration // Swap's journal saves of the Done index
	}{
		{"relaxed-chmod", false, false, time.Hour},
		{"relaxed-chmod-save-every-op", false, false, 0},
		{"strict-save-every-op", true, false, 0},
		{"strict-rollback", true, true, time.Hour},
	} {
		// Set while no subtest runs (the parallel ones end with this Run).
		journalSaveEvery = model.saveEvery
		t.Run(model.name, func(t *testing.T) {
			n, err := plRun(t, -1, model.strict, model.rollback)
			t.Logf("%d fault points in the swap + a power loss after it", n)
			t.Run("after", func(t *testing.T) { plCheck(t, err) })
			for k := 0; k < n; k++ {
				t.Run(fmt.Sprint(k), func(t *testing.T) {
					t.Parallel()
					_, err := plRun(t, k, model.strict, model.rollback)
					plCheck(t, err)
				})
			}
		})
	}
}

func plCheck(t *testing.T, err error) {
	t.Helper()
	var mix *plMixError
	var rb *plRollbackError
	// The two bugs this model found (modes set by Chmod never fsynced; the
	// rollback area's directories never fsynced) are fixed in swap.go, so
	// any difference fails.
	_, _ = mix, rb
	if err != nil {
		t.Fatal(err)
	}
}

// TestPowerLossJournalSave: a power loss inside Journal.Save. Save's writes
// bypass FS (delta.WriteFileAtomic: temp file, write, fsync, rename,
// fsync dir; first need_update.bak, then need_update), so the states the
// model allows at each of its steps are written directly: the temp file of
// either copy present (empty or torn: its entry may have been made durable
// by another sync) or not, each rename durable or undone. Every state must
// load (the previous or the new journal, never an error) and resume to the
// new tree. Two saves are checked: staged -> swapping (app dir old) and
// swapping -> swapped (app dir new).
func TestPowerLossJournalSave(t *testing.T) {
	ctx := context.Background()
	type state struct {
		name      string
		bak, main string // "A" (previous) or "B" (new)
		tmp       string // "" or the temp file's base name
		tmpData   string // "empty" or "torn"
	}
	states := []state{
		{"before", "A", "A", "", ""},
		{"bak temp created", "A", "A", ".need_update.bak.tmp-1", "empty"},
		{"bak temp written, not synced", "A", "A", ".need_update.bak.tmp-1", "torn"},
		{"bak temp synced, rename lost", "A", "A", ".need_update.bak.tmp-1", "full"},
		{"bak renamed", "B", "A", "", ""},
		{"main temp created", "B", "A", ".need_update.tmp-2", "empty"},
		{"main temp written, not synced", "B", "A", ".need_update.tmp-2", "torn"},
		{"main temp synced, rename lost", "B", "A", ".need_update.tmp-2", "full"},
		{"main renamed", "B", "B", "", ""},
		{"reordered (not allowed by the model)", "A", "B", "", ""},
	}
	read := func(f *fixture) []byte {
		b, err := os.ReadFile(filepath.Join(f.backup, JournalFileName))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type transition struct {
		name string
		// prepare returns the journal bytes before (A) and after (B) the save.
		prepare func(t *testing.T, f *fixture) (a, b []byte, seqA, seqB uint64)
	}
	transitions := []transition{
		{"staged->swapping", func(t *testing.T, f *fixture) ([]byte, []byte, uint64, uint64) {
			j := f.load(t)
			a, sa := read(f), j.Seq
			j.State = JournalSwapping
			if err := j.Save(); err != nil {
				t.Fatal(err)
			}
			return a, read(f), sa, j.Seq
		}},
		{"swapping->swapped", func(t *testing.T, f *fixture) ([]byte, []byte, uint64, uint64) {
			j := f.load(t)
			if err := Swap(ctx, j, nil); err != nil {
				t.Fatal(err)
			}
			j.State = JournalSwapping
			if err := j.Save(); err != nil {
				t.Fatal(err)
			}
			a, sa := read(f), j.Seq
			j.State = JournalSwapped
			if err := j.Save(); err != nil {
				t.Fatal(err)
			}
			return a, read(f), sa, j.Seq
		}},
	}
	points := 0
	for _, tr := range transitions {
		for _, st := range states {
			points++
			t.Run(tr.name+"/"+st.name, func(t *testing.T) {
				f := plFixture(t, oldNodes, newNodes)
				a, b, sa, sb := tr.prepare(t, f)
				pick := map[string][]byte{"A": a, "B": b}
				write := func(name string, data []byte) {
					if err := os.WriteFile(filepath.Join(f.backup, name), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				write(JournalBackupName, pick[st.bak])
				write(JournalFileName, pick[st.main])
				if st.tmp != "" {
					data := map[string][]byte{"empty": nil, "torn": b[:len(b)/2], "full": b}[st.tmpData]
					write(st.tmp, data)
				}
				j, err := LoadJournal(f.backup)
				if err != nil {
					t.Fatalf("no loadable journal after a power loss in Save: %v", err)
				}
				if j.Seq != sa && j.Seq != sb {
					t.Fatalf("loaded seq %d, want %d or %d", j.Seq, sa, sb)
				}
				if j.Seq == sa && st.bak == "B" {
					t.Fatalf("the durable new copy was ignored (seq %d)", j.Seq)
				}
				j, err = Resume(ctx, f.app, f.backup, OSFS{})
				if err != nil || j.State != JournalSwapped {
					t.Fatalf("Resume: %v", err)
				}
				f.appIs(t, f.newD, "new")
			})
		}
	}
	t.Logf("%d power-loss states of Journal.Save", points)
}

// TestPowerLossModelSelfTest: the model must catch a missing fsync. With
// the SyncDir of the app dir's top level made ineffective (as if the swap
// never synced it) some fault point must end in a mix or a failed Resume.
func TestPowerLossModelSelfTest(t *testing.T) {
	n, _ := plRun(t, -1, false, false)
	var caught atomic.Int32
	t.Run("points", func(t *testing.T) {
		for _, k := range []int{0, n / 3, n / 2, n - 1, n} {
			t.Run(fmt.Sprint(k), func(t *testing.T) {
				t.Parallel()
				kk := k
				if k == n {
					kk = -1 // power lost after the swap returned
				}
				if _, err := plRunFS(t, kk, false, false, func(rel string) bool { return rel == "" }); err != nil {
					caught.Add(1)
				}
			})
		}
	})
	if caught.Load() == 0 {
		t.Fatal("the model did not notice that the app directory is never synced")
	}
	t.Logf("missing SyncDir of the app dir caught at %d of 5 fault points", caught.Load())
}
