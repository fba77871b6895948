package apply

import "testing"

// rerunUnprivileged: Windows tests run the permission cases as they are.
func rerunUnprivileged(t *testing.T) bool { return false }
