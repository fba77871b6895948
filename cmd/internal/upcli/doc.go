// Package upcli holds the code of the deltaup command (the client), apart
// from mkdelta's (package cli) so that each binary links only what it runs:
// mkdelta stays free of the HTTP client and the updater, which keeps its
// memory low while it diffs. The command's main function only calls
// Deltaup; the script tests in package cli run both commands.
package upcli
