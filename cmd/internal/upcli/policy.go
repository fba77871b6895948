package upcli

import (
	"fmt"
	"strings"

	"github.com/deltaup/deltaup/apply"
)

// policyNote adds what the release policy says about the check res to
// the fields of its JSON event (critical, required, minimum_version,
// current_pulled, notes, notes_url, withheld: always present) and returns
// the lines for people ("" when it says nothing), each after a newline.
// The notes were checked by the manifest package: no control characters
// but tabs and newlines reach the terminal.
func policyNote(res *apply.CheckResult, fields map[string]any) string {
	withheld := res.Withheld
	if withheld == nil {
		withheld = []apply.Withheld{}
	}
	fields["critical"], fields["required"], fields["minimum_version"] = res.Critical, res.Required, res.MinimumVersion
	fields["current_pulled"], fields["notes"], fields["notes_url"], fields["withheld"] = res.CurrentPulled, res.Notes, res.NotesURL, withheld
	var b strings.Builder
	if res.CurrentPulled {
		fmt.Fprintf(&b, "\n%s, installed here, was pulled by the publisher: update to a good release", orUnknown(res.Current))
	}
	if res.Required {
		fmt.Fprintf(&b, "\nrequired: the publisher supports %s and later only", res.MinimumVersion)
	}
	if res.Critical && !res.UpToDate {
		fmt.Fprintf(&b, "\ncritical: the publisher marks %s critical; install it soon", res.Target)
	}
	if res.Notes != "" && !res.UpToDate {
		fmt.Fprintf(&b, "\nrelease notes of %s:\n  %s", res.Target, strings.ReplaceAll(res.Notes, "\n", "\n  "))
	}
	if res.NotesURL != "" && !res.UpToDate {
		fmt.Fprintf(&b, "\nrelease notes: %s", res.NotesURL)
	}
	if len(res.Withheld) > 0 {
		var ws []string
		for _, w := range res.Withheld {
			why := w.Reason
			if why == "rollout" {
				why = fmt.Sprintf("staged rollout at %d%%, this install not yet in", w.Rollout)
			}
			ws = append(ws, w.Version+" ("+why+")")
		}
		fmt.Fprintf(&b, "\nnot offered: %s", strings.Join(ws, ", "))
	}
	return b.String()
}
