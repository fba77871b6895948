// Package units parses and prints the transfer rates and sizes the
// commands take on their command lines (deltaup --limit-rate, deltaup patch
// --max-size, the demo's --rate), so that every command accepts the same
// spellings and refuses the same mistakes.
//
// A value is a decimal number (1, 1.5, .25) followed by an optional unit:
//
//	B (or none)       bytes
//	k K kB KB         1000 bytes       KiB Ki  1024 bytes
//	M MB              1000² bytes      MiB Mi  1024² bytes
//	G GB              1000³ bytes      GiB Gi  1024³ bytes
//	T TB              1000⁴ bytes      TiB Ti  1024⁴ bytes
//	bit kbit Mbit Gbit Tbit            bits (a byte is 8 bits; rates only)
//
// Units are matched without regard to case, except that a lone lowercase
// "b" after a prefix (kb, Mb, Gb) is refused as ambiguous: it means bits to
// some and bytes to others. A rate may end with "/s" (50MB/s), or with
// "bps" for bits and "Bps" for bytes per second (1Mbps). The result is
// rounded down to whole bytes.
package units

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// MaxRate is the largest rate accepted: 1 TB/s, far above any real link,
// so that a typing slip (a unit too many) is refused rather than taken.
const MaxRate = 1_000_000_000_000

// MaxSize is the largest size accepted: 1 TiB.
const MaxSize = 1 << 40

// units maps each unit, lowercased, to its bytes as a fraction num/den.
var units = map[string]struct {
	num, den int64
	bits     bool
}{
	"": {1, 1, false}, "b": {1, 1, false},
	"k": {1e3, 1, false}, "kb": {1e3, 1, false},
	"m": {1e6, 1, false}, "mb": {1e6, 1, false},
	"g": {1e9, 1, false}, "gb": {1e9, 1, false},
	"ki": {1 << 10, 1, false}, "kib": {1 << 10, 1, false},
	"mi": {1 << 20, 1, false}, "mib": {1 << 20, 1, false},
	"gi": {1 << 30, 1, false}, "gib": {1 << 30, 1, false},
	"t": {1e12, 1, false}, "tb": {1e12, 1, false},
	"ti": {1 << 40, 1, false}, "tib": {1 << 40, 1, false},
	"bit": {1, 8, true}, "kbit": {1e3, 8, true}, "mbit": {1e6, 8, true}, "gbit": {1e9, 8, true}, "tbit": {1e12, 8, true},
}

// ParseRate reads a transfer rate in bytes per second. "0" means no limit
// and returns 0; any other value must come to at least 1 byte/s and at most
// MaxRate.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	switch {
	case strings.HasSuffix(t, "/s"):
		t = strings.TrimSuffix(t, "/s")
	case strings.HasSuffix(t, "bps"):
		t = strings.TrimSuffix(t, "bps") + "bit"
	case strings.HasSuffix(t, "Bps"):
		t = strings.TrimSuffix(t, "Bps") + "B"
	}
	return parse(t, true, MaxRate, "B/s")
}

// ParseSize reads a size in bytes: at least 1 byte and at most MaxSize.
// Bit units are refused.
func ParseSize(s string) (int64, error) {
	n, err := parse(strings.TrimSpace(s), false, MaxSize, "B")
	if err == nil && n == 0 {
		return 0, errors.New("a size of 0 bytes: give at least 1")
	}
	return n, err
}

