//go:build unix

package apply

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// unprivilegedEnv marks the child process of rerunUnprivileged.
const unprivilegedEnv = "DELTAUP_TEST_UNPRIVILEGED"

// rerunUnprivileged makes a permission test meaningful when the tests run
// as root (as in CI containers), where permission bits do not stop writes:
// it runs the calling top-level test again in a child process of the test
// binary as user and group 65534 (nobody) and fails if the child fails or
// skips a subtest. It returns true when the caller must return (the child
// ran the test, or the test was skipped); false when the caller should
// run the test itself (not root, or already the child).
func rerunUnprivileged(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv(unprivilegedEnv) != "" {
		return false
	}
	// The test binary sits in a go-build directory only root may enter.
	dir, err := os.MkdirTemp("", "deltaup-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "apply.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err == nil {
		_, err = io.Copy(dst, src)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1", "-test.timeout=10m")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), unprivilegedEnv+"=1", "HOME="+dir, "TMPDIR="+os.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Skipf("running as root and cannot start an unprivileged child (%v): permission bits would not stop root's writes", err)
		return true
	}
	err = cmd.Wait()
	text := out.String()
	if err != nil || !strings.Contains(text, "--- PASS: "+t.Name()) {
		t.Fatalf("rerun as uid 65534 failed (%v):\n%s", err, text)
	}
	if strings.Contains(text, "--- SKIP") {
		t.Fatalf("rerun as uid 65534 skipped a case:\n%s", text)
	}
	t.Logf("ran as uid 65534 in a child process (root ignores permission bits):\n%s", text)
	return true
}
