package fallback_test

// Interop with GNU tar and the zstd CLI: GNU tar extracts our archives to
// the same tree as Extract does, and Extract reads archives GNU tar made.
// Skipped when the tools are absent.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/deltaup/deltaup/fallback"
	"github.com/deltaup/deltaup/internal/tree"
)

// needTools skips unless GNU tar with --zstd support and zstd are present.
func needTools(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("interop tests need GNU tar")
	}
	for _, tool := range []string{"tar", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("tar/zstd not installed: apt-get install zstd")
		}
	}
	out, err := exec.Command("tar", "--version").Output()
	if err != nil || !strings.Contains(string(out), "GNU tar") {
		t.Skip("GNU tar not installed (tar --version does not say GNU tar)")
	}
}

// run runs a command in a UTF-8 locale (so GNU tar keeps non-ASCII names
// as they are) and fails the test on error.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestInteropGNUTarExtractsOurs: GNU tar (with the zstd CLI) extracts our
// archives to exactly the tree Extract makes, and zstd -t accepts the
// frame.
func TestInteropGNUTarExtractsOurs(t *testing.T) {
	needTools(t)
	src := t.TempDir()
	makeTree(t, src, roundTripTree())
	_, want := scan(t, src)
	for _, tc := range []struct {
		name   string
		format fallback.Format
		framed bool
		args   []string // tar arguments before the archive
	}{
		{"tar.zst", fallback.TarZst, false, []string{"--zstd", "-xpf"}},
		{"tar.zst framed", fallback.TarZst, true, []string{"--zstd", "-xpf"}},
		{"tar.gz", fallback.TarGz, false, []string{"-xzpf"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arc, st := writeArchive(t, src, tc.format, &fallback.WriteOptions{Framed: tc.framed})
			dir := t.TempDir()
			a := filepath.Join(dir, "a"+tc.format.Ext())
			if err := os.WriteFile(a, arc, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.format == fallback.TarZst {
				run(t, "zstd", "-q", "-t", a)
			}
			if tc.framed {
				if len(st.Frames) < 2 {
					t.Fatalf("%d frames", len(st.Frames))
				}
				// Each frame alone is a valid zstd file to the CLI, and
				// the pieces it decodes to make the archive's tar stream.
				var pieces []byte
				for i, f := range st.Frames {
					p := filepath.Join(dir, fmt.Sprintf("frame%d.zst", i))
					if err := os.WriteFile(p, arc[f.Offset:f.Offset+f.Size], 0o644); err != nil {
						t.Fatal(err)
					}
					run(t, "zstd", "-q", "-d", "-f", p, "-o", p+".tar")
					b, err := os.ReadFile(p + ".tar")
					if err != nil || int64(len(b)) != f.TarSize {
						t.Fatalf("frame %d: zstd -d gave %d bytes (%v), want %d", i, len(b), err, f.TarSize)
					}
					pieces = append(pieces, b...)
				}
				run(t, "zstd", "-q", "-d", "-f", a, "-o", filepath.Join(dir, "whole.tar"))
				if whole, _ := os.ReadFile(filepath.Join(dir, "whole.tar")); !bytes.Equal(whole, pieces) {
					t.Errorf("the frames' pieces differ from zstd -d of the whole archive")
				}
			}
			gnu := filepath.Join(dir, "gnu")
			os.Mkdir(gnu, 0o755)
			run(t, "tar", append([]string{"-C", gnu}, append(tc.args, a)...)...)
			ours := filepath.Join(dir, "ours")
			got, err := fallback.Extract(context.Background(), bytes.NewReader(arc), tc.format, ours, nil)
			if err != nil {
				t.Fatal(err)
			}
			gnuEntries, gnuDigest := scan(t, gnu)
			if _, d := scan(t, ours); d != want || tree.Digest(got) != want {
				t.Errorf("Extract's tree differs from the source")
			}
			if gnuDigest != want {
				t.Errorf("GNU tar's tree differs from the source:\n gnu %v", gnuEntries)
			}
		})
	}
}

// TestInteropReadsGNUTar: Extract reads what GNU tar writes with
// `-C dir .` (leading "./", the "./" root entry, GNU long names or PAX
// records), compressed by the zstd CLI or gzip.
func TestInteropReadsGNUTar(t *testing.T) {
	needTools(t)
	src := t.TempDir()
	makeTree(t, src, []fent{
		dir("bin", 0o755),
		file("bin/app", 0o755, "#!/bin/sh\necho app\n"),
		file("lib/data.bin", 0o644, string(pseudoRandom(2, 200<<10))),
		dir("empty", 0o700),
		file("empty.txt", 0o600, ""),
		file(longSplit, 0o644, "long\n"),
		file(longPAX, 0o644, "longer\n"),
		file("données/é.txt", 0o644, "unicode\n"),
		link("bin/data", "../lib/data.bin"),
	})
	_, want := scan(t, src)
	for _, tc := range []struct {
		name   string
		format fallback.Format
		args   []string
	}{
		{"gnu-format.tar.zst", fallback.TarZst, []string{"--zstd", "-cf"}},
		{"posix-format.tar.zst", fallback.TarZst, []string{"--format=posix", "--zstd", "-cf"}},
		{"gnu-format.tar.gz", fallback.TarGz, []string{"-czf"}},
		{"sorted-posix.tar.gz", fallback.TarGz, []string{"--sort=name", "--format=posix", "-czf"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := filepath.Join(t.TempDir(), tc.name)
			run(t, "tar", append(tc.args, a, "-C", src, ".")...)
			f, err := os.Open(a)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dest := filepath.Join(t.TempDir(), "out")
			got, err := fallback.Extract(context.Background(), f, tc.format, dest, nil)
			if err != nil {
				t.Fatalf("Extract of GNU tar's archive: %v", err)
			}
			if tree.Digest(got) != want {
				t.Errorf("entries differ from the source tree: %v", got)
			}
			if _, d := scan(t, dest); d != want {
				t.Errorf("extracted tree differs from the source tree")
			}
		})
	}
	// zstd CLI compressing a tar stream from GNU tar through a pipe, at a
	// high level (window 8 MiB, no content size).
	t.Run("zstd-19-pipe", func(t *testing.T) {
		dir := t.TempDir()
		tarFile := filepath.Join(dir, "a.tar")
		run(t, "tar", "-cf", tarFile, "-C", src, ".")
		run(t, "zstd", "-q", "-19", tarFile, "-o", tarFile+".zst")
		f, err := os.Open(tarFile + ".zst")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got, err := fallback.Extract(context.Background(), f, fallback.TarZst, filepath.Join(dir, "out"), nil)
		if err != nil || tree.Digest(got) != want {
			t.Errorf("Extract of zstd -19 archive: %v (digest match %v)", err, err == nil && tree.Digest(got) == want)
		}
	})
}
