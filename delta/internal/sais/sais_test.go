package sais

import (
	"bytes"
	"math/rand"
	"sort"
	"testing"
)

func naive(text []byte) []int32 {
	sa := make([]int32, len(text))
	for i := range sa {
		sa[i] = int32(i)
	}
	sort.Slice(sa, func(i, j int) bool { return bytes.Compare(text[sa[i]:], text[sa[j]:]) < 0 })
	return sa
}

func TestBuildMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	cases := map[string][]byte{
		"empty":     {},
		"one":       {7},
		"banana":    []byte("banana"),
		"zeros":     make([]byte, 1000),
		"periodic":  bytes.Repeat([]byte("abcab"), 300),
		"mississip": []byte("mississippi$mississippi"),
	}
	for _, alpha := range []int{2, 4, 256} {
		b := make([]byte, 5000)
		for i := range b {
			b[i] = byte(rng.Intn(alpha))
		}
		cases["random"+string(rune('0'+alpha%10))] = b
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Build(text)
			if err != nil {
				t.Fatal(err)
			}
			want := naive(text)
			if len(got) != len(want) {
				t.Fatalf("len %d, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("sa[%d] = %d, want %d", i, got[i], want[i])
				}
			}
		})
	}
}
