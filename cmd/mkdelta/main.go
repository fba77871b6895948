// Command mkdelta is the release side of deltaup: it diffs files and
// directory trees into patches, and publishes releases into a repository
// that any static web host serves.
//
//	mkdelta [diff] OLD NEW -o PATCH [--format native|bsdiff40]
//	mkdelta [diff] OLD_DIR NEW_DIR -o BUNDLE
//	mkdelta keygen -o BASE [--password-file FILE]
//	mkdelta publish --repo DIR --app NAME --version V --key BASE.key NEW_DIR
//	mkdelta verify --repo DIR --pubkey BASE.pub
//	mkdelta --help | --version
//
// `mkdelta COMMAND --help` lists a command's flags and exit codes: 0
// success, 1 failure, 2 usage error, 3 (verify) the repository failed a
// check. The code lives in cmd/internal/cli, where the script tests run it.
package main

import (
	"os"

	"github.com/deltaup/deltaup/cmd/internal/cli"
)

func main() {
	os.Exit(cli.Mkdelta(os.Args[1:], os.Stdout, os.Stderr))
}
