package tree

import (
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCheckPath: every name in a manifest, bundle, archive and journal goes
// through CheckPath and CheckLink. Any input: no panic; an accepted path is
// clean, relative, valid UTF-8 and free of the characters Windows refuses;
// an accepted link target resolves inside the tree.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"bin/app", "a b/c.d", "%APPDATA%/x", "../x", "/etc/passwd", "C:/x", "a/CON", "PROGRA~1", "a//b", "x.", "ünï/ç", "a\\b"} {
		f.Add(s, "../lib/x")
	}
	f.Add("lib/link", "target")
	f.Add("a/b/c", "../../x")
	f.Fuzz(func(t *testing.T, p, target string) {
		if CheckPath(p) == nil {
			if !utf8.ValidString(p) || path.Clean(p) != p || strings.HasPrefix(p, "/") || p == "." ||
				strings.HasPrefix(p, "../") || p == ".." || strings.Contains(p, "/../") || strings.ContainsAny(p, "\\:*?\"<>|\x00") {
				t.Fatalf("CheckPath accepted %q", p)
			}
			if CheckLink(p, target) == nil {
				j := path.Join(path.Dir(p), target)
				if j == ".." || strings.HasPrefix(j, "../") || strings.HasPrefix(target, "/") || j == "." {
					t.Fatalf("CheckLink accepted %q -> %q (resolves to %q)", p, target, j)
				}
			}
		}
	})
}
