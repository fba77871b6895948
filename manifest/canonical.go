package manifest

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth caps the nesting of arrays and objects that Canonicalize accepts.
// Manifests use 5 levels.
const MaxDepth = 32

// MaxSafeInteger is the largest integer magnitude canonical JSON carries
// (2^53-1: every JSON implementation represents it exactly).
const MaxSafeInteger = 1<<53 - 1

// Canonicalize re-encodes the JSON document raw in canonical form, the byte
// form of every document of this package: RFC 8785 (JSON Canonicalization
// Scheme) restricted to integers.
//
//   - no whitespace between tokens, and no trailing newline;
//   - object members sorted by key, comparing keys as UTF-16 code units
//     (bytewise for ASCII keys); duplicate keys are refused;
//   - strings: '"' and '\' escaped with a backslash; U+0008, U+0009, U+000A,
//     U+000C, U+000D as \b \t \n \f \r; other characters below U+0020 as
//     \u00xx (lowercase hex); everything else (including '/', U+007F,
//     U+2028 and non-ASCII) written as UTF-8 without escaping;
//   - numbers: integers only, in [-MaxSafeInteger, MaxSafeInteger], in
//     shortest decimal form ("-0" becomes "0"); fractions and exponents are
//     refused, even "1.0" and "1e0";
//   - literals true, false, null; any JSON value at the top level.
//
// Input whitespace around tokens is accepted and dropped. Canonicalize
// refuses documents larger than MaxFileListSize (ErrTooLarge), and
// (ErrMalformed) invalid JSON, invalid UTF-8, lone surrogate escapes
// (I-JSON), nesting deeper than MaxDepth, duplicate keys (compared after
// unescaping), floats, out-of-range integers and trailing data. It is
// idempotent: Canonicalize(Canonicalize(x)) == Canonicalize(x).
//
// Cost: linear in len(raw) for input already in canonical order; each object
// whose members need reordering is copied once more, and its keys sorted
// (n log n). Memory: about 2*len(raw).
func Canonicalize(raw []byte) ([]byte, error) {
	return canonicalize(raw, MaxFileListSize)
}

// CheckCanonical returns nil if raw is exactly its own canonical form, and
// otherwise an ErrMalformed error naming the first byte that differs.
// Signed documents must be canonical, so that every reader sees the same
// bytes as the same document. Cost: that of Canonicalize.
func CheckCanonical(raw []byte) error {
	return checkCanonical(raw, MaxFileListSize)
}

func checkCanonical(raw []byte, limit int64) error {
	canon, err := canonicalize(raw, limit)
	if err != nil {
		return err
	}
	if bytes.Equal(canon, raw) {
		return nil
	}
	return fmt.Errorf("%w: not in canonical form: %s; re-encode it with manifest.Marshal (or any RFC 8785 encoder, integers only, no trailing newline) and sign it again",
		ErrMalformed, describeDiff(raw, canon))
}

// describeDiff explains the first difference between raw and its canonical
// form canon.
func describeDiff(raw, canon []byte) string {
	i := 0
	for i < len(raw) && i < len(canon) && raw[i] == canon[i] {
		i++
	}
	if i == len(canon) {
		if len(bytes.TrimSpace(raw[i:])) == 0 {
			return fmt.Sprintf("trailing newline or whitespace at byte %d (the canonical form ends with the closing bracket)", i)
		}
		return fmt.Sprintf("%d extra bytes at byte %d", len(raw)-i, i)
	}
	snip := func(b []byte) []byte {
		if len(b) > 24 {
			b = b[:24]
		}
		return b
	}
	return fmt.Sprintf("first difference at byte %d: have %q, canonical form has %q", i, snip(raw[i:]), snip(canon[i:]))
}

