// Package cli holds the code of the mkdelta command (the release side);
// the client, deltaup, is in package upcli. The script tests here run both
// commands in one test binary. mkdelta's main function only calls Mkdelta.
package cli
