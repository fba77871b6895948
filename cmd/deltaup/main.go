// Command deltaup is the client side of deltaup: it checks for, downloads,
// verifies, installs, confirms and rolls back updates of an application
// installed from a deltaup repository, and applies patches made by mkdelta.
//
//	deltaup check|update|resume|confirm|rollback|status [FLAGS]
//	deltaup patch OLD PATCH -o NEW
//	deltaup --help | --version
//
// The exit codes are listed by deltaup --help and in the README. The code
// lives in cmd/internal/upcli, where the script tests in cmd/internal/cli
// run it.
package main

import (
	"os"

	"github.com/deltaup/deltaup/cmd/internal/upcli"
)

func main() {
	os.Exit(upcli.Deltaup(os.Args[1:], os.Stdout, os.Stderr))
}
