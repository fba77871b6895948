package upcli

import (
	"os"

	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal. /dev/null is a character
// device but not a terminal (term.IsTerminal asks the tty driver).
func isTerminal(f *os.File) bool {
	return f != nil && term.IsTerminal(int(f.Fd()))
}
