package upcli

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/deltaup/deltaup/apply"
	"github.com/deltaup/deltaup/manifest"
)

func TestErrorClass(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("fetch: %w: %w", apply.ErrLocalIO, syscall.ENOSPC), "local-io"},
		{fmt.Errorf("%w: %w", apply.ErrRefused, manifest.ErrExpired), "refused"},
		{fmt.Errorf("%w: 2.0.0 did not confirm", apply.ErrRolledBack), "rolled-back"},
		{fmt.Errorf("get: %w", apply.ErrTooSlow), "too-slow"},
		{fmt.Errorf("stopped: %w", context.Canceled), "canceled"},
		{fmt.Errorf("x: %w", apply.ErrNotPortable), "not-portable"},
		{errors.New("something else"), "error"},
	}
	for _, tc := range tests {
		if got := errorClass(tc.err); got != tc.want {
			t.Errorf("errorClass(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
