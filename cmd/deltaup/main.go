// Command deltaup is the client side of deltaup.
//
//	deltaup patch OLD PATCH -o NEW   apply a native or BSDIFF40 patch
//
// The code lives in cmd/internal/cli, where the script tests run it.
package main

import (
	"os"

	"github.com/deltaup/deltaup/cmd/internal/upcli"
)

func main() {
	os.Exit(upcli.Deltaup(os.Args[1:], os.Stdout, os.Stderr))
}
