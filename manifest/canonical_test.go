package manifest

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestCanonicalizeVectors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// Key order: UTF-16 code units; bytewise for ASCII.
		{"sorted keys", `{"b":1,"a":2,"c":3}`, `{"a":2,"b":1,"c":3}`},
		{"uppercase before lowercase", `{"a":1,"B":2,"_":3}`, `{"B":2,"_":3,"a":1}`},
		{"prefix key first", `{"ab":1,"a":2}`, `{"a":2,"ab":1}`},
		{"empty key", `{"x":1,"":0}`, `{"":0,"x":1}`},
		// Keys compare as UTF-16 code units: U+1F600 (D83D DE00) sorts after
		// U+20AC and before U+FB33, unlike in UTF-8 byte order.
		{"utf16 order", `{"\ufb33":1,"\ud83d\ude00":2,"\u20ac":3,"\r":4,"1":5,"\u00f6":6}`, "{\"\\r\":4,\"1\":5,\"\u00f6\":6,\"\u20ac\":3,\"\U0001F600\":2,\"\ufb33\":1}"},
		{"nested objects sorted", `{"z":{"y":1,"x":[{"b":1,"a":2}]},"a":null}`, `{"a":null,"z":{"x":[{"a":2,"b":1}],"y":1}}`},
		{"whitespace dropped", " {\n\t\"a\" : [ 1 , 2 ] ,\r\n \"b\":{ } }\n", `{"a":[1,2],"b":{}}`},
		{"empty containers", `[{},[],""]`, `[{},[],""]`},
		{"array order kept", `[3,1,2]`, `[3,1,2]`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		// Strings: minimal escapes, lowercase hex, everything else literal.
		{"escapes", `"\"\\\/\b\f\n\r\t"`, `"\"\\/\b\f\n\r\t"`},
		{"control chars", `"\u0000\u0001\u001f\u007f"`, "\"\\u0000\\u0001\\u001f\x7f\""},
		{"uppercase hex escape", `"\u001F\u00E9"`, `"\u001fé"`},
		{"unicode unescaped", `"\u00e9\u20ac\ud83d\ude00\u2028"`, "\"é€😀\u2028\""},
		{"html not escaped", `"<a href='x'>&amp;</a>"`, `"<a href='x'>&amp;</a>"`},
		{"raw utf8 kept", `"日本語"`, `"日本語"`},
		// Numbers: integers in shortest form.
		{"integers", `[0,-1,42,9007199254740991,-9007199254740991]`, `[0,-1,42,9007199254740991,-9007199254740991]`},
		{"minus zero", `-0`, `0`},
		{"scalar", `"x"`, `"x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonicalize(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Canonicalize(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			again, err := Canonicalize(got)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
			}
			if err := CheckCanonical(got); err != nil {
				t.Fatalf("CheckCanonical(canonical): %v", err)
			}
		})
	}
}

func TestCanonicalizeRefuses(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	okDeep := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, err := Canonicalize([]byte(okDeep)); err != nil {
		t.Fatalf("depth %d refused: %v", MaxDepth, err)
	}
	tests := []struct {
		name, in, msg string
	}{
		{"float", `{"a":1.0}`, "only integers"},
		{"exponent", `[1e3]`, "only integers"},
		{"negative exponent", `[-2E-1]`, "only integers"},
		{"too big", `[9007199254740992]`, "outside"},
		{"too small", `[-9007199254740992]`, "outside"},
		{"huge", `[123456789012345678901234567890]`, "outside"},
		{"leading zero", `[01]`, "leading zero"},
		{"minus alone", `[-]`, "without digits"},
		{"duplicate key", `{"a":1,"b":2,"a":3}`, `duplicate key "a"`},
		{"duplicate key after unescape", `{"a":1,"\u0061":2}`, `duplicate key "a"`},
		{"duplicate nested", `{"x":{"k":1,"k":1}}`, "duplicate key"},
		{"trailing data", `{} {}`, "trailing data"},
		{"trailing garbage", `[1]x`, "trailing data"},
		{"empty", ``, "empty"},
		{"only whitespace", " \n", "empty"},
		{"too deep", deep, "nested deeper"},
		{"invalid utf8", "\"\xff\"", "invalid UTF-8"},
		{"lone high surrogate", `"\ud800"`, "lone UTF-16 surrogate"},
		{"lone low surrogate", `"\udc00"`, "lone UTF-16 surrogate"},
		{"high then non-low", `"\ud800\u0041"`, "lone UTF-16 surrogate"},
		{"raw control", "\"a\tb\"", "raw control character"},
		{"bad escape", `"\x"`, "invalid escape"},
		{"short unicode escape", `"\u12"`, "bad \\u escape"},
		{"unterminated", `"abc`, "unterminated"},
		{"single quotes", `{'a':1}`, "expected a string key"},
		{"trailing comma", `[1,]`, "unexpected"},
		{"trailing comma object", `{"a":1,}`, "expected a string key"},
		{"missing colon", `{"a" 1}`, "expected ':'"},
		{"bad literal", `[tru]`, "invalid literal"},
		{"NaN", `[NaN]`, "unexpected"},
		{"BOM", "\ufeff{}", "unexpected"},
		{"comment", `[1 /* x */]`, "expected ','"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err == nil {
				t.Fatalf("Canonicalize(%q) = %q, want an error", tt.in, got)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestCanonicalizeSizeCap(t *testing.T) {
	big := make([]byte, MaxFileListSize+1)
	for i := range big {
		big[i] = ' '
	}
	big[0] = '0'
	if _, err := Canonicalize(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestCheckCanonicalExplains(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"{\"a\":1}\n", "trailing newline"},
		{`{"b":1,"a":2}`, `first difference at byte 2`},
		{`{"a": 1}`, `first difference at byte 5`},
		{`"\u00e9"`, `first difference at byte 1`},
	}
	for _, tt := range tests {
		err := CheckCanonical([]byte(tt.in))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "re-encode") {
			t.Errorf("CheckCanonical(%q) = %v, want ErrMalformed mentioning %q", tt.in, err, tt.msg)
		}
	}
}

func TestCompareUTF16(t *testing.T) {
	// U+FFFF < U+10000 in code points, but U+10000 (D800 DC00) sorts first
	// in UTF-16.
	if compareUTF16("\U00010000", "\uffff") >= 0 {
		t.Error("U+10000 must sort before U+FFFF")
	}
	if compareUTF16("\ud7ff", "\U00010000") >= 0 {
		t.Error("U+D7FF must sort before U+10000")
	}
	if compareUTF16("\U0001F600", "\U0001F601") >= 0 || compareUTF16("\U00010400", "\U0001F600") >= 0 {
		t.Error("supplementary characters out of order")
	}
	if compareUTF16("a", "ab") >= 0 || compareUTF16("ab", "a") <= 0 || compareUTF16("é", "é") != 0 {
		t.Error("prefix order wrong")
	}
}

func TestCompareUTF16Reference(t *testing.T) {
	ref := func(a, b string) int {
		return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
	}
	alphabet := []string{"", "a", "b", "é", "\u0800", "\ud7ff", "\ue000", "\uffff", "\U00010000", "\U0001F600", "\U0010FFFF"}
	var strs []string
	for _, x := range alphabet {
		for _, y := range alphabet {
			strs = append(strs, x+y, "k"+x+y)
		}
	}
	sign := func(n int) int { return min(max(n, -1), 1) }
	for _, a := range strs {
		for _, b := range strs {
			if got, want := sign(compareUTF16(a, b)), sign(ref(a, b)); got != want {
				t.Fatalf("compareUTF16(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}
