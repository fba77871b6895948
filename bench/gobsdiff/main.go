// Command gobsdiff is a minimal command-line wrapper around
// github.com/gabstv/go-bsdiff, used by the benchmark harness so that the
// pure-Go bsdiff implementation can be measured as its own process, exactly
// like the C tools.
//
// Usage:
//
//	gobsdiff diff OLD NEW PATCH
//	gobsdiff patch OLD OUT PATCH
//	gobsdiff version
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/gabstv/go-bsdiff/pkg/bsdiff"
	"github.com/gabstv/go-bsdiff/pkg/bspatch"
)

// modulePath is the module whose version "gobsdiff version" reports.
const modulePath = "github.com/gabstv/go-bsdiff"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gobsdiff:", err)
		os.Exit(1)
	}
}

// run executes one subcommand.
func run(args []string) error {
	if len(args) == 0 {
		return usageError()
	}
	switch cmd, rest := args[0], args[1:]; {
	case cmd == "diff" && len(rest) == 3:
		return bsdiff.File(rest[0], rest[1], rest[2])
	case cmd == "patch" && len(rest) == 3:
		return bspatch.File(rest[0], rest[1], rest[2])
	case cmd == "version" && len(rest) == 0:
		fmt.Println(version())
		return nil
	default:
		return usageError()
	}
}

// version reports the go-bsdiff module version linked into this binary.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == modulePath {
				return modulePath + " " + dep.Version
			}
		}
	}
	return modulePath + " (unknown version)"
}

// usageError describes the accepted command lines.
func usageError() error {
	return fmt.Errorf("usage: gobsdiff diff OLD NEW PATCH | gobsdiff patch OLD OUT PATCH | gobsdiff version")
}
