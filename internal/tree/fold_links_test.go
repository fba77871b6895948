package tree

import (
	"errors"
	"strings"
	"testing"
)

func TestFoldKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"readme", "README", true},
		{"bin/App", "BIN/app", true},
		{"caf\u00e9", "cafe\u0301", true},        // NFC vs NFD
		{"CAF\u00c9", "cafe\u0301", true},        // and case
		{"\u212b", "\u00e5", true},               // ANGSTROM SIGN vs å
		{"k", "\u212a", true},                    // KELVIN SIGN
		{"s", "\u017f", true},                    // long s
		{"\u00df", "\u1e9e", true},               // ß and capital ß
		{"\u1e69", "s\u0323\u0307", true},        // ṩ, marks in canonical order
		{"s\u0307\u0323", "s\u0323\u0307", true}, // marks reordered by class
		{"\ud55c", "\u1112\u1161\u11ab", true},   // Hangul 한 vs its jamo
		{"\u03ac", "\u03b1\u0301", true},         // Greek ά
		{"\u0439", "\u0438\u0306", true},         // Cyrillic й
		{"resume", "r\u00e9sum\u00e9", false},    // accents matter
		{"a", "b", false},
		{"\u00df", "ss", false},                   // no full folding
		{"s\u0301\u0300", "s\u0300\u0301", false}, // same class: order kept
		{"a/b", "a-b", false},
	} {
		if got := FoldKey(tc.a) == FoldKey(tc.b); got != tc.same {
			t.Errorf("FoldKey(%+q) == FoldKey(%+q): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
	if combiningClass('a') != 0 || combiningClass(0x0301) != 230 || combiningClass(0x0323) != 220 {
		t.Errorf("combiningClass: %d %d %d", combiningClass('a'), combiningClass(0x0301), combiningClass(0x0323))
	}
	if unicodeVersion == "" || len(nfdTable) < 2000 {
		t.Errorf("fold tables look empty: %q, %d", unicodeVersion, len(nfdTable))
	}
}

func TestCheckLinkChains(t *testing.T) {
	for _, tc := range []struct {
		name  string
		links map[string]string
		ok    bool
	}{
		{"none", nil, true},
		{"simple", map[string]string{"a/l": "../b", "l": "a/x"}, true},
		{"through inner link", map[string]string{"d/e/up": "..", "x": "d/e/up/f"}, true},
		{"to root through a link", map[string]string{"d/e/up": "..", "x": "d/e/up/.."}, true},
		{"escape through a link", map[string]string{"d/e/up": "..", "x": "d/e/up/../.."}, false},
		{"escape through a chain", map[string]string{"a/b/l1": "..", "a/l2": "b/l1/..", "x": "a/l2/../y"}, false},
		{"loop", map[string]string{"a": "b", "b": "a"}, false},
		{"self", map[string]string{"a": "a"}, false},
		{"long chain", func() map[string]string {
			m := map[string]string{}
			for i := range 50 {
				m["l"+strings.Repeat("x", i)] = "l" + strings.Repeat("x", i+1)
			}
			return m
		}(), false},
	} {
		err := CheckLinkChains(tc.links)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrLinkEscape) {
			t.Errorf("%s: %v lacks ErrLinkEscape", tc.name, err)
		}
	}
}
