package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsPeers(t *testing.T) {
	tests := []struct {
		args    []string
		want    bool
		wantErr string
	}{
		{args: []string{"--peers"}, want: true},
		{args: []string{"--peers", "--write", "--corpus", "/x"}, want: true},
		{args: []string{"--peers", "--trees"}, wantErr: "separate modes"},
		{args: []string{"--repair", "--peers"}, wantErr: "separate modes"},
		{args: []string{"--peers", "--pairs", "all"}, wantErr: "--pairs is for single-file mode"},
		{args: []string{"--peers", "--tools", "zstd"}, wantErr: "--tools is for single-file mode"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || o.peers != tc.want {
				t.Fatalf("peers = %v, err %v; want %v", o.peers, err, tc.want)
			}
		})
	}
}

func TestReplacePeersSection(t *testing.T) {
	sec := peersBegin + "\nnew\n" + peersEnd + "\n"
	tests := []struct{ doc, want string }{
		{"", "\n" + sec},
		{"# results\nbody", "# results\nbody\n\n" + sec},
		{"a\n" + peersBegin + "\nold\n" + peersEnd + "\nb\n", "a\n" + peersBegin + "\nnew\n" + peersEnd + "\nb\n"},
	}
	for _, tc := range tests {
		if got := replacePeersSection(tc.doc, sec); got != tc.want {
			t.Errorf("replacePeersSection(%q) = %q, want %q", tc.doc, got, tc.want)
		}
	}
}

func TestFormatPeers(t *testing.T) {
	res := []peerPairResult{
		{Pair: peerPair{Label: "a", Today: 200}, Results: []peerResult{
			{Tool: "deltaup", Bytes: 100, OK: true}, {Tool: "hdiffz lzma2", Bytes: 200, OK: true, ApplySec: 0.1}, {Tool: "bsdiff", Bytes: 50, Err: "apply: boom"},
		}, Methods: "native/exe-bsdiff-cm"},
		{Pair: peerPair{Label: "b"}, Results: []peerResult{
			{Tool: "deltaup", Bytes: 100, OK: true}, {Tool: "zucchini+xz", Bytes: 50, OK: true},
		}},
	}
	out := formatPeers(Environment{Date: time.Unix(0, 0)}, "rev", "/c", nil, []Skipped{{"zstd", "not installed"}}, res, time.Second)
	for _, want := range []string{
		"| a | 200 | 100 | hdiffz lzma2 | 200 | 0.50 | 0.500 |", // the failed bsdiff is not the best peer
		"| b | 0 | 100 | zucchini+xz | 50 | 2.00 | — |",
		"Geometric mean of deltaup / best peer: **1.000** over 2 pairs",
		"bsdiff FAILED (apply: boom)", "zstd: skipped (not installed)", "native/exe-bsdiff-cm",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(out, peersBegin) || !strings.HasSuffix(out, peersEnd+"\n") {
		t.Error("report is not wrapped in its markers")
	}
}

func TestTreeSum(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		os.MkdirAll(filepath.Join(d, "x"), 0o755)
		os.WriteFile(filepath.Join(d, "x", "f"), []byte("same"), 0o644)
	}
	sa, err1 := treeSum(a)
	sb, err2 := treeSum(b)
	if err1 != nil || err2 != nil || sa != sb {
		t.Fatalf("equal trees: %x %x %v %v", sa, sb, err1, err2)
	}
	os.WriteFile(filepath.Join(b, "x", "f"), []byte("diff"), 0o644)
	if sc, _ := treeSum(b); sc == sa {
		t.Fatal("a changed file left the digest unchanged")
	}
}

func TestMethodOf(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/x/m.patch: 230645 bytes (2.42% of new 9546560 bytes; old 9534272 bytes) native/exe-bsdiff-cm in 13.09s\n": "native/exe-bsdiff-cm",
		"something else\n": "something else",
		"/tmp/t.patch: 4316 bytes (0.05% of new tree 8247504 bytes in 53 files; old 8246275 bytes) bundle: 31 unchanged, 0 copied, 0 patched, 0 new, 22 solid, 3 dirs, 0 symlinks, 0 removed; patches 2884 bytes, in 3.72s\n": "bundle: 31 unchanged, 0 copied, 0 patched, 0 new, 22 solid, 3 dirs, 0 symlinks, 0 removed; patches 2884 bytes",
	} {
		if got := methodOf(in); got != want {
			t.Errorf("methodOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeepPeersSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	if got := keepPeersSection(path, "new report\n"); got != "new report\n" {
		t.Errorf("no file: %q", got)
	}
	os.WriteFile(path, []byte("old report\n\n"+peersBegin+"\npeers\n"+peersEnd+"\n"), 0o644)
	want := "new report\n\n" + peersBegin + "\npeers\n" + peersEnd + "\n"
	if got := keepPeersSection(path, "new report\n"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
