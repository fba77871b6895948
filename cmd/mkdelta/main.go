// Command mkdelta is the release side of deltaup: it diffs an old and a new
// file into a patch.
//
//	mkdelta OLD NEW -o PATCH [--format native|bsdiff40]
//
// The code lives in cmd/internal/cli, where the script tests run it.
package main

import (
	"os"

	"github.com/deltaup/deltaup/cmd/internal/cli"
)

func main() {
	os.Exit(cli.Mkdelta(os.Args[1:], os.Stdout, os.Stderr))
}
