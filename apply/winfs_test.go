package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/deltaup/deltaup/internal/tree"
)

// sharingViolation is windowsFS's ERROR_SHARING_VIOLATION; transient ones
// (a file briefly held by an antivirus scanner) are worth retrying.
type sharingViolation struct {
	op, path  string
	transient bool
}

func (e *sharingViolation) Error() string {
	return fmt.Sprintf("%s %s: The process cannot access the file because it is being used by another process (transient=%v)", e.op, e.path, e.transient)
}
func (e *sharingViolation) Transient() bool { return e.transient }

// windowsFS wraps OSFS with the Windows rules the swap must live with:
//   - a file "in use" (running exe, loaded DLL) cannot be opened for
//     writing, truncated, deleted or replaced by a rename onto it, but can
//     itself be renamed (the lock follows it);
//   - a file "held" (antivirus) fails writes, renames and deletes with a
//     transient sharing violation for its first K attempts;
//   - paths longer than 260 characters fail unless long paths are enabled
//     or the path has the \\?\ prefix.
type windowsFS struct {
	OSFS
	mu        sync.Mutex
	inUse     map[string]bool
	held      map[string]int
	longPaths bool
	hits      int // transient violations returned
}

func newWindowsFS() *windowsFS {
	return &windowsFS{inUse: map[string]bool{}, held: map[string]int{}}
}