func canonicalize(raw []byte, limit int64) ([]byte, error) {
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%w: JSON document of %d bytes exceeds the %d-byte cap", ErrTooLarge, len(raw), limit)
	}
	if !utf8.Valid(raw) {
		off := 0
		for off < len(raw) {
			r, n := utf8.DecodeRune(raw[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return nil, fmt.Errorf("%w: invalid UTF-8 at byte %d", ErrMalformed, off)
	}
	p := &canonParser{in: raw, out: make([]byte, 0, len(raw))}
	p.skipWS()
	if p.pos == len(p.in) {
		return nil, fmt.Errorf("%w: empty JSON document", ErrMalformed)
	}
	if err := p.value(0); err != nil {
		return nil, err
	}
	p.skipWS()
	if p.pos != len(p.in) {
		return nil, p.errf("trailing data after the JSON value")
	}
	return p.out, nil
}

type canonParser struct {
	in      []byte
	pos     int
	out     []byte
	scratch []byte // decoded string bytes
}

func (p *canonParser) errf(format string, args ...any) error {
	return fmt.Errorf("%w: JSON at byte %d: %s", ErrMalformed, p.pos, fmt.Sprintf(format, args...))
}

func (p *canonParser) skipWS() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *canonParser) value(depth int) error {
	if p.pos >= len(p.in) {
		return p.errf("unexpected end of input")
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		if depth >= MaxDepth {
			return p.errf("nested deeper than %d levels", MaxDepth)
		}
		return p.object(depth + 1)
	case c == '[':
		if depth >= MaxDepth {
			return p.errf("nested deeper than %d levels", MaxDepth)
		}
		return p.array(depth + 1)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return err
		}
		p.out = appendJCSString(p.out, s)
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	default:
		return p.errf("unexpected %q", rune(c))
	}
}

func (p *canonParser) literal(lit string) error {
	if !bytes.HasPrefix(p.in[p.pos:], []byte(lit)) {
		return p.errf("invalid literal (expected %s)", lit)
	}
	p.pos += len(lit)
	p.out = append(p.out, lit...)
	return nil
}

func (p *canonParser) number() error {
	start := p.pos
	if p.in[p.pos] == '-' {
		p.pos++
	}
	digits := p.pos
	for p.pos < len(p.in) && p.in[p.pos] >= '0' && p.in[p.pos] <= '9' {
		p.pos++
	}
	switch {
	case p.pos == digits:
		return p.errf("'-' without digits")
	case p.in[digits] == '0' && p.pos-digits > 1:
		p.pos = digits
		return p.errf("number with a leading zero")
	}
	if p.pos < len(p.in) {
		if c := p.in[p.pos]; c == '.' || c == 'e' || c == 'E' {
			return p.errf("fraction or exponent: only integers are allowed")
		}
	}
	text := string(p.in[start:p.pos])
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil || v > MaxSafeInteger || v < -MaxSafeInteger {
		p.pos = start
		return p.errf("integer %s outside ±(2^53-1)", text)
	}
	p.out = strconv.AppendInt(p.out, v, 10)
	return nil
}

func (p *canonParser) array(depth int) error {
	p.pos++ // '['
	p.out = append(p.out, '[')
	p.skipWS()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		p.out = append(p.out, ']')
		return nil
	}
	for {
		p.skipWS()
		if err := p.value(depth); err != nil {
			return err
		}
		p.skipWS()
		if p.pos >= len(p.in) {
			return p.errf("unexpected end of input in array")
		}
		switch p.in[p.pos] {
		case ',':
			p.pos++
			p.out = append(p.out, ',')
		case ']':
			p.pos++
			p.out = append(p.out, ']')
			return nil
		default:
			return p.errf("expected ',' or ']' in array")
		}
	}
}

type member struct {
	key        string
	start, end int // span of `"key":value` in out
	keyPos     int // input offset of the key, for errors
}

func (p *canonParser) object(depth int) error {
	p.pos++ // '{'
	objStart := len(p.out)
	p.out = append(p.out, '{')
	p.skipWS()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		p.out = append(p.out, '}')
		return nil
	}
	var ms []member
	for {
		p.skipWS()
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return p.errf("expected a string key in object")
		}
		keyPos := p.pos
		k, err := p.str()
		if err != nil {
			return err
		}
		key := string(k)
		p.skipWS()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return p.errf("expected ':' after object key")
		}
		p.pos++
		p.skipWS()
		if len(ms) > 0 {
			p.out = append(p.out, ',')
		}
		start := len(p.out)
		p.out = appendJCSString(p.out, k)
		p.out = append(p.out, ':')
		if err := p.value(depth); err != nil {
			return err
		}
		ms = append(ms, member{key: key, start: start, end: len(p.out), keyPos: keyPos})
		p.skipWS()
		if p.pos >= len(p.in) {
			return p.errf("unexpected end of input in object")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.in[p.pos] == '}' {
			p.pos++
			break
		}
		return p.errf("expected ',' or '}' in object")
	}
	sorted := slices.IsSortedFunc(ms, func(a, b member) int { return compareUTF16(a.key, b.key) })
	if !sorted {
		ms = slices.Clone(ms)
		slices.SortStableFunc(ms, func(a, b member) int { return compareUTF16(a.key, b.key) })
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].key == ms[i-1].key {
			dup := ms[i]
			if ms[i-1].keyPos > dup.keyPos {
				dup = ms[i-1]
			}
			p.pos = dup.keyPos
			return p.errf("duplicate key %q", dup.key)
		}
	}
	if !sorted {
		body := slices.Clone(p.out[objStart+1:])
		p.out = p.out[:objStart+1]
		base := objStart + 1
		for i, m := range ms {
			if i > 0 {
				p.out = append(p.out, ',')
			}
			p.out = append(p.out, body[m.start-base:m.end-base]...)
		}
	}
	p.out = append(p.out, '}')
	return nil
}

