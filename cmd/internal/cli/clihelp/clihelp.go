// Package clihelp formats the help texts of the deltaup commands (mkdelta
// and deltaup).
package clihelp

import (
	"fmt"
	"strings"

	flag "github.com/spf13/pflag"
)

// FlagUsages lists the flags of fs in the order defined (set
// fs.SortFlags = false), one a line: "  -q, --quiet" or "      --repo",
// the value's name (the back-quoted word of the usage, else pflag's guess
// from the type, such as int; none for a bool), then the usage, and the
// default when it is not the zero value. Hidden flags are left out. Unlike pflag's own FlagUsages it does
// not write bools as --quiet[=true|false].
func FlagUsages(fs *flag.FlagSet) string {
	type line struct{ left, right string }
	var lines []line
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		if f.Hidden {
			return
		}
		var left strings.Builder
		if f.Shorthand != "" {
			fmt.Fprintf(&left, "  -%s, --%s", f.Shorthand, f.Name)
		} else {
			fmt.Fprintf(&left, "      --%s", f.Name)
		}
		name, usage := flag.UnquoteUsage(f)
		if f.Value.Type() != "bool" {
			if name == "" {
				name = strings.ToUpper(f.Value.Type())
			}
			left.WriteString(" " + name)
		}
		if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "[]" {
			usage += " (default " + d + ")"
		}
		lines = append(lines, line{left.String(), usage})
		width = max(width, left.Len())
	})
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%-*s   %s\n", width, l.left, l.right)
	}
	return b.String()
}