func (w *windowsFS) check(op string, paths ...string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range paths {
		if len(p) > 260 && !w.longPaths && !strings.HasPrefix(p, `\\?\`) {
			return &fs.PathError{Op: op, Path: p, Err: errors.New("The filename or extension is too long")}
		}
		if w.held[p] > 0 {
			w.held[p]--
			w.hits++
			return &sharingViolation{op, p, true}
		}
	}
	return nil
}

func (w *windowsFS) used(p string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inUse[p]
}

func (w *windowsFS) Rename(o, n string) error {
	if err := w.check("rename", o, n); err != nil {
		return err
	}
	if w.used(n) {
		return &sharingViolation{"rename", n, false}
	}
	if err := w.OSFS.Rename(o, n); err != nil {
		return err
	}
	w.mu.Lock()
	if w.inUse[o] {
		delete(w.inUse, o)
		w.inUse[n] = true
	}
	w.mu.Unlock()
	return nil
}

func (w *windowsFS) Remove(p string) error {
	if err := w.check("remove", p); err != nil {
		return err
	}
	if w.used(p) {
		return &sharingViolation{"remove", p, false}
	}
	return w.OSFS.Remove(p)
}

func (w *windowsFS) RemoveAll(p string) error {
	if err := w.check("removeall", p); err != nil {
		return err
	}
	w.mu.Lock()
	for q := range w.inUse {
		if q == p || strings.HasPrefix(q, p+string(filepath.Separator)) {
			w.mu.Unlock()
			return &sharingViolation{"removeall", q, false}
		}
	}
	w.mu.Unlock()
	return w.OSFS.RemoveAll(p)
}

func (w *windowsFS) OpenFile(p string, flag int, m fs.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC) != 0 {
		if err := w.check("open", p); err != nil {
			return nil, err
		}
		if w.used(p) {
			return nil, &sharingViolation{"open", p, false}
		}
	} else if len(p) > 260 && !w.longPaths && !strings.HasPrefix(p, `\\?\`) {
		return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("The filename or extension is too long")}
	}
	return w.OSFS.OpenFile(p, flag, m)
}

func (w *windowsFS) Mkdir(p string, m fs.FileMode) error {
	if err := w.check("mkdir", p); err != nil {
		return err
	}
	return w.OSFS.Mkdir(p, m)
}

func (w *windowsFS) MkdirAll(p string, m fs.FileMode) error {
	if err := w.check("mkdir", p); err != nil {
		return err
	}
	return w.OSFS.MkdirAll(p, m)
}

var winOld = []tnode{
	{"app.exe", tree.File, 0o755, "old exe"},
	{"lib.dll", tree.File, 0o644, "old dll"},
	{"data.bin", tree.File, 0o644, "old data"},
	{"gone.dll", tree.File, 0o644, "removed in v2"},
}

var winNew = []tnode{
	{"app.exe", tree.File, 0o755, "new exe!"},
	{"lib.dll", tree.File, 0o644, "new dll!"},
	{"data.bin", tree.File, 0o644, "new data"},
	{"extra.txt", tree.File, 0o644, "new"},
}

func TestWindowsFSSwapLockedAndHeld(t *testing.T) {
	withFastRetry(t)
	f := newFixture(t, winOld, winNew)
	j := f.load(t)
	w := newWindowsFS()
	exe, dll := filepath.Join(f.app, "app.exe"), filepath.Join(f.app, "lib.dll")
	w.inUse[exe], w.inUse[dll] = true, true
	w.inUse[filepath.Join(f.app, "gone.dll")] = true
	// Antivirus: the app's data file and the freshly written new exe are
	// held for a few attempts each.
	w.held[filepath.Join(f.app, "data.bin")] = 2
	w.held[tmpPath(exe)] = 3

	// The naive way fails: the running exe cannot be overwritten or deleted.
	if err := w.Remove(exe); err == nil || IsTransient(err) {
		t.Fatalf("deleting the running exe: %v", err)
	}
	if _, err := w.OpenFile(exe, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
		t.Fatal("truncating the running exe worked")
	}

	if err := Swap(context.Background(), j, w); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.newD, "new")
	if w.hits != 5 {
		t.Fatalf("transient violations: %d, want 5", w.hits)
	}
	// The running exe and DLLs moved (still "in use") into the rollback area.
	for _, name := range []string{"app.exe", "lib.dll", "gone.dll"} {
		if !w.inUse[filepath.Join(j.Rollback, name)] {
			t.Fatalf("%s is not in use in the rollback area: %v", name, w.inUse)
		}
	}
	// A rollback while the new exe runs: it is renamed away the same way
	// only if not in use; here the new exe is not in use, the old ones are.
	if err := Rollback(context.Background(), j, w); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.oldD, "old")
}

func TestWindowsFSRollbackWhileNewExeRuns(t *testing.T) {
	withFastRetry(t)
	f := newFixture(t, winOld, winNew)
	j := f.load(t)
	w := newWindowsFS()
	exe := filepath.Join(f.app, "app.exe")
	w.inUse[exe] = true
	if err := Swap(context.Background(), j, w); err != nil {
		t.Fatal(err)
	}
	// The relaunched new exe runs (and never confirms); the old one has exited.
	clear(w.inUse)
	w.inUse[exe] = true
	w.inUse[filepath.Join(f.app, "extra.txt")] = true
	if err := Rollback(context.Background(), j, w); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.oldD, "old")
	if len(w.inUse) != 2 {
		t.Fatalf("in use: %v", w.inUse)
	}
	for p := range w.inUse {
		if !strings.HasPrefix(p, j.discardDir()) {
			t.Fatalf("%s still in the app dir", p)
		}
	}
	clear(w.inUse)
	if _, err := Resume(context.Background(), f.app, f.backup, w); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(j.discardDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("discard area kept: %v", err)
	}
}

func TestWindowsFSTransientExhausted(t *testing.T) {
	withFastRetry(t)
	f := newFixture(t, winOld, winNew)
	w := newWindowsFS()
	w.held[tmpPath(filepath.Join(f.app, "app.exe"))] = 1000
	err := Swap(context.Background(), f.load(t), w)
	if !IsTransient(err) {
		t.Fatalf("Swap with a file held forever: %v", err)
	}
	if w.hits != transientRetry.Attempts {
		t.Fatalf("attempts %d, want %d", w.hits, transientRetry.Attempts)
	}
	clear(w.held) // the scanner is done
	if err := Rollback(context.Background(), f.load(t), w); err != nil {
		t.Fatal(err)
	}
	f.appIs(t, f.oldD, "old")
}

func TestWindowsFSLongPaths(t *testing.T) {
	w := newWindowsFS()
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("d", 200), strings.Repeat("f", 100))
	if err := w.MkdirAll(long, 0o755); err == nil {
		t.Fatal("a path over 260 characters was accepted")
	}
	w.longPaths = true
	if err := w.MkdirAll(long, 0o755); err != nil {
		t.Fatal(err)
	}
}

func withFastRetry(t *testing.T) {
	saved := transientRetry
	transientRetry.Base, transientRetry.Max = 100_000, 2_000_000 // 0.1 ms .. 2 ms
	t.Cleanup(func() { transientRetry = saved })
}
