package delta_test

import (
	"os"
	"testing"

	"github.com/deltaup/deltaup/internal/testtmp"
)

// TestMain puts temporary files on a memory file system where there is
// one (see internal/testtmp).
func TestMain(m *testing.M) { os.Exit(testtmp.Wrap(m).Run()) }
