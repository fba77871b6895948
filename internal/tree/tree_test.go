package tree

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"bin/app", true}, {"a b/c.d", true}, {"%APPDATA%/x", true}, {"ünï/ç", true},
		{"", false}, {"/etc/passwd", false}, {"../x", false}, {"a/../b", false}, {"a//b", false},
		{"./a", false}, {"a/", false}, {`a\b`, false}, {"C:/x", false}, {"c:x", false},
		{"a/CON", false}, {"nul.txt", false}, {"com1.log", false}, {"a/lpt9", false}, {"x.", false},
		{"x ", false}, {"a:b", false}, {"a*b", false}, {"q\"", false}, {"a\x00b", false}, {"a\nb", false},
		// 8.3 short-name aliases, and names that only look a bit like them.
		{"PROGRA~1", false}, {"lib/FOO~12.TXT", false}, {"a~1", false}, {"file~1.js", false},
		{"~1", true}, {"a~", true}, {"a~b", true}, {"longname~1", true}, {"a~1.json", true}, {"a.txt~1", true},
	} {
		err := CheckPath(tc.p)
		if (err == nil) != tc.ok {
			t.Errorf("CheckPath(%q) = %v, want ok=%v", tc.p, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrUnsafePath) {
			t.Errorf("CheckPath(%q) error %v does not wrap ErrUnsafePath", tc.p, err)
		}
	}
}

func TestCheckLink(t *testing.T) {
	for _, tc := range []struct {
		link, target string
		ok           bool
	}{
		{"a/l", "b", true}, {"a/l", "../c", true}, {"a/b/l", "../../c", true},
		{"l", "../x", false}, {"a/l", "../../x", false}, {"l", "/etc", false}, {"l", "", false},
		{"l", `..\x`, false}, {"l", ".", false}, {"a/l", "..", false},
	} {
		err := CheckLink(tc.link, tc.target)
		if (err == nil) != tc.ok {
			t.Errorf("CheckLink(%q, %q) = %v, want ok=%v", tc.link, tc.target, err, tc.ok)
		}
	}
}

func TestScan(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "empty"), 0o700))
	must(os.WriteFile(filepath.Join(root, "bin/app"), []byte("hello"), 0o755))
	must(os.WriteFile(filepath.Join(root, "readme"), nil, 0o644))
	must(os.Symlink("bin/app", filepath.Join(root, "link")))
	es, err := Scan(context.Background(), root, ScanOptions{Hash: true})
	must(err)
	want := []struct {
		p string
		t Type
	}{{"bin", Dir}, {"bin/app", File}, {"empty", Dir}, {"link", Symlink}, {"readme", File}}
	if len(es) != len(want) {
		t.Fatalf("got %d entries %+v", len(es), es)
	}
	for i, w := range want {
		if es[i].Path != w.p || es[i].Type != w.t {
			t.Errorf("entry %d = %s %s, want %s %s", i, es[i].Type, es[i].Path, w.t, w.p)
		}
	}
	if es[1].Mode != 0o755 || es[1].Size != 5 || es[1].Hex() != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Errorf("bin/app = %+v", es[1])
	}
	if es[3].Target != "bin/app" {
		t.Errorf("link target %q", es[3].Target)
	}
	d1 := Digest(es)
	must(os.Chmod(filepath.Join(root, "bin/app"), 0o644))
	es2, err := Scan(context.Background(), root, ScanOptions{Hash: true})
	must(err)
	if Digest(es2) == d1 {
		t.Error("digest ignores a mode change")
	}
	// An escaping link is refused.
	must(os.Symlink("../../etc/passwd", filepath.Join(root, "bin/evil")))
	if _, err := Scan(context.Background(), root, ScanOptions{}); !errors.Is(err, ErrLinkEscape) {
		t.Errorf("escaping link: err = %v, want ErrLinkEscape", err)
	}
}

func TestCheckEntries(t *testing.T) {
	f := func(p string) Entry { return Entry{Path: p, Type: File} }
	l := func(p, target string) Entry { return Entry{Path: p, Type: Symlink, Target: target} }
	d := func(p string) Entry { return Entry{Path: p, Type: Dir} }
	for _, tc := range []struct {
		name string
		es   []Entry
		want error
	}{
		{"ok", []Entry{d("a"), f("a/b"), l("c", "a/b")}, nil},
		{"case collision", []Entry{f("Readme"), f("README")}, ErrCollision},
		{"duplicate", []Entry{f("x"), f("x")}, ErrCollision},
		{"nfc/nfd collision", []Entry{f("caf\u00e9"), f("cafe\u0301")}, ErrCollision},
		{"chain escape", []Entry{d("d"), d("d/e"), l("d/e/up", ".."), l("x", "d/e/up/../..")}, ErrLinkEscape},
		{"lexical escape", []Entry{l("x", "../y")}, ErrLinkEscape},
		{"loop", []Entry{l("a", "b"), l("b", "a")}, ErrLinkEscape},
		{"unsafe", []Entry{f("a/../b")}, ErrUnsafePath},
		{"bad type", []Entry{{Path: "p", Type: "fifo"}}, ErrUnsupported},
	} {
		err := CheckEntries(tc.es)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestModesPerm(t *testing.T) {
	tests := []struct {
		m    Modes
		t    Type
		in   fs.FileMode
		want fs.FileMode
	}{
		{ModesExact, File, 0o755, 0o755},
		{ModesExact, Dir, 0o700, 0o700},
		{ModesExact, Symlink, 0o755, 0o777},
		{ModesPortable, File, 0o755, 0o644},
		{ModesPortable, File, 0o666, 0o644}, // how Windows reports a writable file
		{ModesPortable, File, 0o444, 0o444}, // a read-only one
		{ModesPortable, File, 0o500, 0o444},
		{ModesPortable, Dir, 0o777, 0o755},
		{ModesPortable, Dir, 0o555, 0o555},
		{ModesPortable, Symlink, 0o644, 0o777},
	}
	for _, tc := range tests {
		if got := tc.m.Perm(tc.t, tc.in); got != tc.want {
			t.Errorf("Modes(%d).Perm(%s, %04o) = %04o, want %04o", tc.m, tc.t, tc.in, got, tc.want)
		}
		// Idempotent: a mode as reported maps to itself.
		if got := tc.m.Perm(tc.t, tc.want); got != tc.want {
			t.Errorf("Modes(%d).Perm(%s, %04o) = %04o: not idempotent", tc.m, tc.t, tc.want, got)
		}
	}
	if bad := NotPortable([]Entry{{Path: "a", Type: File, Mode: 0o644}, {Path: "d", Type: Dir, Mode: 0o755}, {Path: "l", Type: Symlink, Mode: 0o777}}); bad != "" {
		t.Errorf("NotPortable of a portable tree: %q", bad)
	}
	if bad := NotPortable([]Entry{{Path: "a", Type: File, Mode: 0o644}, {Path: "bin/x", Type: File, Mode: 0o755}}); !strings.HasPrefix(bad, "bin/x") {
		t.Errorf("NotPortable with an executable: %q", bad)
	}
}

func TestScanPortable(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "app"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "bin"), 0o700); err != nil {
		t.Fatal(err)
	}
	es, err := Scan(context.Background(), dir, ScanOptions{Modes: ModesPortable})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Mode != 0o755 || es[1].Mode != 0o644 {
		t.Fatalf("portable scan: %+v", es)
	}
	if NotPortable(es) != "" {
		t.Fatal("a portable scan is not portable")
	}
}
