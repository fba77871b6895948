// Package cli holds the code of the mkdelta and deltaup commands, so that
// their script tests can run both in one test binary. The commands' main
// functions only call Mkdelta and Deltaup.
package cli
