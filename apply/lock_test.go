package apply

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLockExclusive(t *testing.T) {
	base := t.TempDir()
	app, backup := filepath.Join(base, "app"), filepath.Join(base, "app.backup")
	l1, err := AcquireLock(app, backup)
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(app, backup)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second locker: %v", err)
	}
	want := fmt.Sprintf("another deltaup is updating %s (pid %d)", app, os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q lacks %q", err, want)
	}
	if err := l1.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := AcquireLock(app, backup)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	if err := l2.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l2.Unlock(); err != nil { // twice: no-op
		t.Fatal(err)
	}
}
