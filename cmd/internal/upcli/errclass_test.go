package upcli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/deltaup/deltaup/apply"
	"github.com/deltaup/deltaup/manifest"
)

func TestErrorClass(t *testing.T) {
	deadPort := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/manifest.json",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		err   error
		class string
		exit  int
	}{
		{fmt.Errorf("fetch: %w: %w", apply.ErrLocalIO, syscall.ENOSPC), "local-io", exitLocalIO},
		{fmt.Errorf("%w: %w", apply.ErrRefused, manifest.ErrExpired), "refused", exitRefused},
		{fmt.Errorf("%w: %w: %w", apply.ErrRefused, apply.ErrDowngrade, manifest.ErrRollback), "downgrade", exitRefused},
		{fmt.Errorf("%w: 2.0.0 did not confirm", apply.ErrRolledBack), "rolled-back", exitRolledBack},
		{fmt.Errorf("get: %w", apply.ErrTooSlow), "too-slow", exitNetwork},
		{fmt.Errorf("get: %w", apply.ErrStalled), "stalled", exitNetwork},
		{fmt.Errorf("get manifest.json: %w", apply.ErrNotFound), "not-found", exitNetwork},
		{fmt.Errorf("apply: fetching manifest.json: %w", deadPort), "network", exitNetwork},
		// A server error (5xx, and 429 or 408 until the retries ran out) is the mirror's trouble.
		{fmt.Errorf("apply: fetching manifest.json: %w", &apply.StatusError{URL: "http://m/manifest.json", Code: 503}), "network", exitNetwork},
		{fmt.Errorf("downloading a: %w", &apply.StatusError{URL: "http://m/a", Code: 429}), "network", exitNetwork},
		{fmt.Errorf("apply: fetching manifest.json: %w", &apply.StatusError{URL: "http://m/manifest.json", Code: 404}), "not-found", exitNetwork},
		{&apply.StatusError{URL: "http://m/a", Code: 401}, "error", exitError},
		{fmt.Errorf("stopped: %w", context.Canceled), "canceled", exitInterrupted},
		{fmt.Errorf("x: %w", apply.ErrNotPortable), "not-portable", exitRefused},
		{fmt.Errorf("x: %w", apply.ErrLocked), "locked", exitBusy},
		{fmt.Errorf("x: %w", apply.ErrPending), "pending", exitBusy},
		{apply.ErrDeclined, "declined", exitDeclined},
		{fmt.Errorf("%w: no server", apply.ErrConfig), "config", exitUsage},
		{&usageError{errors.New("unexpected argument")}, "usage", exitUsage},
		{fmt.Errorf("x: %w", apply.ErrHashMismatch), "hash-mismatch", exitRefused},
		{fmt.Errorf("x: %w", apply.ErrUnsafeAppDir), "unsafe-dir", exitLocalIO},
		{fmt.Errorf("x: %w", apply.ErrJournalMismatch), "state", exitLocalIO},
		// Local beats network: a full disk while downloading is not the mirror's fault.
		{fmt.Errorf("%w: %w", apply.ErrLocalIO, deadPort), "local-io", exitLocalIO},
		{errors.New("something else"), "error", exitError},
	}
	for _, tc := range tests {
		class, exit := errorClass(tc.err)
		if class != tc.class || exit != tc.exit {
			t.Errorf("errorClass(%v) = %q, %d; want %q, %d", tc.err, class, exit, tc.class, tc.exit)
		}
	}
}

// The README's client section lists every JSON error class and every exit
// code, with the meaning --help gives.
func TestREADMEListsClassesAndExitCodes(t *testing.T) {
	raw, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, c := range errorClasses {
		if !strings.Contains(readme, "`"+c.class+"`") {
			t.Errorf("README lacks the JSON error class `%s`", c.class)
		}
	}
	for _, e := range exitCodes {
		re := regexp.MustCompile(`(?m)^\| ` + strconv.Itoa(e.code) + ` \| .+ \|$`)
		if !re.MatchString(readme) {
			t.Errorf("README's exit status table lacks the row for %d (%s)", e.code, e.meaning)
		}
	}
	for _, c := range errorClasses {
		row := regexp.MustCompile(`(?m)^\| ` + strconv.Itoa(c.exit) + ` \| .*` + "`" + regexp.QuoteMeta(c.class) + "`")
		if !row.MatchString(readme) {
			t.Errorf("README's row for exit %d does not name the class `%s`", c.exit, c.class)
		}
	}
}
