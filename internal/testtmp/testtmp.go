// Package testtmp puts a test binary's temporary files (t.TempDir,
// os.MkdirTemp, and those of the programs it starts) on a memory file
// system when the machine has one: /dev/shm on Linux. The tests create,
// fsync and rename tens of thousands of files; on a disk each fsync waits
// for the device (about a millisecond here), on tmpfs it costs nothing,
// and what the tests check (which files exist, their bytes, the order of
// operations through the injectable file systems) is the same.
//
// DELTAUP_TEST_DISK=1 keeps TMPDIR as it is (e.g. to run the suite on a
// real disk). Used only by the tests' TestMain functions.
package testtmp

import (
	"os"
	"path/filepath"
	"runtime"
)

// envDir marks a TMPDIR this package made; a test binary started by a
// test (a kill -9 child, a re-run as another user) inherits it and keeps
// it rather than making, and then leaking, one of its own.
const envDir = "DELTAUP_TEST_TMPDIR"

// minFree is the free space /dev/shm must have: the biggest test writes a
// few hundred MiB.
const minFree = 2 << 30

// Setup points TMPDIR at a fresh directory on /dev/shm (mode 1777, as
// /tmp, so that tests re-run as an unprivileged user can use it too) and
// returns the function that removes it. Where there is no usable memory
// file system, or DELTAUP_TEST_DISK is set, or a parent test binary
// already did it, it changes nothing and returns a no-op.
func Setup() (cleanup func()) {
	nop := func() {}
	if os.Getenv("DELTAUP_TEST_DISK") != "" || os.Getenv(envDir) != "" || runtime.GOOS != "linux" {
		return nop
	}
	const shm = "/dev/shm"
	if free, ok := freeBytes(shm); !ok || free < minFree {
		return nop
	}
	dir, err := os.MkdirTemp(shm, "deltaup-test-")
	if err != nil {
		return nop
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		os.Remove(dir)
		return nop
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return nop
	}
	old, had := os.LookupEnv("TMPDIR")
	os.Setenv("TMPDIR", dir)
	os.Setenv(envDir, dir)
	return func() {
		os.RemoveAll(dir)
		os.Unsetenv(envDir)
		if had {
			os.Setenv("TMPDIR", old)
		} else {
			os.Unsetenv("TMPDIR")
		}
	}
}

// Runner is what TestMain runs: *testing.M.
type Runner interface{ Run() int }

// Wrap returns m with Run doing Setup before and the cleanup after:
//
//	func TestMain(m *testing.M) { os.Exit(testtmp.Wrap(m).Run()) }
func Wrap(m Runner) Runner { return wrapped{m} }

type wrapped struct{ m Runner }

func (w wrapped) Run() int {
	cleanup := Setup()
	defer cleanup()
	return w.m.Run()
}
