package upcli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/deltaup/deltaup/apply"
)

// Exit codes of deltaup. A script branches on them; the JSON error class
// (errorClasses) says more.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitUpdateReady = 3 // deltaup check: a newer version is ready
	exitRefused     = 4
	exitNetwork     = 5
	exitLocalIO     = 6
	exitRolledBack  = 7
	exitBusy        = 8
	exitDeclined    = 9
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

// exitCodes documents the exit codes, in deltaup --help and in each
// command's help (the README's table says the same).
var exitCodes = []struct {
	code    int
	meaning string
}{
	{exitOK, "success (check: up to date)"},
	{exitError, "another failure"},
	{exitUsage, "usage: unknown command or flag, bad flag value, stray argument, incomplete or invalid configuration"},
	{exitUpdateReady, "check: an update is ready"},
	{exitRefused, "refused: a signature, expiry, replay, hash or size check failed, or the release cannot be installed here"},
	{exitNetwork, "network: no mirror reachable, a server error, the file is not on the mirrors, the download stalled or was too slow"},
	{exitLocalIO, "local I/O: disk full, permissions, a damaged state, journal or staged file, an unsafe app or backup directory"},
	{exitRolledBack, "rolled back: the new version did not confirm; the old one is back and the new one marked bad"},
	{exitBusy, "busy: another deltaup holds the lock, an update is pending, or the app directory changed meanwhile"},
	{exitDeclined, "declined at the prompt"},
	{exitInterrupted, "interrupted (Ctrl-C)"},
}

// exitStatusHelp formats the exit codes in codes (all when nil) for a
// help text; check says what 0 means to deltaup check.
func exitStatusHelp(codes []int, check bool) string {
	var b strings.Builder
	b.WriteString("exit status:\n")
	for _, e := range exitCodes {
		if codes != nil && !slices.Contains(codes, e.code) {
			continue
		}
		m := e.meaning
		if e.code == exitOK && !check {
			m = "success"
		}
		fmt.Fprintf(&b, "  %-4d %s\n", e.code, m)
	}
	return b.String()
}

// errUsage marks a command line the command cannot run with (a stray
// argument, an unreadable --pubkey): class "usage", exit 2.
var errUsage = errors.New("usage")

// usageError wraps err as a usage error without changing its message.
type usageError struct{ err error }

func (e *usageError) Error() string        { return e.err.Error() }
func (e *usageError) Unwrap() error        { return e.err }
func (e *usageError) Is(target error) bool { return target == errUsage }

// errorClasses name the error classes a script reading --json output can
// act on, most specific first, with the exit code of each. The README
// lists every class (TestREADMEListsClasses).
var errorClasses = []struct {
	class string
	errs  []error
	exit  int
}{
	{"canceled", []error{context.Canceled}, exitInterrupted},
	{"usage", []error{errUsage}, exitUsage},
	{"declined", []error{apply.ErrDeclined}, exitDeclined},
	{"not-portable", []error{apply.ErrNotPortable}, exitRefused},
	{"rolled-back", []error{apply.ErrRolledBack}, exitRolledBack},
	{"pending", []error{apply.ErrPending}, exitBusy},
	{"locked", []error{apply.ErrLocked}, exitBusy},
	{"app-changed", []error{apply.ErrAppChanged, apply.ErrSwapConflict}, exitBusy},
	{"config", []error{apply.ErrConfig}, exitUsage},
	{"not-installed", []error{apply.ErrNotInstalled}, exitUsage},
	{"downgrade", []error{apply.ErrDowngrade}, exitRefused},
	{"refused", []error{apply.ErrRefused}, exitRefused},
	{"unsafe-path", []error{apply.ErrUnsafePath}, exitRefused},
	{"local-io", []error{apply.ErrLocalIO}, exitLocalIO},
	{"unsafe-dir", []error{apply.ErrUnsafeBackupDir, apply.ErrUnsafeAppDir}, exitLocalIO},
	{"state", []error{apply.ErrState, apply.ErrJournalCorrupt, apply.ErrJournalState, apply.ErrJournalMismatch}, exitLocalIO},
	{"staged-mismatch", []error{apply.ErrStagedMismatch, apply.ErrRollbackMismatch}, exitLocalIO},
	{"hash-mismatch", []error{apply.ErrHashMismatch, apply.ErrTreeMismatch}, exitRefused},
	{"not-found", []error{apply.ErrNotFound}, exitNetwork},
	{"too-large", []error{apply.ErrTooLarge}, exitRefused},
	{"too-slow", []error{apply.ErrTooSlow}, exitNetwork},
	{"stalled", []error{apply.ErrStalled}, exitNetwork},
	{"deadline", []error{context.DeadlineExceeded}, exitNetwork},
	{"no-route", []error{apply.ErrNoRoute}, exitError},
	{"network", []error{apply.ErrServer}, exitNetwork}, // also a net.Error: connection refused, DNS, reset, TLS, timeout
	{"error", nil, exitError},                          // anything else
}

// errorClass returns the class of err for --json output ("error" if none)
// and the exit code for it.
func errorClass(err error) (class string, exit int) {
	for _, c := range errorClasses {
		for _, e := range c.errs {
			if errors.Is(err, e) {
				return c.class, c.exit
			}
		}
		if c.class == "network" {
			var ne net.Error
			if errors.As(err, &ne) {
				return c.class, c.exit
			}
		}
	}
	return "error", exitError
}
