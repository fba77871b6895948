package clihelp

import (
	"testing"
	"time"

	flag "github.com/spf13/pflag"
)

func TestFlagUsages(t *testing.T) {
	for _, c := range []struct {
		name   string
		define func(fs *flag.FlagSet)
		want   string
	}{
		{"bool with shorthand", func(fs *flag.FlagSet) { fs.BoolP("quiet", "q", false, "print nothing") },
			"  -q, --quiet   print nothing\n"},
		{"bool default true", func(fs *flag.FlagSet) { fs.Bool("milestones", true, "more patches") },
			"      --milestones   more patches (default true)\n"},
		{"named value", func(fs *flag.FlagSet) { fs.String("repo", "", "repository `DIR`") },
			"      --repo DIR   repository DIR\n"},
		{"type as name, default", func(fs *flag.FlagSet) { fs.Int("workers", 3, "goroutines") },
			"      --workers int   goroutines (default 3)\n"},
		{"duration", func(fs *flag.FlagSet) { fs.Duration("validity", time.Hour, "for `DURATION`") },
			"      --validity DURATION   for DURATION (default 1h0m0s)\n"},
		{"aligned, in order, hidden left out", func(fs *flag.FlagSet) {
			fs.String("zeta", "", "last `Z`")
			fs.StringP("output", "o", "", "to `FILE`")
			fs.Bool("secret", false, "hidden")
			_ = fs.MarkHidden("secret")
		}, "      --zeta Z        last Z\n" +
			"  -o, --output FILE   to FILE\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SortFlags = false
			c.define(fs)
			if got := FlagUsages(fs); got != c.want {
				t.Errorf("got\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}