// parse reads a number and a unit (see the package comment) into whole
// bytes, at most max; suffix names the quantity in messages (B or B/s).
func parse(t string, bitsOK bool, max int64, suffix string) (int64, error) {
	want := "B, k, M, G, T (1000-based), KiB, MiB, GiB, TiB (1024-based)"
	if bitsOK {
		want += ", bit, kbit, Mbit, Gbit, Tbit"
	}
	if strings.HasPrefix(t, "-") {
		return 0, errors.New("negative")
	}
	numEnd := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if numEnd < 0 {
		numEnd = len(t)
	}
	num, name := t[:numEnd], strings.TrimSpace(t[numEnd:])
	v, ok := new(big.Rat).SetString(num)
	if num == "" || !ok {
		return 0, fmt.Errorf("want a number and a unit (%s), e.g. 500k, 1.5M, 200KiB", want)
	}
	if strings.HasSuffix(name, "b") {
		p := name[:len(name)-1]
		return 0, fmt.Errorf("unit %q is ambiguous: write %sbit for bits or %sB for bytes", name, p, p)
	}
	u, ok := units[strings.ToLower(name)]
	if !ok || (u.bits && !bitsOK) {
		return 0, fmt.Errorf("unknown unit %q (want %s)", name, want)
	}
	if v.Sign() == 0 {
		return 0, nil
	}
	v.Mul(v, big.NewRat(u.num, u.den))
	if v.Cmp(new(big.Rat).SetInt64(max)) > 0 {
		return 0, fmt.Errorf("over the maximum of %s", format(max, suffix))
	}
	n := new(big.Int).Quo(v.Num(), v.Denom()).Int64() // 0 ≤ v ≤ max: fits
	if n == 0 {
		return 0, fmt.Errorf("less than 1 %s", suffix)
	}
	return n, nil
}

// FormatRate prints a rate in bytes per second as a person reads it at a
// glance: "1.5 MB/s", "200 KiB/s", "1.23 MB/s (1234567 B/s)" when the short
// form rounds; "unlimited" for 0.
func FormatRate(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return format(n, "B/s")
}

// FormatSize prints a size in bytes the same way: "256 MiB", "2 GB".
func FormatSize(n int64) string { return format(n, "B") }

// format prints n with a binary prefix when it is a whole number (under
// 1024) of KiB, MiB, GiB or TiB, else with the largest decimal prefix not
// above it; the exact count follows in parentheses when that rounds.
func format(n int64, suffix string) string {
	for _, p := range []struct {
		name string
		mult int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n > 0 && n%p.mult == 0 && (n/p.mult < 1024 || p.name == "Ti") {
			return fmt.Sprintf("%d %s%s", n/p.mult, p.name, suffix)
		}
	}
	for _, p := range []struct {
		name string
		mult int64
	}{{"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if n < p.mult {
			continue
		}
		// Up to three decimals, shown only when they are exact.
		if n%(p.mult/1000) == 0 {
			return strconv.FormatFloat(float64(n)/float64(p.mult), 'f', -1, 64) + " " + p.name + suffix
		}
		rounded := math.Round(float64(n)/float64(p.mult)*100) / 100
		return fmt.Sprintf("%s %s%s (%d %s)", strconv.FormatFloat(rounded, 'f', -1, 64), p.name, suffix, n, suffix)
	}
	return fmt.Sprintf("%d %s", n, suffix)
}

// Rate is a flag value (flag.Value and pflag.Value) read by ParseRate, in
// bytes per second; 0 means no limit.
type Rate int64

// Set parses s with ParseRate.
func (r *Rate) Set(s string) error { return set((*int64)(r), s, ParseRate) }

// String prints the rate ("0" when unset, so that help hides the default).
func (r *Rate) String() string {
	if *r == 0 {
		return "0"
	}
	return FormatRate(int64(*r))
}

// Type names the value in help and errors.
func (r *Rate) Type() string { return "rate" }

// Size is a flag value read by ParseSize, in bytes.
type Size int64

// Set parses s with ParseSize.
func (z *Size) Set(s string) error { return set((*int64)(z), s, ParseSize) }

// set stores parse(s) in p, or leaves p as it was on an error.
func set(p *int64, s string, parse func(string) (int64, error)) error {
	n, err := parse(s)
	if err == nil {
		*p = n
	}
	return err
}

// String prints the size.
func (z *Size) String() string { return FormatSize(int64(*z)) }

// Type names the value in help and errors.
func (z *Size) Type() string { return "size" }
