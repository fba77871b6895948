package units

import (
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	tests := []parseTest{
		{"0", 0, ""},
		{"0k", 0, ""},
		{"125000", 125000, ""},
		{"200k", 200_000, ""},
		{"200K", 200_000, ""},
		{"200kB", 200_000, ""},
		{"1.5M", 1_500_000, ""},
		{"1.5m", 1_500_000, ""},
		{"2MB", 2_000_000, ""},
		{"1G", 1_000_000_000, ""},
		{"200KiB", 204_800, ""},
		{"1.5MiB", 1_572_864, ""},
		{"2GiB", 2 << 30, ""},
		{"2Ki", 2048, ""},
		{"8bit", 1, ""},
		{"500kbit", 62_500, ""},
		{"1Mbit", 125_000, ""},
		{"1.5Mbit", 187_500, ""},
		{"1Gbit", 125_000_000, ""},
		{"1Mbps", 125_000, ""},
		{"2MBps", 2_000_000, ""},
		{"50MB/s", 50_000_000, ""},
		{" 3 M ", 3_000_000, ""},
		{".5k", 500, ""},
		{"1.0009k", 1000, ""}, // rounded down to whole bytes
		{"1TB", 1e12, ""},
		{"1.5Tbit", 187_500_000_000, ""},
		{"9Tbit", 0, "over the maximum"},
		{"1x", 0, "unknown unit"},
		{"1000G", 1e12, ""}, // the maximum itself
		{"1000.000000001G", 0, "over the maximum of 1 TB/s"},
		{"18014398509481985k", 0, "over the maximum"}, // ×1024 wrapped to 1 KiB/s before
		{"9007199254740992k", 0, "over the maximum"},  // ×1024 wrapped negative before
		{"9223372036854775808", 0, "over the maximum"},
		{"99999999999999999999999999999999999999G", 0, "over the maximum"},
		{"0.5", 0, "less than 1 B/s"},
		{"1bit", 0, "less than 1 B/s"},
		{"", 0, "want a number"},
		{"fast", 0, "want a number"},
		{"M", 0, "want a number"},
		{"1.2.3M", 0, "want a number"},
		{"-1", 0, "negative"},
		{"-1M", 0, "negative"},
		{"3Xbit", 0, "unknown unit"},
		{"1e6", 0, "unknown unit"},
		{"1Mb", 0, `"Mb" is ambiguous: write Mbit for bits or MB for bytes`},
		{"1kb", 0, "ambiguous"},
		{"1b", 0, "ambiguous"},
		{"1Kib", 0, "ambiguous"},
	}
	checkParse(t, "ParseRate", ParseRate, tests)
}

type parseTest struct {
	in      string
	want    int64
	wantErr string // a part of the error; "" for success
}

func checkParse(t *testing.T, name string, parse func(string) (int64, error), tests []parseTest) {
	t.Helper()
	for _, tc := range tests {
		got, err := parse(tc.in)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("%s(%q) = %d, %v; want %d", name, tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s(%q) = %d, %v; want an error with %q", name, tc.in, got, err, tc.wantErr)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []parseTest{
		{"1", 1, ""},
		{"4096", 4096, ""},
		{"500k", 500_000, ""},
		{"256MiB", 256 << 20, ""},
		{"2G", 2_000_000_000, ""},
		{"1024GiB", 1 << 40, ""},
		{"1025GiB", 0, "over the maximum of 1 TiB"},
		{"9223372036854775807", 0, "over the maximum"},
		{"9223372036854775808", 0, "over the maximum"},
		{"0", 0, "at least 1"},
		{"0.5", 0, "less than 1 B"},
		{"-5", 0, "negative"},
		{"1Mbit", 0, "unknown unit \"Mbit\""},
		{"lots", 0, "want a number"},
	}
	checkParse(t, "ParseSize", ParseSize, tests)
}

func TestFormat(t *testing.T) {
	tests := []struct {
		n    int64
		rate string
		size string
	}{
		{0, "unlimited", "0 B"},
		{1, "1 B/s", "1 B"},
		{999, "999 B/s", "999 B"},
		{1000, "1 kB/s", "1 kB"},
		{1024, "1 KiB/s", "1 KiB"},
		{204_800, "200 KiB/s", "200 KiB"},
		{1_500_000, "1.5 MB/s", "1.5 MB"},
		{125_000, "125 kB/s", "125 kB"},
		{1_234_567, "1.23 MB/s (1234567 B/s)", "1.23 MB (1234567 B)"},
		{256 << 20, "256 MiB/s", "256 MiB"},
		{1 << 40, "1 TiB/s", "1 TiB"},
		{1_100_000_000_001, "1.1 TB/s (1100000000001 B/s)", "1.1 TB (1100000000001 B)"},
		{1e12, "1 TB/s", "1 TB"},
	}
	for _, tc := range tests {
		if got := FormatRate(tc.n); got != tc.rate {
			t.Errorf("FormatRate(%d) = %q, want %q", tc.n, got, tc.rate)
		}
		if got := FormatSize(tc.n); got != tc.size {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.n, got, tc.size)
		}
	}
}

// Every rate printed reads back as itself when exact.
func TestFormatRoundTrip(t *testing.T) {
	for _, n := range []int64{1, 999, 1000, 1024, 1_500_000, 204_800, 3 << 30, 1e12} {
		s := strings.ReplaceAll(FormatRate(n), " ", "")
		got, err := ParseRate(s)
		if err != nil || got != n {
			t.Errorf("ParseRate(FormatRate(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
}