// str decodes the JSON string at p.pos and returns its UTF-8 bytes (valid
// for the next call only).
func (p *canonParser) str() ([]byte, error) {
	p.pos++ // '"'
	buf := p.scratch[:0]
	for {
		if p.pos >= len(p.in) {
			return nil, p.errf("unterminated string")
		}
		c := p.in[p.pos]
		switch {
		case c == '"':
			p.pos++
			p.scratch = buf
			return buf, nil
		case c < 0x20:
			return nil, p.errf("raw control character U+%04X in string (escape it)", c)
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.in) {
			return nil, p.errf("unterminated escape")
		}
		e := p.in[p.pos+1]
		p.pos += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, p.errf("bad \\u escape")
			}
			switch {
			case utf16.IsSurrogate(r) && r < 0xDC00:
				if p.pos+1 < len(p.in) && p.in[p.pos] == '\\' && p.in[p.pos+1] == 'u' {
					p.pos += 2
					lo, ok := p.hex4()
					if ok && lo >= 0xDC00 && lo <= 0xDFFF {
						buf = utf8.AppendRune(buf, utf16.DecodeRune(r, lo))
						break
					}
				}
				return nil, p.errf("lone UTF-16 surrogate \\u%04x in string", r)
			case utf16.IsSurrogate(r):
				return nil, p.errf("lone UTF-16 surrogate \\u%04x in string", r)
			default:
				buf = utf8.AppendRune(buf, r)
			}
		default:
			return nil, p.errf("invalid escape \\%c", e)
		}
	}
}

func (p *canonParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.in) {
		return 0, false
	}
	var r rune
	for _, c := range p.in[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// appendJCSString appends s (valid UTF-8) as a JSON string escaped as
// RFC 8785 prescribes.
func appendJCSString(out, s []byte) []byte {
	const hexdig = "0123456789abcdef"
	out = append(out, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c >= 0x20:
			out = append(out, c)
		case c == '\b':
			out = append(out, '\\', 'b')
		case c == '\t':
			out = append(out, '\\', 't')
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\f':
			out = append(out, '\\', 'f')
		case c == '\r':
			out = append(out, '\\', 'r')
		default:
			out = append(out, '\\', 'u', '0', '0', hexdig[c>>4], hexdig[c&15])
		}
	}
	return append(out, '"')
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785 sorts
// object keys. For valid UTF-8 this equals bytewise order except when a
// character above U+FFFF meets one in U+E000..U+FFFF, so only the runes at
// the first difference are decoded.
func compareUTF16(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	if i == len(a) || i == len(b) {
		return len(a) - len(b)
	}
	for i > 0 && a[i]&0xC0 == 0x80 { // back to the start of the rune
		i--
	}
	ra, _ := utf8.DecodeRuneInString(a[i:])
	rb, _ := utf8.DecodeRuneInString(b[i:])
	return int(utf16Key(ra)) - int(utf16Key(rb))
}

// utf16Key maps r to a key that orders runes as their UTF-16 code unit
// sequences: a BMP character r becomes r<<10, a supplementary character
// (hi, lo surrogates) becomes hi<<10 | (lo-0xDC00). Valid UTF-8 holds no
// surrogates, so a BMP key never ties with a supplementary one.
func utf16Key(r rune) rune {
	if r > 0xFFFF {
		hi, lo := utf16.EncodeRune(r)
		return hi<<10 | (lo - 0xDC00)
	}
	return r << 10
}
