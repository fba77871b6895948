//go:build !unix

package main

import "os"

// peakRSS reports that peak memory is unavailable: this platform exposes no
// getrusage-style ru_maxrss for child processes through os.ProcessState.
func peakRSS(ps *os.ProcessState) (int64, bool) {
	return 0, false
}
