// Package sais builds suffix arrays of byte strings in linear time with the
// SA-IS algorithm (Nong, Zhang and Chan), using 32-bit indices.
//
// The algorithm is Go's own index/suffixarray implementation (which does not
// expose the array it builds), reduced to byte text and int32 indices; see
// sais_gen.go and LICENSE-GO.
package sais

import "fmt"

// MaxLen is the longest text Build accepts: indices are int32.
const MaxLen = 1<<31 - 1

// Build returns the suffix array of text: the start offsets of all suffixes
// of text in lexicographic order. It costs O(len(text)) time and 4*len(text)
// bytes for the result plus a small constant (the recursion works inside the
// result array).
func Build(text []byte) ([]int32, error) {
	if len(text) > MaxLen {
		return nil, fmt.Errorf("sais: text of %d bytes exceeds the %d-byte limit of 32-bit indices", len(text), MaxLen)
	}
	sa := make([]int32, len(text))
	if len(text) > 0 {
		text_32(text, sa)
	}
	return sa, nil
}
